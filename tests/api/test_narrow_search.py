"""A generic search with a filter that picks few resources (a patient, ``_id``, the policy's
restriction) looks its other parameters up per picked resource on SQLite
(``SearchEngine._rows_matching``): every kind of parameter, ``:not``, several values, paging
and a GP's restriction answer exactly what the same filters pick one by one."""

from __future__ import annotations

from itertools import product
from typing import Any

from tests.api.test_fhir_crud import patient
from tests.api.test_meta_and_system_search import _world
from tests.api.test_r4_types import condition
from tests.api.test_search_breadth import _create, _ids

SCT = "http://snomed.info/sct"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"


def _condition(pid: str, code: str, status: str, onset: str, tag: str) -> dict[str, Any]:
    c = condition(pid, code=code, onset=onset)
    c["clinicalStatus"] = {"coding": [{"system": CLINICAL, "code": status}]}
    c["meta"] = {"tag": [{"system": "urn:test:tags", "code": tag}]}
    return c


def test_every_kind_of_parameter_beside_a_patient(client) -> None:  # type: ignore[no-untyped-def]
    a, b = _create(client, patient()), _create(client, patient())
    made: dict[str, dict[str, str]] = {}
    for pid, code, status, onset, tag in product(
        (a, b),
        ("38341003", "44054006"),
        ("active", "resolved"),
        ("2020-05-01", "2024-02-01"),
        ("x",),
    ):
        rid = _create(client, _condition(pid, code, status, onset, tag))
        made[rid] = {"pid": pid, "code": code, "status": status, "onset": onset}

    def expected(pid: str, **want: Any) -> set[str]:
        return {
            rid
            for rid, m in made.items()
            if m["pid"] == pid and all(test(m) for test in want.values())
        }

    base = f"Condition?patient=Patient/{a}&_count=100"
    assert _ids(client, f"{base}&clinical-status=active") == expected(
        a, s=lambda m: m["status"] == "active"
    )
    assert _ids(client, f"{base}&code:not={SCT}|38341003") == expected(
        a, c=lambda m: m["code"] != "38341003"
    )
    assert _ids(client, f"{base}&code=38341003,44054006&clinical-status=resolved") == expected(
        a, s=lambda m: m["status"] == "resolved"
    )
    assert _ids(client, f"{base}&onset-date=lt2022&clinical-status=active") == expected(
        a, o=lambda m: m["onset"] < "2022", s=lambda m: m["status"] == "active"
    )
    assert _ids(client, f"{base}&_tag=x&code={SCT}|44054006") == expected(
        a, c=lambda m: m["code"] == "44054006"
    )
    assert _ids(client, f"{base}&_tag=y") == set()
    # paged: two a page, every match once
    seen: list[str] = []
    url: str | None = f"/fhir/Condition?patient=Patient/{a}&clinical-status=active&_count=2"
    while url:
        page = client.get(url).json()
        seen += [e["resource"]["id"] for e in page.get("entry", [])]
        url = next((lk["url"] for lk in page["link"] if lk["relation"] == "next"), None)
    assert sorted(seen) == sorted(expected(a, s=lambda m: m["status"] == "active"))
    # by _id
    some = sorted(expected(b))[:3]
    assert _ids(client, f"Condition?_id={','.join(some)}&clinical-status=active") == {
        rid for rid in some if made[rid]["status"] == "active"
    }


def test_a_gp_restricted_search_with_tokens(client) -> None:  # type: ignore[no-untyped-def]
    _a, _b, ca, _cb, gp = _world(client)
    r = client.get("/fhir/Condition?clinical-status=active", headers=gp)
    assert r.status_code == 200, r.text
    assert {e["resource"]["id"] for e in r.json()["entry"]} == {ca}
    r = client.get(f"/fhir/Condition?code={SCT}|44054006", headers=gp)  # only B's has it
    assert r.json().get("entry", []) == []


def test_sqlite_looks_the_other_parameters_up_by_the_picked_resource(
    client, services, backend
) -> None:  # type: ignore[no-untyped-def]
    """The per-resource look-up goes through the ``(res_type, res_id)`` index: with the
    parameter's name usable, SQLite preferred the lookup index and read every row carrying the
    value once per picked resource (a common ``_tag``: 15 ms a search at 1M Observations)."""
    if backend != "sqlite":
        return
    from sqlalchemy import event

    a = _create(client, patient())
    _create(client, _condition(a, "38341003", "active", "2020-05-01", "x"))
    seen: list[tuple[str, Any]] = []

    def listen(_c, _cur, statement, parameters, _ctx, _many):  # type: ignore[no-untyped-def]
        if "search_token" in statement and "EXISTS" in statement:
            seen.append((statement, parameters))

    engine = services.store.engine
    event.listen(engine, "before_cursor_execute", listen)
    try:
        r = client.get(
            f"/fhir/Condition?patient=Patient/{a}&_tag=urn:test:tags|x&clinical-status=active"
        )
    finally:
        event.remove(engine, "before_cursor_execute", listen)
    assert r.status_code == 200 and r.json()["total"] == 1
    assert seen
    with engine.connect() as conn:
        for statement, parameters in seen:
            plan = " ".join(
                str(row[-1])
                for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
            )
            assert "search_token USING INDEX ix_token_resource" in plan, plan
            assert "ix_token_lookup" not in plan, plan
