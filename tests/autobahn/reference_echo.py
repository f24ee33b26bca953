#!/usr/bin/env python3
"""Reference WebSocket echo server for validating the Autobahn harness.

usage: reference_echo.py [--port N] [--compression websockets|full|off]

Not part of lwsws: it exists only so that tests/autobahn/run.sh can be proven
against a known-good peer (tests/autobahn/selftest.sh). It uses the Python
`websockets` library (Debian's python3-websockets or pip's).

Listens on 127.0.0.1 (the port given, or one the kernel picks), prints
"READY <port>" on stdout once listening and serves until killed. Every
message comes back as it was (text as text, binary as binary). The
subprotocol "echo" is accepted when offered (like lwsws's `echo` protocol);
a client that offers none is served too.

--compression:
  websockets  permessage-deflate with the library's defaults (it limits the
              window bits and memLevel to save memory) -- the default;
  full        permessage-deflate accepting every parameter the client asks
              for, with no limit of our own;
  off         no permessage-deflate.
"""

import argparse
import asyncio
import sys

import websockets

from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory


async def echo(ws, *_path):
    try:
        async for msg in ws:
            await ws.send(msg)
    except websockets.exceptions.ConnectionClosed:
        pass


async def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument(
        "--compression", choices=("websockets", "full", "off"), default="websockets"
    )
    args = ap.parse_args()

    kwargs = dict(
        subprotocols=["echo"],
        # Section 9 sends messages of up to 16 MiB; the library's 1 MiB
        # default would close those with 1009.
        max_size=64 * 1024 * 1024,
        max_queue=None,
        # No keepalive pings of our own: they would only add noise to the
        # frame-exact expectations of the test cases.
        ping_interval=None,
    )
    if args.compression == "websockets":
        kwargs["compression"] = "deflate"
    elif args.compression == "full":
        kwargs["compression"] = None
        kwargs["extensions"] = [ServerPerMessageDeflateFactory()]
    else:
        kwargs["compression"] = None

    server = await websockets.serve(echo, args.host, args.port, **kwargs)
    port = server.sockets[0].getsockname()[1]
    print("READY %d" % port, flush=True)
    await asyncio.Future()  # serve until killed


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
