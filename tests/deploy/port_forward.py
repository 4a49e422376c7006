"""A TCP port-forward into a compose project's internal network, for tests (what `kubectl port-forward` is to a
cluster): `python port_forward.py 8002=rag:8002 6379=redis:6379 ...` listens on each local port and relays every
connection to the named service. It runs in a container of its own, outside the project under test, so the
project still publishes only the gateway and the UIs; tests/deploy/compose.probe.yaml starts it.
"""

from __future__ import annotations

import asyncio
import sys


async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy one direction until EOF, then pass the EOF on (HTTP keep-alive and Redis pipelines stay intact)."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


async def _forward(listen_port: int, host: str, port: int) -> None:
    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            upstream_r, upstream_w = await asyncio.open_connection(host, port)
        except OSError:
            client_w.close()  # the service is not up (yet): the client sees the connection closed
            return
        await asyncio.gather(_relay(client_r, upstream_w), _relay(upstream_r, client_w))
        client_w.close()
        upstream_w.close()

    server = await asyncio.start_server(handle, "0.0.0.0", listen_port)
    async with server:
        await server.serve_forever()


async def main(specs: list[str]) -> None:
    routes = []
    for spec in specs:
        listen, target = spec.split("=", 1)
        host, port = target.rsplit(":", 1)
        routes.append(_forward(int(listen), host, int(port)))
    print(f"port_forward: {' '.join(specs)}", flush=True)
    await asyncio.gather(*routes)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
