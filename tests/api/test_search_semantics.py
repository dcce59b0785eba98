"""Search semantics per R4 (issue 14 item 18): open periods, ``ap``, ``:exact``, ``:missing``,
the self link, ``_elements`` and ``_summary``."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.api.test_fhir_crud import observation, patient

SUBSETTED = "SUBSETTED"


def _ids(client, path: str, params: Any) -> list[str]:  # type: ignore[no-untyped-def]
    r = client.get(path, params=params)
    assert r.status_code == 200, r.text
    return [
        e["resource"]["id"] for e in r.json().get("entry", []) if e["search"]["mode"] == "match"
    ]


def _post(client, resource: dict[str, Any]) -> str:  # type: ignore[no-untyped-def]
    r = client.post(f"/fhir/{resource['resourceType']}", json=resource)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _with_period(pid: str, period: dict[str, str], ident: str) -> dict[str, Any]:
    obs = observation(pid, ident=ident)
    obs.pop("effectiveDateTime")
    obs["effectivePeriod"] = period
    return obs


def test_a_period_without_end_is_open(client) -> None:  # type: ignore[no-untyped-def]
    pid = _post(client, patient())
    ongoing = _post(client, _with_period(pid, {"start": "2019-06-01T08:00:00+02:00"}, "o"))
    closed = _post(
        client,
        _with_period(
            pid, {"start": "2019-06-01T08:00:00+02:00", "end": "2019-06-01T09:00:00+02:00"}, "c"
        ),
    )
    for param, expected in (
        ("ge2020", {ongoing}),
        ("gt2020-03", {ongoing}),
        ("eb2020", {closed}),
        ("eq2019-06-01", {closed}),
        ("le2019-06-01", {ongoing, closed}),
        ("sa2019", set()),
        ("lt2019-06", set()),
    ):
        got = set(_ids(client, "/fhir/Observation", {"patient": pid, "date": param}))
        assert got == expected, param


def test_ap_on_periods_and_instants(client) -> None:  # type: ignore[no-untyped-def]
    pid = _post(client, patient())
    ongoing = _post(client, _with_period(pid, {"start": "2026-01-01T08:00:00+01:00"}, "o"))
    week = _post(
        client,
        _with_period(
            pid, {"start": "2026-02-01T08:00:00+01:00", "end": "2026-02-07T08:00:00+01:00"}, "w"
        ),
    )
    instant = _post(client, observation(pid, when="2026-03-15T08:00:00+01:00", ident="i"))
    # the margin is 10% of the distance from the value to now (at least a day)
    assert set(_ids(client, "/fhir/Observation", {"patient": pid, "date": "ap2026-02-03"})) == {
        ongoing,
        week,
    }
    assert set(_ids(client, "/fhir/Observation", {"patient": pid, "date": "ap2026-03-14"})) == {
        ongoing,
        instant,
    }
    assert _ids(client, "/fhir/Observation", {"patient": pid, "date": "ap2025-06-01"}) == []


def test_exact_is_case_and_accent_sensitive(client) -> None:  # type: ignore[no-untyped-def]
    aase = _post(client, patient("13031353453", family="Åse"))
    aase_lower = _post(client, patient("02028099471", family="åse"))
    ase = _post(client, patient("05073500186", family="Ase"))
    assert set(_ids(client, "/fhir/Patient", {"family": "ase"})) == {aase, aase_lower, ase}
    assert _ids(client, "/fhir/Patient", {"family:exact": "Åse"}) == [aase]
    assert _ids(client, "/fhir/Patient", {"family:exact": "åse"}) == [aase_lower]
    assert _ids(client, "/fhir/Patient", {"family:exact": "Ase"}) == [ase]
    assert _ids(client, "/fhir/Patient", {"family:exact": "Ås"}) == []


def test_missing(client) -> None:  # type: ignore[no-untyped-def]
    with_gp = patient("13031353453")
    practitioner = _post(client, {"resourceType": "Practitioner", "name": [{"family": "Lege"}]})
    with_gp["generalPractitioner"] = [{"reference": f"Practitioner/{practitioner}"}]
    a = _post(client, with_gp)
    no_gender = patient("02028099471")
    no_gender.pop("gender")
    b = _post(client, no_gender)
    assert _ids(client, "/fhir/Patient", {"general-practitioner:missing": "true"}) == [b]
    assert _ids(client, "/fhir/Patient", {"general-practitioner:missing": "false"}) == [a]
    assert _ids(client, "/fhir/Patient", {"gender:missing": "true"}) == [b]
    assert _ids(client, "/fhir/Patient", {"gender:missing": "false"}) == [a]
    with_date = _post(client, observation(a, ident="d"))
    no_date = observation(a, ident="n")
    no_date.pop("effectiveDateTime")
    without = _post(client, no_date)
    assert _ids(client, "/fhir/Observation", {"patient": a, "date:missing": "true"}) == [without]
    assert _ids(client, "/fhir/Observation", {"patient": a, "date:missing": "false"}) == [with_date]
    r = client.get("/fhir/Patient", params={"gender:missing": "maybe"})
    assert r.status_code == 400 and "gender:missing" in r.text


def test_self_link_lists_only_the_parameters_used(client) -> None:  # type: ignore[no-untyped-def]
    pid = _post(client, patient())
    r = client.get(
        "/fhir/Observation",
        params=[("patient", pid), ("name", ""), ("foo", "bar"), ("_count", "5")],
        headers={"Prefer": "handling=lenient"},
    )
    assert r.status_code == 200, r.text
    bundle = r.json()
    (self_link,) = [link["url"] for link in bundle["link"] if link["relation"] == "self"]
    assert parse_qsl(urlsplit(self_link).query) == [("patient", pid), ("_count", "5")]
    # the ignored parameter is reported, not silently dropped
    outcomes = [e for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
    assert outcomes and "foo" in str(outcomes[0]["resource"])


def test_elements_and_summary_are_applied_and_tagged(client) -> None:  # type: ignore[no-untyped-def]
    pid = _post(client, patient())
    obs = observation(pid)
    obs["note"] = [{"text": "etter trening"}]
    obs["text"] = {
        "status": "generated",
        "div": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>',
    }
    _post(client, obs)

    def only(params: dict[str, str]) -> dict[str, Any]:
        r = client.get("/fhir/Observation", params={"patient": pid, **params})
        assert r.status_code == 200, r.text
        (entry,) = [e for e in r.json()["entry"] if e["search"]["mode"] == "match"]
        return dict(entry["resource"])

    full = only({})
    assert "note" in full and SUBSETTED not in str(full["meta"])
    elements = only({"_elements": "valueQuantity,effectiveDateTime"})
    assert set(elements) == {
        "resourceType",
        "id",
        "meta",
        "status",
        "code",
        "valueQuantity",
        "effectiveDateTime",
    }
    assert elements["meta"]["tag"][-1]["code"] == SUBSETTED
    summary = only({"_summary": "true"})
    assert "note" not in summary and "text" not in summary
    assert summary["valueQuantity"] == full["valueQuantity"]
    assert summary["subject"] == full["subject"]
    assert summary["meta"]["tag"][-1]["code"] == SUBSETTED
    data = only({"_summary": "data"})
    assert "text" not in data and "note" in data and data["meta"]["tag"][-1]["code"] == SUBSETTED
    assert only({"_summary": "false"}) == full
