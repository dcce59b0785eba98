"""Outbox figures: deliveries/s from ``interop worker`` processes to a local HTTP receiver.

The workers start first and idle on an empty outbox; then N messages over D destinations are
enqueued in one transaction, and the clock runs from its commit until no message is queued or
sending. The receiver (its own process, answering 200 at once) counts every ``X-Message-Id``,
so a message delivered twice shows up as a duplicate.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, func, select, text

from interop.bench.receiver import RunningReceiver, receiver_process
from interop.bench.report import Report
from interop.bench.server import free_port
from interop.routing.outbox import PENDING, enqueue
from interop.store.db import create_db_engine
from interop.store.migrate import upgrade
from interop.store.schema import outbox_table

TARGET = 500.0
CONCURRENCY = 4


def _clear(engine: Engine) -> None:
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("TRUNCATE outbox"))
        else:
            conn.execute(outbox_table.delete())


@contextmanager
def _workers(url: str, n: int, logdir: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    env = dict(os.environ)
    env.update({"INTEROP_DATABASE_URL": url, "INTEROP_LOG_JSON": "false"})
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []
    try:
        for i in range(n):
            log = logdir / f"worker-{i}.log"
            logs.append(log)
            with log.open("wb") as f:
                procs.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "interop.cli",
                            "worker",
                            "--concurrency",
                            str(CONCURRENCY),
                        ],
                        env=env,
                        stdout=f,
                        stderr=subprocess.STDOUT,
                    )
                )
        deadline = time.monotonic() + 60
        for proc, log in zip(procs, logs, strict=True):
            while b"worker running" not in log.read_bytes():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"worker did not start: {log.read_text()[-2000:]}")
                time.sleep(0.05)
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _enqueue(engine: Engine, rx: RunningReceiver, messages: int, destinations: int) -> float:
    t0 = time.perf_counter()
    with engine.begin() as conn:
        for i in range(messages):
            d = i % destinations
            enqueue(
                conn,
                event="bench",
                kind="bench",
                destination=f"Endpoint/bench-{d}",
                transport="http",
                address=f"{rx.url}/hook/{d}",
                content_type="application/json",
                payload=b'{"resourceType":"Basic","id":"%d"}' % i,
                correlation_id="bench",
            )
    return time.perf_counter() - t0


def _pending(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).where(outbox_table.c.status.in_(PENDING))
            ).scalar_one()
        )


def _outcome(engine: Engine) -> tuple[dict[str, int], bool]:
    """Counts per status, and whether each destination's messages were sent in seq order."""
    o = outbox_table
    with engine.connect() as conn:
        statuses = {
            str(s): int(c)
            for s, c in conn.execute(select(o.c.status, func.count()).group_by(o.c.status))
        }
        rows = conn.execute(select(o.c.destination, o.c.seq, o.c.sent_at).order_by(o.c.seq)).all()
    last: dict[str, int] = {}
    ordered = True
    for dest, _seq, sent_at in rows:
        if sent_at is None or sent_at < last.get(dest, 0):
            ordered = False
        last[dest] = sent_at or 0
    return statuses, ordered


def bench_url(backend: str, pg_url: str | None) -> str:
    if backend == "sqlite":
        path = Path("var/bench").absolute() / "bench-outbox.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
    assert pg_url
    return pg_url.rsplit("/", 1)[0] + "/interop_bench_outbox"


def run(
    report: Report,
    backend: str,
    url: str,
    *,
    messages: int = 5000,
    destinations: int = 50,
    worker_counts: tuple[int, ...] = (1, 4),
) -> None:
    engine = create_db_engine(url)
    upgrade(engine)
    try:
        with (
            receiver_process(free_port()) as rx,
            tempfile.TemporaryDirectory(prefix="bench-outbox-") as tmp,
        ):
            for n in worker_counts:
                _clear(engine)
                rx.reset()
                with _workers(url, n, Path(tmp)):
                    enqueue_s = _enqueue(engine, rx, messages, destinations)
                    t0 = time.perf_counter()
                    deadline = t0 + max(120.0, messages / 20)
                    while _pending(engine) and time.perf_counter() < deadline:
                        time.sleep(0.02)
                    seconds = time.perf_counter() - t0
                statuses, ordered = _outcome(engine)
                stats = rx.stats()
                acked = statuses.get("transport-acked", 0)
                rate = acked / seconds
                dups = int(stats["duplicates"])
                ok = (
                    rate >= TARGET
                    and acked == messages
                    and stats["distinct"] == messages
                    and dups == 0
                    and ordered
                )
                span = (stats["last"] or 0) - (stats["first"] or 0)
                report.row(
                    "outbox",
                    backend,
                    0,
                    f"deliveries to a local HTTP receiver, {n} worker process(es) × "
                    f"{CONCURRENCY} threads",
                    f"{rate:,.0f} deliveries/s",
                    f"{acked:,}/{messages:,} acked over {destinations} destinations in "
                    f"{seconds:.2f} s (first→last receipt {span:.2f} s); "
                    f"{stats['distinct']:,} distinct MsgIds, {dups} duplicate(s); "
                    f"per-destination order {'kept' if ordered else '**broken**'}; "
                    f"enqueue {messages / enqueue_s:,.0f} msg/s in one transaction",
                    target=f"≥ {TARGET:.0f}/s, no duplicates",
                    ok=ok,
                )
                if statuses.keys() - {"transport-acked"}:
                    report.note(f"outbox/{backend}/{n} worker(s): statuses {statuses}")
    finally:
        engine.dispose()
