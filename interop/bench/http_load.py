"""A small closed-loop HTTP/1.1 load generator (keep-alive, N connections, raw asyncio).

Lighter on the CPU than a full HTTP client, so more of this 2-core machine's time goes to the
server being measured. Only for loopback benchmarks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    requests: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        data = sorted(self.latencies)
        k = min(len(data) - 1, max(0, round(p / 100 * (len(data) - 1))))
        return data[k]


RequestFactory = Callable[[int], tuple[str, str, bytes] | tuple[str, str, bytes, dict[str, str]]]
"""Request number → (method, path, body), or with headers of its own (a DPoP proof each)."""
"""i → (method, path, body)"""


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    chunked = False
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        k = k.strip().lower()
        if k == b"content-length":
            length = int(v.strip())
        elif k == b"transfer-encoding" and b"chunked" in v.lower():
            chunked = True
    if chunked:
        body = b""
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
        return status, body
    return status, await reader.readexactly(length) if length else b""


async def _worker(
    host: str,
    port: int,
    headers: dict[str, str],
    make: RequestFactory,
    counter: list[int],
    total: int,
    result: LoadResult,
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    try:
        while True:
            i = counter[0]
            if i >= total:
                return
            counter[0] += 1
            made = make(i)
            method, path, body = made[0], made[1], made[2]
            own = "".join(f"{k}: {v}\r\n" for k, v in made[3].items()) if len(made) > 3 else ""
            req = (
                f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}{own}"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode() + body
            t0 = time.perf_counter()
            writer.write(req)
            status, _ = await _read_response(reader)
            result.latencies.append(time.perf_counter() - t0)
            result.statuses[status] = result.statuses.get(status, 0) + 1
    finally:
        writer.close()


def run_load(
    base: str,
    make: RequestFactory,
    *,
    total: int,
    connections: int = 8,
    headers: dict[str, str] | None = None,
) -> LoadResult:
    hostport = base.split("://", 1)[1].split("/", 1)[0]
    host, _, port = hostport.partition(":")
    result = LoadResult(requests=total, seconds=0.0)
    counter = [0]

    async def main() -> None:
        t0 = time.perf_counter()
        await asyncio.gather(
            *[
                _worker(host, int(port), headers or {}, make, counter, total, result)
                for _ in range(connections)
            ]
        )
        result.seconds = time.perf_counter() - t0

    asyncio.run(main())
    return result
