"""Which plan version judges a reading at the edges of plan periods.

A plan is in force from its start instant (inclusive) to its end (exclusive). A reading the
source gave to the second stands for that whole second: made in the second a plan was
approved, it is judged by that plan, never by the defaults or by the version it replaced.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from adapters.base import FNR_OID, LOINC, AdapterResult, Code, IngestMeta, Measurement, PatientRef
from interop.ingest.pipeline import IngestPipeline
from tests.address_book import patient_with_gp

FNR = "13031353453"
REF = PatientRef(FNR_OID, FNR)


def _plan(green_high: int) -> dict[str, Any]:
    return {
        "approvedBy": {"hpr": "9144889"},
        "zones": [
            {
                "code": "8867-4",
                "unit": "/min",
                "green": {"low": 40, "high": green_high},
                "yellow": {"low": 30, "high": 200},
            }
        ],
    }


def _patient(client) -> str:  # type: ignore[no-untyped-def]
    """The patient, with the GP who approves the plans (HPR 9144889) as fastlege."""
    return patient_with_gp(client, FNR)


def _put_plan(client, green_high: int) -> tuple[str, datetime]:  # type: ignore[no-untyped-def]
    assert client.put(f"/api/v1/patients/{FNR}/plan", json=_plan(green_high)).status_code in (
        200,
        201,
    )
    cp = client.get(f"/api/v1/patients/{FNR}/plan").json()["carePlan"]
    return cp["id"], datetime.fromisoformat(cp["period"]["start"])


def _judge(client, services, when: datetime | str, value: int = 100) -> str:  # type: ignore[no-untyped-def]
    """The ``interpretation.text`` triage gave a heart rate read at ``when``."""
    effective = when if isinstance(when, datetime) else datetime.fromisoformat(when)
    m = Measurement(Code(LOINC, "8867-4"), Decimal(value), "/min", effective, REF, "x")
    report = IngestPipeline(services).ingest_result(
        "test", AdapterResult(measurements=[m]), IngestMeta(source="t")
    )
    [ref] = report.resources
    obs = client.get(f"/fhir/{ref}").json()
    return str(obs["interpretation"][0]["text"])


def test_a_reading_at_the_start_instant_is_judged_by_the_plan(client, services) -> None:  # type: ignore[no-untyped-def]
    _patient(client)
    plan_id, start = _put_plan(client, 120)
    assert plan_id in _judge(client, services, start)


def test_a_reading_in_the_second_the_plan_was_approved_is_judged_by_it(client, services) -> None:  # type: ignore[no-untyped-def]
    _patient(client)
    plan_id, start = _put_plan(client, 120)
    same_second = start.replace(microsecond=0)
    assert same_second <= start
    verdict = _judge(client, services, same_second.isoformat(timespec="seconds"))
    assert plan_id in verdict and "default" not in verdict


def test_a_reading_one_microsecond_before_the_start_is_not(client, services) -> None:  # type: ignore[no-untyped-def]
    _patient(client)
    plan_id, start = _put_plan(client, 120)
    verdict = _judge(client, services, start - timedelta(microseconds=1))
    assert plan_id not in verdict


def test_the_end_of_a_superseded_version_belongs_to_the_new_one(client, services) -> None:  # type: ignore[no-untyped-def]
    _patient(client)
    first, first_start = _put_plan(client, 150)
    second, second_start = _put_plan(client, 110)
    old = client.get(f"/fhir/CarePlan/{first}").json()
    assert old["status"] == "completed"
    assert datetime.fromisoformat(old["period"]["end"]) == second_start
    # at the end instant of the old version: the new one (its start), which calls 130 yellow
    at_end = _judge(client, services, second_start, 130)
    assert second in at_end and at_end.startswith("yellow")
    # just before it: still the old version (green up to 150)
    before_end = _judge(client, services, second_start - timedelta(milliseconds=1), 130)
    assert first in before_end and before_end.startswith("green")
    assert first_start < second_start


def test_a_version_made_in_the_same_second_judges_that_second(client, services) -> None:  # type: ignore[no-untyped-def]
    _patient(client)
    first, first_start = _put_plan(client, 150)
    second, second_start = _put_plan(client, 110)
    third, third_start = _put_plan(client, 100)
    assert first_start < second_start < third_start
    # whatever seconds the versions fell in, a reading given to the second of the newest
    # version's start is judged by the newest version (not by the defaults or one it replaced)
    verdict = _judge(client, services, third_start.replace(microsecond=0).isoformat(), 105)
    assert third in verdict and verdict.startswith("yellow")
    # a reading at the exact start of the middle version, stated to the millisecond, is the
    # middle version's, even when the newest began in the same second
    exact = _judge(client, services, second_start, 130)
    assert second in exact
