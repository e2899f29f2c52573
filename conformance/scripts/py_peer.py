"""Python `websockets` peer for the wsmachine trace corpus (see src/bin/record.rs).

    py_peer.py server PORT COMPRESS       serve scenarios by path; prints "ready" when listening
    py_peer.py client URL SCENARIO COMPRESS

COMPRESS is "deflate" or "none". Raw bad frames are written to the transport.
"""
import asyncio
import sys

import websockets
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve


def compression(arg):
    return "deflate" if arg == "deflate" else None


async def server_handler(ws):
    path = ws.request.path
    if path == "/close":
        await ws.send("bye soon")
        await ws.close(1001, "going away")
        return
    if path == "/ping":
        pong = await ws.ping(b"are you there")
        await pong
        await ws.send("pong received")
    elif path == "/fragments":
        await ws.send(["frag", "ment", "ed"])
    elif path == "/badutf8":
        ws.transport.write(bytes([0x81, 0x02, 0xC3, 0x28]))
    elif path == "/badframe":
        ws.transport.write(bytes([0x83, 0x00]))
    try:
        async for msg in ws:
            await ws.send(msg)
    except websockets.ConnectionClosed:
        pass


async def run_server(port, comp):
    async with serve(server_handler, "127.0.0.1", port, compression=comp, ping_interval=None):
        print("ready", flush=True)
        await asyncio.Future()


async def run_client(url, scenario, comp):
    async with connect(url, compression=comp, ping_interval=None) as ws:
        if scenario == "echo":
            await ws.send("hello")
            print(await ws.recv())
            await ws.send(bytes([0, 1, 2, 255]))
            await ws.recv()
            await ws.send(["Hel", "lo, ", "fragments"])
            await ws.recv()
            await ws.send("compressible " * 40)
            await ws.recv()
            pong = await ws.ping(b"p1")
            await pong
            await ws.close(1000, "done")
        elif scenario == "server-close":
            await ws.send("close me")
            try:
                await ws.recv()
            except websockets.ConnectionClosed:
                pass
            await ws.wait_closed()
        elif scenario == "ping":
            await ws.send("ping me")
            await ws.recv()
            try:
                await ws.recv()
            except websockets.ConnectionClosed:
                pass
        elif scenario == "badutf8":
            # masked (zero key) text frame with invalid UTF-8
            ws.transport.write(bytes([0x81, 0x82, 0, 0, 0, 0, 0xC3, 0x28]))
            try:
                await ws.recv()
            except websockets.ConnectionClosed as e:
                print("closed", e.rcvd.code if e.rcvd else None)
            await ws.wait_closed()


def main():
    if sys.argv[1] == "server":
        asyncio.run(run_server(int(sys.argv[2]), compression(sys.argv[3])))
    else:
        asyncio.run(run_client(sys.argv[2], sys.argv[3], compression(sys.argv[4])))


if __name__ == "__main__":
    main()
