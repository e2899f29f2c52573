"""Python `websockets` client driven by conformance/tests/interop_python.rs.

usage: client.py URL (deflate|none) SCENARIO

Scenarios:
  echo          text and binary at every size in common.SIZES, a non-ASCII
                text, fragmented text and binary sends, a ping, then a close
                with 4001 "python done"; the server must echo everything.
  server-close  sends "close-me" and expects the server to start the closing
                handshake (it closes with 4002 "server bye").
  roundtrip     one text and one 64 KiB binary echo, then close 1000.
  mirror        sends every message back as it came (text as text, binary
                as binary) until the server closes; reports how many.

Prints `result key=value` records (see common.py) and `result done=1` last.
"""

import asyncio
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
import websockets

from common import (
    SIZES,
    UNICODE_TEXT,
    binary_payload,
    describe_mismatch,
    fatal,
    result,
    text_payload,
)

TIMEOUT = 20


async def echo_check(ws, name, payload):
    await ws.send(payload)
    got = await asyncio.wait_for(ws.recv(), TIMEOUT)
    result(name, "ok" if got == payload and type(got) is type(payload)
           else describe_mismatch(payload, got))


def report_close(ws, prefix):
    rcvd = ws.protocol.close_rcvd
    sent = ws.protocol.close_sent
    result(f"{prefix}.rcvd_code", rcvd.code if rcvd else "none")
    result(f"{prefix}.rcvd_reason", rcvd.reason if rcvd else "")
    result(f"{prefix}.sent_code", sent.code if sent else "none")
    result(f"{prefix}.rcvd_then_sent", ws.protocol.close_rcvd_then_sent)


async def main():
    url, compression, scenario = sys.argv[1], sys.argv[2], sys.argv[3]
    result("version", websockets.version.version)
    async with connect(
        url,
        compression="deflate" if compression == "deflate" else None,
        max_size=16 << 20,
        open_timeout=TIMEOUT,
        close_timeout=TIMEOUT,
        ping_interval=None,
    ) as ws:
        result("extensions", ws.response.headers.get("Sec-WebSocket-Extensions", ""))
        if scenario == "echo":
            for n in SIZES:
                await echo_check(ws, f"text.{n}", text_payload(n))
                await echo_check(ws, f"binary.{n}", binary_payload(n))
            await echo_check(ws, "text.unicode", UNICODE_TEXT)
            # Fragmented sends: each element of the iterable is one frame.
            await ws.send(["frag-one ", "frag-two ", "frag-three"])
            got = await asyncio.wait_for(ws.recv(), TIMEOUT)
            result("fragmented.text", "ok" if got == "frag-one frag-two frag-three"
                   else describe_mismatch("frag-one frag-two frag-three", got))
            parts = [b"\x00\x01", b"\x02", binary_payload(70000)]
            await ws.send(parts)
            got = await asyncio.wait_for(ws.recv(), TIMEOUT)
            want = b"".join(parts)
            result("fragmented.binary", "ok" if got == want else describe_mismatch(want, got))
            # A fragmented text whose UTF-8 characters straddle frames.
            data = UNICODE_TEXT.encode()
            await ws.send([data[:2], data[2:9], data[9:]], text=True)
            got = await asyncio.wait_for(ws.recv(), TIMEOUT)
            result("fragmented.split_utf8", "ok" if got == UNICODE_TEXT
                   else describe_mismatch(UNICODE_TEXT, got))
            pong = await ws.ping(b"py-ping")
            await asyncio.wait_for(pong, TIMEOUT)
            result("ping", "ok")
            await ws.close(4001, "python done")
            report_close(ws, "close")
        elif scenario == "server-close":
            await ws.send("close-me")
            try:
                msg = await asyncio.wait_for(ws.recv(), TIMEOUT)
                result("server_close", f"unexpected message {msg!r}")
            except ConnectionClosed:
                result("server_close", "ok")
            report_close(ws, "close")
        elif scenario == "roundtrip":
            await echo_check(ws, "text.roundtrip", text_payload(1000))
            await echo_check(ws, "binary.roundtrip", binary_payload(65536))
            await ws.close(1000, "")
            report_close(ws, "close")
        elif scenario == "mirror":
            n = 0
            # Ends when the server closes cleanly; anything else raises.
            async for msg in ws:
                await ws.send(msg)
                n += 1
            result("mirrored", n)
            report_close(ws, "close")
        else:
            fatal(f"unknown scenario {scenario}")
    result("done", 1)


if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(main(), 60))
