"""Python `websockets` peer for the wsmachine trace corpus (src/bin/record.rs).

    py_peer.py server PORT COMPRESS       serve scenarios by path; prints "ready"
    py_peer.py client URL SCENARIO COMPRESS

COMPRESS is "deflate" or "none". Raw bad frames are written to the transport.

What the peer concludes is printed as records, one a line, `TAG key=value …`
with percent-encoded values (the format of peers/python/common.py):
  server: one `report path=… rcvd_code=… rcvd_reason=… sent_code=… checks=… error=…`
          per connection, when it ends;
  client: `result NAME=ok|what went wrong` per check, then
          `close rcvd_code=… rcvd_reason=… sent_code=…`, then `done`;
          an exception prints `error message=…` and exits 1.
`checks` is `ok` or a comma-separated list of what failed. The recorder
decides the verdict from these and the exit status.
"""
import asyncio
import sys
import urllib.parse

import websockets
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

TIMEOUT = 10


def record(tag, **fields):
    parts = [tag] + [f"{k}={urllib.parse.quote(str(v), safe='')}" for k, v in fields.items()]
    print(" ".join(parts), flush=True)


def compression(arg):
    return "deflate" if arg == "deflate" else None


def close_fields(ws):
    rcvd, sent = ws.protocol.close_rcvd, ws.protocol.close_sent
    return dict(
        rcvd_code=rcvd.code if rcvd else "none",
        rcvd_reason=rcvd.reason if rcvd else "",
        sent_code=sent.code if sent else "none",
    )


async def server_handler(ws):
    path = ws.request.path
    failed = []
    error = ""
    try:
        if path == "/close":
            await ws.send("bye soon")
            await ws.close(1001, "going away")
        else:
            if path == "/ping":
                pong = await ws.ping(b"are you there")
                try:
                    await asyncio.wait_for(pong, TIMEOUT)
                    await ws.send("pong received")
                except asyncio.TimeoutError:
                    failed.append("no-pong")
            elif path == "/fragments":
                await ws.send(["frag", "ment", "ed"])
            elif path == "/badutf8":
                ws.transport.write(bytes([0x81, 0x02, 0xC3, 0x28]))
            elif path == "/badframe":
                ws.transport.write(bytes([0x83, 0x00]))
            async for msg in ws:
                await ws.send(msg)
    except websockets.ConnectionClosed:
        pass
    except Exception as e:  # reported, never swallowed silently
        error = repr(e)
    try:
        await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
    except asyncio.TimeoutError:
        failed.append("close-timeout")
    record("report", path=path, **close_fields(ws),
           checks=",".join(failed) or "ok", error=error)


async def run_server(port, comp):
    async with serve(server_handler, "127.0.0.1", port, compression=comp, ping_interval=None,
                     close_timeout=TIMEOUT):
        print("ready", flush=True)
        await asyncio.sleep(600)


def check(name, got, want):
    if got == want:
        record("result", **{name: "ok"})
    else:
        record("result", **{name: f"got {got!r:.60} instead of {want!r:.60}"})


async def recv_closed(ws, name):
    """Waits for the connection to close; a message instead is a failure."""
    try:
        msg = await asyncio.wait_for(ws.recv(), TIMEOUT)
        record("result", **{name: f"unexpected message {msg!r:.60}"})
    except websockets.ConnectionClosed:
        record("result", **{name: "ok"})
    await asyncio.wait_for(ws.wait_closed(), TIMEOUT)


async def run_client(url, scenario, comp):
    async with connect(url, compression=comp, ping_interval=None, close_timeout=TIMEOUT) as ws:
        if scenario == "echo":
            await ws.send("hello")
            check("echo.text", await asyncio.wait_for(ws.recv(), TIMEOUT), "hello")
            await ws.send(bytes([0, 1, 2, 255]))
            check("echo.binary", await asyncio.wait_for(ws.recv(), TIMEOUT), bytes([0, 1, 2, 255]))
            await ws.send(["Hel", "lo, ", "fragments"])
            check("echo.fragmented", await asyncio.wait_for(ws.recv(), TIMEOUT), "Hello, fragments")
            await ws.send("compressible " * 40)
            check("echo.compressible", await asyncio.wait_for(ws.recv(), TIMEOUT), "compressible " * 40)
            pong = await ws.ping(b"p1")
            await asyncio.wait_for(pong, TIMEOUT)
            record("result", pong="ok")
            await ws.close(1000, "done")
        elif scenario == "server-close":
            await ws.send("close me")
            await recv_closed(ws, "server_close")
        elif scenario == "ping":
            await ws.send("ping me")
            check("ping.text", await asyncio.wait_for(ws.recv(), TIMEOUT), "hello from server")
            await recv_closed(ws, "ping.close")
        elif scenario == "badutf8":
            # masked (zero key) text frame with invalid UTF-8
            ws.transport.write(bytes([0x81, 0x82, 0, 0, 0, 0, 0xC3, 0x28]))
            await recv_closed(ws, "badutf8.close")
        else:
            raise ValueError(f"unknown scenario {scenario}")
    record("close", **close_fields(ws))
    print("done", flush=True)


def main():
    try:
        if sys.argv[1] == "server":
            asyncio.run(run_server(int(sys.argv[2]), compression(sys.argv[3])))
        else:
            asyncio.run(run_client(sys.argv[2], sys.argv[3], compression(sys.argv[4])))
    except Exception as e:
        record("error", message=repr(e))
        sys.exit(1)


if __name__ == "__main__":
    main()
