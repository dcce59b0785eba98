"""EDI 2.0 outgoing rate with HelseID + DPoP: one ``interop worker`` process posts MsgHead
documents to a local Meldingstjener stand-in (the bench receiver, its own process, answering
201), every request with ``Authorization: DPoP`` and a fresh DPoP proof signed by the
municipality's key; the access token comes from the local HelseID (client assertion and DPoP
proof checked there) and is cached, so HelseID is asked once.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import Engine

from interop.access.helseid.local_issuer import private_jwk, public_jwk, serve_issuer
from interop.bench.outbox import _clear, _outcome, _pending, _workers
from interop.bench.receiver import RunningReceiver, receiver_process
from interop.bench.report import Report
from interop.bench.server import free_port
from interop.routing.outbox import enqueue
from interop.store.db import create_db_engine
from interop.store.migrate import upgrade

TARGET = 200.0
CLIENT_ID = "bench-fjordvik"
SENDER = ("80001", "80002")


def msghead(i: int, receiver_her: int) -> bytes:
    def org(her: str, inner: str = "") -> str:
        return (
            f"<Organisation><OrganisationName>Org {her}</OrganisationName><Ident><Id>{her}</Id>"
            f'<TypeId V="HER" DN="HER-id" S="2.16.578.1.12.4.1.1.9051"/></Ident>{inner}'
            "</Organisation>"
        )

    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<MsgHead xmlns="http://www.kith.no/xmlstds/msghead/2006-05-24"><MsgInfo>'
        f"<MsgId>{uuid.uuid4()}</MsgId><Sender>{org(SENDER[0], org(SENDER[1]))}</Sender>"
        f"<Receiver>{org(str(receiver_her))}</Receiver></MsgInfo>"
        f"<Document><RefDoc><Content>bench {i}</Content></RefDoc></Document></MsgHead>"
    ).encode()


def _enqueue(engine: Engine, rx: RunningReceiver, messages: int, destinations: int) -> None:
    with engine.begin() as conn:
        for i in range(messages):
            d = i % destinations
            enqueue(
                conn,
                event="bench",
                kind="bench",
                destination=f"Endpoint/edi2-{d}",
                transport="edi2",
                address=rx.url,
                content_type="application/xml",
                payload=msghead(i, 90000 + d),
                correlation_id="bench",
            )


def bench_url(backend: str, pg_url: str | None) -> str:
    if backend == "sqlite":
        path = Path("var/bench").absolute() / "bench-national.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
    assert pg_url
    return pg_url.rsplit("/", 1)[0] + "/interop_bench_national"


def run(
    report: Report, backend: str, url: str, *, messages: int = 3000, destinations: int = 50
) -> None:
    engine = create_db_engine(url)
    upgrade(engine)
    key = ec.generate_private_key(ec.SECP256R1())
    saved = os.environ.get("INTEROP_HELSEID_TENANTS_FILE")
    try:
        with (
            serve_issuer() as issuer,
            receiver_process(free_port()) as rx,
            tempfile.TemporaryDirectory(prefix="bench-national-") as tmp,
        ):
            issuer.token_endpoint.register(CLIENT_ID, public_jwk(key), {"nhn:msh": {"nhn:msh/api"}})
            key_file = Path(tmp) / "fjordvik.jwk"
            key_file.write_text(json.dumps(private_jwk(key)))
            tenants = Path(tmp) / "tenants.yaml"
            tenants.write_text(
                json.dumps(
                    {
                        "authority": issuer.url,
                        "tenants": [
                            {
                                "name": "fjordvik",
                                "client_id": CLIENT_ID,
                                "alg": "ES256",
                                "key_file": str(key_file),
                                "her_ids": list(SENDER),
                            }
                        ],
                    }
                )
            )
            os.environ["INTEROP_HELSEID_TENANTS_FILE"] = str(tenants)
            _clear(engine)
            rx.reset()
            with _workers(url, 1, Path(tmp)):
                _enqueue(engine, rx, messages, destinations)
                t0 = time.perf_counter()
                deadline = t0 + max(120.0, messages / 20)
                while _pending(engine) and time.perf_counter() < deadline:
                    time.sleep(0.02)
                seconds = time.perf_counter() - t0
            statuses, ordered = _outcome(engine)
            stats = rx.stats()
            acked = statuses.get("transport-acked", 0)
            rate = acked / seconds
            tokens = issuer.token_endpoint.issued
            ok = (
                rate >= TARGET
                and acked == messages
                and stats["distinct"] == messages
                and stats["signed"] == stats["requests"]
                and ordered
            )
            report.row(
                "national",
                backend,
                0,
                "EDI 2.0 sends with HelseID + DPoP (ES256 proof per request), 1 worker process",
                f"{rate:,.0f} messages/s",
                f"{acked:,}/{messages:,} acked over {destinations} receivers in {seconds:.2f} s; "
                f"{stats['signed']:,}/{stats['requests']:,} requests DPoP-signed; "
                f"{stats['distinct']:,} distinct documents; {tokens} token request(s) to HelseID; "
                f"per-receiver order {'kept' if ordered else '**broken**'}",
                target=f"≥ {TARGET:.0f}/s",
                ok=ok,
            )
            if statuses.keys() - {"transport-acked"}:
                report.note(f"national/{backend}: statuses {statuses}")
    finally:
        if saved is None:
            os.environ.pop("INTEROP_HELSEID_TENANTS_FILE", None)
        else:
            os.environ["INTEROP_HELSEID_TENANTS_FILE"] = saved
        engine.dispose()
