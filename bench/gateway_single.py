"""The gateway's own CPU per proxied single post, in process: ``python -m bench.gateway_single``.

The gateway app (every middleware: request id, canonical path, audit, JWT authentication and rate limit,
bulk row limit, the proxy with its signing and admission control) is driven straight through ASGI with
``POST /api/v1/interactions`` as an admin's JWT, in blocks of ``--block`` posts. Its upstream is a bare
HTTP/1.1 server in a child process that answers every request with a fixed 201, so this process's CPU
(``time.process_time``) is the gateway's work plus the driver's, and nothing of a service's. Prints the
median CPU ms per post over ``--blocks`` blocks and the load average. No HTTP server in front of the
gateway (uvicorn's parsing is the same whatever the gateway does) and no database on the request path
(the key store is SQLite in a temporary folder, unused by JWT callers).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench.auth import UNTHROTTLED_ENV, bearer_headers
from bench.write_path import asgi_post, interaction

ANSWER = b'{"id":"i-1"}'
# A fixed answer with a Location header, as the interaction service sends one.
UPSTREAM = f"""
import asyncio, socket, sys
ANSWER = (b"HTTP/1.1 201 Created\\r\\ncontent-type: application/json\\r\\nlocation: /interactions/i-1\\r\\n"
          b"content-length: {len(ANSWER)}\\r\\n\\r\\n" + {ANSWER!r})
class Answer(asyncio.Protocol):
    def connection_made(self, transport): self.transport, self.buffer = transport, b""
    def data_received(self, data):
        self.buffer += data
        while b"\\r\\n\\r\\n" in self.buffer:
            head, rest = self.buffer.split(b"\\r\\n\\r\\n", 1)
            lines = [l for l in head.split(b"\\r\\n") if l.lower().startswith(b"content-length")]
            length = int(lines[0].split(b":")[1]) if lines else 0
            if len(rest) < length: return
            self.buffer = rest[length:]
            self.transport.write(ANSWER)
async def main():
    sock = socket.socket(); sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); sock.bind(("127.0.0.1", 0))
    server = await asyncio.get_running_loop().create_server(Answer, sock=sock)
    print(sock.getsockname()[1], flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


async def run(app: Any, blocks: int, size: int) -> list[float]:
    headers = [(b"content-type", b"application/json")]
    headers += [(k.lower().encode(), v.encode()) for k, v in bearer_headers().items()]
    per_block: list[float] = []
    async with app.router.lifespan_context(app):
        for number in range(blocks + 1):  # the first block warms: connections, caches
            bodies = [orjson.dumps(interaction(f"c-{i % 1000}", number * size + i)) for i in range(size)]
            started = time.process_time()
            for body in bodies:
                status, _ = await asgi_post(app, "/api/v1/interactions", body, headers)
                assert status == 201, status
            if number:
                per_block.append((time.process_time() - started) * 1000 / size)
    return per_block


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway_single", description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=20)
    parser.add_argument("--block", type=int, default=200, help="posts per block")
    args = parser.parse_args()
    upstream = subprocess.Popen([sys.executable, "-c", UPSTREAM], stdout=subprocess.PIPE, text=True)
    try:
        assert upstream.stdout is not None
        port = int(upstream.stdout.readline())
        with tempfile.TemporaryDirectory() as folder:
            os.environ.update(UNTHROTTLED_ENV)
            from gateway.app import create_app  # after the environment: settings read it
            from gateway.settings import GatewaySettings

            settings = GatewaySettings(
                interaction_url=f"http://127.0.0.1:{port}",
                database_url=f"sqlite+aiosqlite:///{Path(folder) / 'gateway.db'}",
            )
            load_before = os.getloadavg()[0]
            per_block = asyncio.run(run(create_app(settings), args.blocks, args.block))
    finally:
        upstream.terminate()
        upstream.wait()
    print(
        f"gateway CPU per proxied POST /api/v1/interactions: median {statistics.median(per_block):.3f} ms, "
        f"min {min(per_block):.3f}, max {max(per_block):.3f} ({args.blocks} blocks of {args.block}); "
        f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after; {socket.gethostname()}"
    )


if __name__ == "__main__":
    main()
