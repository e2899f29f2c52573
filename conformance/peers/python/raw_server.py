"""A hand-written WebSocket server on a raw socket, for behaviour no library
will produce: it sends an invalid frame and reports what the client answers.

usage: raw_server.py MODE
  invalid-utf8             an unfragmented text frame with invalid UTF-8
  invalid-utf8-fragmented  a text message whose second fragment is invalid
                           UTF-8, the message left unfinished (fail-fast)

Prints `listening on ws://127.0.0.1:PORT`, serves one connection, then prints
  report opcode=N masked=0|1 close_code=N close_reason=... eof=0|1
about the first frame the client sent back (a Close frame is expected), and
exits.
"""

import base64
import hashlib
import socket
import struct
import sys

from common import record

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TIMEOUT = 20


def read_exact(conn, n):
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def read_frame(conn):
    b0, b1 = read_exact(conn, 2)
    opcode = b0 & 0x0F
    masked = b1 >> 7
    length = b1 & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", read_exact(conn, 2))
    elif length == 127:
        (length,) = struct.unpack("!Q", read_exact(conn, 8))
    key = read_exact(conn, 4) if masked else b"\0\0\0\0"
    payload = bytes(b ^ key[i % 4] for i, b in enumerate(read_exact(conn, length)))
    return opcode, masked, payload


def frame(opcode, payload, fin=True):
    assert len(payload) < 126
    return bytes([(0x80 if fin else 0) | opcode, len(payload)]) + payload


def main():
    mode = sys.argv[1]
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(TIMEOUT)
    print(f"listening on ws://127.0.0.1:{listener.getsockname()[1]}", flush=True)
    conn, _ = listener.accept()
    conn.settimeout(TIMEOUT)
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = conn.recv(4096)
        if not chunk:
            record("report", error="eof during handshake")
            return
        head += chunk
    key = ""
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "sec-websocket-key":
            key = value.strip()
    accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
    # No Sec-WebSocket-Extensions: compression declined, frames are plain.
    conn.sendall(
        (
            "HTTP/1.1 101 Switching Protocols\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
        ).encode()
    )
    if mode == "invalid-utf8":
        conn.sendall(frame(0x1, b"valid then \xc3\x28 invalid"))
    elif mode == "invalid-utf8-fragmented":
        conn.sendall(frame(0x1, "fine ✓".encode(), fin=False))
        conn.sendall(frame(0x0, b"\xed\xa0\x80 surrogate", fin=False))
    else:
        record("report", error=f"unknown mode {mode}")
        return
    try:
        opcode, masked, payload = read_frame(conn)
    except (EOFError, socket.timeout) as e:
        record("report", eof=1, error=repr(e))
        return
    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else "none"
    reason = payload[2:].decode("utf-8", "replace")
    # Answer the Close so the client's closing handshake completes.
    if opcode == 0x8:
        conn.sendall(frame(0x8, payload[:2]))
    record("report", opcode=opcode, masked=masked, close_code=code, close_reason=reason, eof=0)
    conn.close()


if __name__ == "__main__":
    main()
