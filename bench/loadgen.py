"""A small open-loop HTTP/1.1 load generator on raw asyncio sockets (keep-alive connections).

Requests are sent at a fixed arrival rate spread evenly over the connections, and latency is measured
from each request's *scheduled* time, so a stall is not hidden (no coordinated omission). It is Python:
it shares the 2 cores with the system under test, which is why rates stay well below saturation.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field


@dataclass
class Phase:
    """Latencies (seconds), statuses and one response header collected during a phase."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    header_values: list[float] = field(default_factory=list)
    duration_s: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)

    def count(self, outcome: str) -> None:
        """Tally one outcome (an HTTP status, or the name of a connection error)."""
        self.statuses[outcome] = self.statuses.get(outcome, 0) + 1


async def _read_response(reader: asyncio.StreamReader, header: bytes | None) -> tuple[int, float | None]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length, value = 0, None
    for line in lines[1:]:
        name, _, raw = line.partition(b":")
        lname = name.strip().lower()
        if lname == b"content-length":
            length = int(raw)
        elif header is not None and lname == header:
            value = float(raw)
    if length:
        await reader.readexactly(length)
    return status, value


async def _connection(
    host: str,
    port: int,
    request: bytes,
    start: float,
    interval: float,
    offset: float,
    until: float,
    phase: Phase,
    header: bytes | None,
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    n = 0
    try:
        while True:
            scheduled = start + offset + n * interval
            if scheduled >= until:
                return
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            writer.write(request)
            try:
                status, value = await _read_response(reader, header)
            except (ConnectionError, asyncio.IncompleteReadError):
                phase.errors += 1
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                n += 1
                continue
            phase.latencies.append(time.perf_counter() - scheduled)
            if status != 200:
                phase.errors += 1
            if value is not None:
                phase.header_values.append(value)
            n += 1
    finally:
        writer.close()


def build_request(host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    """A keep-alive POST as raw bytes."""
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def fixed_rate(
    host: str,
    port: int,
    request: bytes,
    connections: int,
    rate: float,
    duration_s: float,
    header: bytes | None = None,
) -> Phase:
    """Send `rate` requests/s in total over `connections` connections for `duration_s`."""
    phase = Phase()
    interval = connections / rate
    start = time.perf_counter() + 0.2
    until = start + duration_s
    await asyncio.gather(
        *(_connection(host, port, request, start, interval, i / rate, until, phase, header) for i in range(connections))
    )
    phase.duration_s = duration_s
    return phase


async def closed_loop(host: str, port: int, request: bytes, connections: int, duration_s: float) -> Phase:
    """Each connection sends its next request as soon as the last answer arrived (saturation throughput)."""
    phase = Phase()
    until = time.perf_counter() + duration_s

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.perf_counter() < until:
                sent = time.perf_counter()
                writer.write(request)
                try:
                    status, _ = await _read_response(reader, None)
                except (ConnectionError, asyncio.IncompleteReadError) as exc:
                    phase.errors += 1  # counted, then a fresh connection (a server may close one under load)
                    phase.count(type(exc).__name__)
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                    continue
                phase.latencies.append(time.perf_counter() - sent)
                phase.errors += status != 200
                phase.count(str(status))
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    phase.duration_s = duration_s
    return phase
