"""Python `websockets` server driven by conformance/tests/interop_python.rs.

usage: server.py (deflate|none)

Binds 127.0.0.1 on a free port and prints `listening on ws://127.0.0.1:PORT`.
Behaviour by request path:
  /echo/...      echoes every message until the client closes
  /close4000/... sends "hello", then closes with 4000 "bye"
  /ping/...      pings the client with b"srv-ping", waits for the pong, sends
                 "pong-ok", then echoes like /echo
When a connection ends it prints one record (see common.py):
  report path=... messages=N bytes=N extensions=... rcvd_code=... rcvd_reason=...
         sent_code=... rcvd_then_sent=... pong=...
"""

import asyncio
import sys

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed
import websockets

from common import record

TIMEOUT = 20


async def handler(ws):
    path = ws.request.path
    messages = 0
    nbytes = 0
    pong = "n/a"
    error = ""
    try:
        if path.startswith("/close4000"):
            await ws.send("hello")
            await ws.close(4000, "bye")
        else:
            if path.startswith("/ping"):
                waiter = await ws.ping(b"srv-ping")
                try:
                    await asyncio.wait_for(waiter, TIMEOUT)
                    pong = "ok"
                except asyncio.TimeoutError:
                    pong = "timeout"
                await ws.send("pong-" + pong)
            async for msg in ws:
                messages += 1
                nbytes += len(msg.encode() if isinstance(msg, str) else msg)
                await ws.send(msg)
    except ConnectionClosed:
        pass
    except Exception as e:  # reported, never swallowed silently
        error = repr(e)
    rcvd = ws.protocol.close_rcvd
    sent = ws.protocol.close_sent
    record(
        "report",
        path=path,
        messages=messages,
        bytes=nbytes,
        extensions=ws.response.headers.get("Sec-WebSocket-Extensions", "") if ws.response else "",
        rcvd_code=rcvd.code if rcvd else "none",
        rcvd_reason=rcvd.reason if rcvd else "",
        sent_code=sent.code if sent else "none",
        rcvd_then_sent=ws.protocol.close_rcvd_then_sent,
        pong=pong,
        error=error,
    )


async def main():
    compression = "deflate" if sys.argv[1] == "deflate" else None
    async with serve(
        handler,
        "127.0.0.1",
        0,
        compression=compression,
        max_size=16 << 20,
        ping_interval=None,
        close_timeout=TIMEOUT,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        record("version", websockets=websockets.version.version)
        print(f"listening on ws://127.0.0.1:{port}", flush=True)
        # Ends when the test kills this process (it never outlives the test:
        # the test's guard kills it by PID), or after 10 minutes at most.
        await asyncio.sleep(600)


if __name__ == "__main__":
    asyncio.run(main())
