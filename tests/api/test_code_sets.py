"""The observation index keeps one row per code with the id of its codings (a code set): a
search by any of the codings finds the Observation, several code parameters must all be
among its codings, ``:not`` excludes it when any coding matches, and a code set is known to
the store only once the transaction that wrote it has committed."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from interop.store.context import WriteContext
from interop.store.schema import code_set_table
from interop.store.search import SearchRequest

from .test_fhir_crud import observation

LOINC = "http://loinc.org"
MDC = "urn:iso:std:iso:11073:10101"


def _pulse(pid: str, *extra: tuple[str, str]) -> dict[str, Any]:
    obs = observation(pid)
    obs["code"]["coding"].extend({"system": s, "code": c} for s, c in extra)
    return obs


def _found(services: Any, *params: tuple[str, str]) -> list[str]:
    got = services.search.search(SearchRequest("Observation", [*params, ("_count", "100")]))
    return sorted(r[0] for r in got.rows)


def test_any_coding_finds_the_observation(services: Any) -> None:
    with services.store.write(WriteContext.service()) as tx:
        both = tx.create(_pulse("p1", (MDC, "149546"))).res_id
        loinc_only = tx.create(_pulse("p1")).res_id
    assert _found(services, ("code", f"{MDC}|149546")) == [both]
    assert _found(services, ("code", "149546")) == [both]
    assert _found(services, ("code", f"{LOINC}|8867-4")) == sorted([both, loinc_only])
    assert _found(services, ("code", f"{LOINC}|149546")) == []
    # repeated code parameters: each must be one of the Observation's codings
    assert _found(services, ("code", f"{LOINC}|8867-4"), ("code", f"{MDC}|149546")) == [both]
    # :not: none of its codings may match
    assert _found(services, ("patient", "p1"), ("code:not", f"{MDC}|149546")) == [loinc_only]


def test_a_code_set_is_written_once(services: Any) -> None:
    with services.store.write(WriteContext.service()) as tx:
        for _ in range(3):
            tx.create(_pulse("p1", (MDC, "149546")))
    with services.store.write(WriteContext.service()) as tx:
        tx.create(_pulse("p2", (MDC, "149546")))
    with services.engine.connect() as conn:
        members = conn.execute(select(func.count()).select_from(code_set_table)).scalar()
    assert members == 2


def test_a_code_set_of_a_rolled_back_transaction_is_written_again(services: Any) -> None:
    class Abandon(Exception):
        pass

    with pytest.raises(Abandon), services.store.write(WriteContext.service()) as tx:
        tx.create(_pulse("p1", ("urn:new", "n1")))
        raise Abandon
    assert _found(services, ("code", "urn:new|n1")) == []
    with services.store.write(WriteContext.service()) as tx:
        stored = tx.create(_pulse("p1", ("urn:new", "n1"))).res_id
    assert _found(services, ("code", "urn:new|n1")) == [stored]
