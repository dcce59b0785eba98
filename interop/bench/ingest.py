"""Ingest figures: HL7 v2 ORU over MLLP (ACK rate and latency, 1 and 8 connections; processing
rate), mapped-JSON batch ingest through the pipeline, and the cost of each."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from adapters.base import FNR_OID, IngestMeta, PatientRef
from adapters.mllp import MllpDecoder, mllp_frame
from interop.bench.report import Report
from interop.bench.server import BENCH_KEY, free_port
from interop.config import Settings
from interop.identifiers import generate_fnr
from interop.ingest.pipeline import IngestPipeline
from interop.runtime import tune_gc
from interop.services import build_services
from interop.store.context import WriteContext


def _oru(i: int, fnr: str, when: datetime, device: str = "0123456789ABCDEF") -> bytes:
    ts = when.strftime("%Y%m%d%H%M%S+0000")
    segs = [
        f"MSH|^~\\&|BENCH^0001^EUI-64|HOME|DHO|DHO|{ts}||ORU^R01^ORU_R01|BENCH-{i}|P|2.6|||NE|AL",
        f"PID|||{fnr}^^^&2.16.578.1.12.4.1.4.1&ISO^FNR",
        f"OBR|1|||182777000^monitoring of patient^SNOMED-CT|||{ts}",
        f"OBX|1||528391^MDC_DEV_SPEC_PROFILE_BP^MDC|1|||||||X|||||||{device}^EUI-64",
        f"OBX|2||150020^MDC_PRESS_BLD_NONINV^MDC|1.0.1|||||||X|||{ts}",
        f"OBX|3|NM|150021^MDC_PRESS_BLD_NONINV_SYS^MDC|1.0.1.1|{120 + i % 30}|266016^MDC_DIM_MMHG^MDC|||||R",
        f"OBX|4|NM|150022^MDC_PRESS_BLD_NONINV_DIA^MDC|1.0.1.2|{75 + i % 15}|266016^MDC_DIM_MMHG^MDC|||||R",
        f"OBX|5|NM|149546^MDC_PULS_RATE_NON_INV^MDC|1.0.2.1|{60 + i % 40}|264864^MDC_DIM_BEAT_PER_MIN^MDC|||||R|||{ts}",
    ]
    return ("\r".join(segs) + "\r").encode()


def _sender(port: int, messages: list[bytes], latencies: list[float]) -> None:
    with socket.create_connection(("127.0.0.1", port)) as s:
        dec = MllpDecoder()
        for msg in messages:
            t0 = time.perf_counter()
            s.sendall(mllp_frame(msg))
            got = False
            while not got:
                chunk = s.recv(65536)
                if not chunk:
                    raise RuntimeError("MLLP connection closed")
                for ack in dec.feed(chunk):
                    if b"MSA|AA" not in ack:
                        raise RuntimeError(f"not AA: {ack[:200]!r}")
                    got = True
            latencies.append(time.perf_counter() - t0)


def _pct(values: list[float], p: float) -> float:
    data = sorted(values)
    return data[min(len(data) - 1, round(p / 100 * (len(data) - 1)))] if data else float("nan")


def _processed(url: str) -> int:
    from sqlalchemy import func, select

    from interop.store.db import create_db_engine
    from interop.store.schema import inbound_message_table as t

    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(select(func.count()).where(t.c.status == "processed")).scalar_one()
            )
    finally:
        engine.dispose()


def _wait_processed(url: str, total: int, timeout: float) -> float:
    from sqlalchemy import func, select

    from interop.store.db import create_db_engine
    from interop.store.schema import inbound_message_table as t

    engine = create_db_engine(url)
    t0 = time.perf_counter()
    try:
        while time.perf_counter() - t0 < timeout:
            with engine.connect() as conn:
                done = conn.execute(
                    select(func.count()).where(t.c.status == "processed")
                ).scalar_one()
            if done >= total:
                return time.perf_counter() - t0
            time.sleep(0.2)
    finally:
        engine.dispose()
    return float("nan")


def run(report: Report, backend: str, url: str, size: int) -> None:
    settings = Settings(database_url=url, admin_key=BENCH_KEY)
    services = build_services(settings)
    run_id = int(time.time())
    # a patient of this run's own, whose readings come after anything stored for them, as a
    # feed's do: repeated runs on one database used to write every run's readings into the
    # same patient's same few hours, interleaved with the earlier runs', which made each run
    # slower than the one before and no real feed does
    fnr = generate_fnr(
        datetime(1950, 5, 17).date(), rng=__import__("random").Random(run_id), synthetic=True
    )
    with services.store.write(WriteContext.service()) as tx:
        from interop.patients import patient_by_identifier

        if patient_by_identifier(tx.conn, FNR_OID, fnr) is None:
            tx.create(
                {"resourceType": "Patient", "identifier": [{"system": FNR_OID, "value": fnr}]}
            )
    base_time = datetime.now(UTC) - timedelta(days=3)

    # ---- MLLP --------------------------------------------------------------------------
    separate_worker = backend == "postgresql"
    port, http_port = free_port(), free_port()
    # the benchmark's sender (MSH-3 BENCH, MSH-4 HOME) on this machine, listed as the
    # municipality's own engine: its patient is not linked to any vendor
    senders = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)  # noqa: SIM115
    with senders:
        senders.write(
            "senders:\n"
            "  - {application: BENCH, facility: HOME, peers: [127.0.0.1], role: followup}\n"
        )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "interop.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(http_port),
            "--mllp-port",
            str(port),
            "--log-level",
            "warning",
        ],
        env={
            **__import__("os").environ,
            "INTEROP_DATABASE_URL": url,
            "INTEROP_ADMIN_KEY": BENCH_KEY,
            # PostgreSQL (production): the API process stores and ACKs, a worker process
            # turns messages into data. SQLite: one process does both, as writers in several
            # processes would wait on each other's file lock.
            "INTEROP_MLLP_PROCESS_INBOX": "false" if separate_worker else "true",
            "INTEROP_MLLP_SENDERS": senders.name,
        },
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "interop.cli", "worker"] if separate_worker else ["true"],
        env={
            **__import__("os").environ,
            "INTEROP_DATABASE_URL": url,
            "INTEROP_LOG_JSON": "false",
            "INTEROP_MLLP_SENDERS": senders.name,
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("MLLP listener did not start") from None
                time.sleep(0.2)
        sent = 0
        already = _processed(url)
        t_first = 0.0
        for conns, n in ((1, 600), (8, 1600)):
            msgs = [
                _oru(
                    run_id * 100000 + sent + i,
                    fnr,
                    base_time + timedelta(seconds=sent + i),
                    # a device of this run's own: new readings, never corrections of an
                    # earlier run's (same device and time, another value) when runs are close
                    device=f"{run_id & 0xFFFFFFFFFFFFFFFF:016X}",
                )
                for i in range(n)
            ]
            sent += n
            per = [msgs[k::conns] for k in range(conns)]
            lats: list[list[float]] = [[] for _ in range(conns)]
            threads = [
                threading.Thread(target=_sender, args=(port, per[k], lats[k])) for k in range(conns)
            ]
            t0 = time.perf_counter()
            t_first = t_first or t0
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            secs = time.perf_counter() - t0
            allat = [x for lat in lats for x in lat]
            rate = n / secs
            report.row(
                "ingest",
                backend,
                size,
                f"ORU^R01 over MLLP, {conns} connection(s): ACKed (stored) messages",
                f"{rate:,.0f} msg/s",
                f"ACK p50 {_pct(allat, 50) * 1000:.1f} ms, p99 {_pct(allat, 99) * 1000:.1f} ms",
                target="≥ 300 msg/s, ACK p99 ≤ 50 ms",
                ok=rate >= 300 and _pct(allat, 99) <= 0.05,
            )
        t_acked = time.perf_counter()
        during = _processed(url) - already
        t_proc = _wait_processed(url, already + sent, 600)
        t_all = time.perf_counter() - t_first
        report.row(
            "ingest",
            backend,
            size,
            f"ORU processing behind the ACK ({sent} messages → Observations)",
            f"{sent / t_proc:,.0f} msg/s" if t_proc == t_proc else "timeout",
            "; ".join(
                [
                    "one interop worker process beside the API (INTEROP_MLLP_PROCESS_INBOX=false)"
                    if separate_worker
                    else "inbox thread in the API process (SQLite: one writer process)",
                    # the figure counts from the last ACK; what was done during the ACK runs
                    # (where the ACK path goes first) and the rate over the whole run put it
                    # in context
                    f"{during} processed during the {t_acked - t_first:.1f} s of ACK runs",
                ]
                + (
                    [f"{sent / t_all:,.0f} msg/s from the first message sent"]
                    if t_proc == t_proc
                    else []
                )
            ),
        )
    finally:
        for p in (proc, worker):
            p.terminate()
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        Path(senders.name).unlink(missing_ok=True)

    # ---- mapped-JSON batches (pipeline, in process) -------------------------------------
    # this process now stands in for a service process (API or worker), which tunes its
    # garbage collector when its start-up is done
    tune_gc(settings)
    pipe = IngestPipeline(services)
    groups: list[dict[str, Any]] = []
    start = int((datetime.now(UTC) - timedelta(minutes=2100)).timestamp())  # one a minute
    for g in range(2000):
        groups.append(
            {
                "grpid": run_id * 10000 + g,
                "category": 1,
                "date": start + g * 60,
                "measures": [
                    {"type": 1, "unit": -3, "value": 80000 + g % 500},
                    {"type": 9, "unit": 0, "value": 70 + g % 20},
                    {"type": 10, "unit": 0, "value": 120 + g % 30},
                    {"type": 11, "unit": 0, "value": 60 + g % 30},
                ],
            }
        )
    batches = [
        orjson.dumps({"status": 0, "body": {"measuregrps": groups[i : i + 500]}})
        for i in range(0, len(groups), 500)
    ]
    meta = IngestMeta(
        source="bench",
        patient=PatientRef(FNR_OID, fnr),
        options={"profile": "withings-body-measures"},
    )
    # warm-up: a batch of other groups, so that loading the mapping profile and the first
    # statements' preparation are not inside the measurement
    warm = [dict(g, grpid=g["grpid"] + 5000, date=g["date"] - 86400 * 5) for g in groups[:100]]
    pipe.ingest("mapped-json", orjson.dumps({"status": 0, "body": {"measuregrps": warm}}), meta)
    t0 = time.perf_counter()
    created = 0
    for b in batches:
        created += pipe.ingest("mapped-json", b, meta).created
    secs = time.perf_counter() - t0
    report.row(
        "ingest",
        backend,
        size,
        "mapped-JSON batches (Withings profile, 500 groups each)",
        f"{created / secs:,.0f} obs/s",
        f"{created} Observations in {secs:.1f} s",
        target="≥ 3,000 obs/s",
        ok=created / secs >= 3000,
    )
    services.engine.dispose()
