"""Every route × every role, tried against a patient none of the roles is related to.

Each role below has a real relation to patient A (the GP is A's fastlege, the follow-up
centre and the EPJ belong to A's municipality, the hospital has an episode with A, the vendor
is linked to A) and none to patient B, the victim. Every route the application registers is
requested as each role (and with no credentials) in the way most likely to reach B's data.
Whatever the answer, it must not be a 5xx and must not carry anything of B (its fødselsnummer,
its FHIR ids, its measurement). A route added to the app without a case here fails the test
that lists the routes: no new door can escape the matrix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

FNR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.1"
HPR = "urn:oid:2.16.578.1.12.4.1.4.4"
ORGNR = "urn:oid:2.16.578.1.12.4.1.4.101"
FNR_A, FNR_B = "13031353453", "02028099471"
GP_A, GP_B = "9144889", "1234567"
MUNICIPALITY, OTHER_MUNICIPALITY, HOSPITAL, VENDOR = (
    "987789328",
    "974589095",
    "974760673",
    "841672119",
)
B_VALUE = 173.25
"""The victim's measurement: a value nobody else has."""
B_DIAGNOSIS = "victim-diagnosis-417"


def registered_routes(app: Any) -> set[tuple[str, str]]:
    """(method, path) of every route the application serves."""

    def walk(routes: list[Any], prefix: str) -> Iterator[tuple[str, str]]:
        for r in routes:
            if hasattr(r, "original_router"):
                yield from walk(r.original_router.routes, prefix + r.include_context.prefix)
            elif hasattr(r, "path"):
                for method in getattr(r, "methods", None) or ["GET"]:
                    if method != "HEAD":
                        yield method, prefix + r.path

    return set(walk(app.router.routes, ""))


@dataclass
class Victim:
    patient: str
    observation: str
    flag: str
    task: str
    condition: str
    """A generic type (official R4 parameters, compartment from the CompartmentDefinition)."""
    document: str
    """A Bundle about B: no Patient compartment, so for admins only."""
    concept: str
    """B's Observation with a valueCodeableConcept, performed by patient A (a compartment link
    to A: found in A's compartment, shown only to whom may read B's)."""
    group: str
    """A Group whose first member is B and whose second is A (B's own, and linked to A)."""

    def markers(self) -> list[str]:
        return [
            FNR_B,
            self.patient,
            self.observation,
            self.flag,
            self.task,
            str(B_VALUE),
            self.condition,
            self.document,
            B_DIAGNOSIS,
            self.concept,
            self.group,
        ]


def _post(client, path: str, body: dict[str, Any]) -> str:  # type: ignore[no-untyped-def]
    r = client.post(path, json=body)
    assert r.status_code in (200, 201), r.text
    return str(r.json()["id"])


def _obs(pid: str, value: float) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": "2026-03-01T08:00:00+01:00",
        "valueQuantity": {
            "value": value,
            "unit": "/min",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
    }


def _world(client) -> tuple[Victim, str, dict[str, dict[str, str]]]:  # type: ignore[no-untyped-def]
    orgs = {
        n: _post(
            client,
            "/fhir/Organization",
            {"resourceType": "Organization", "identifier": [{"system": ORGNR, "value": n}]},
        )
        for n in (MUNICIPALITY, OTHER_MUNICIPALITY, HOSPITAL)
    }
    gps = {
        hpr: _post(
            client,
            "/fhir/Practitioner",
            {"resourceType": "Practitioner", "identifier": [{"system": HPR, "value": hpr}]},
        )
        for hpr in (GP_A, GP_B)
    }

    def patient(fnr: str, gp: str, org: str) -> str:
        return _post(
            client,
            "/fhir/Patient",
            {
                "resourceType": "Patient",
                "identifier": [{"system": FNR_SYSTEM, "value": fnr}],
                "generalPractitioner": [{"reference": f"Practitioner/{gps[gp]}"}],
                "managingOrganization": {"reference": f"Organization/{orgs[org]}"},
            },
        )

    a = patient(FNR_A, GP_A, MUNICIPALITY)
    b = patient(FNR_B, GP_B, OTHER_MUNICIPALITY)
    _post(
        client,
        "/fhir/EpisodeOfCare",
        {
            "resourceType": "EpisodeOfCare",
            "status": "active",
            "patient": {"reference": f"Patient/{a}"},
            "managingOrganization": {"reference": f"Organization/{orgs[HOSPITAL]}"},
        },
    )
    _post(client, "/fhir/Observation", _obs(a, 70))
    ob = _post(client, "/fhir/Observation", _obs(b, B_VALUE))
    flag = _post(
        client,
        "/fhir/Flag",
        {
            "resourceType": "Flag",
            "status": "active",
            "code": {"text": "rød"},
            "subject": {"reference": f"Patient/{b}"},
        },
    )
    task = _post(
        client,
        "/fhir/Task",
        {
            "resourceType": "Task",
            "status": "requested",
            "intent": "order",
            "priority": "asap",
            "for": {"reference": f"Patient/{b}"},
            "authoredOn": "2026-03-01T08:05:00+01:00",
        },
    )
    condition = _post(
        client,
        "/fhir/Condition",
        {
            "resourceType": "Condition",
            # a tag only the victim's data carries: a $meta that leaks it names it
            "meta": {"tag": [{"system": "urn:x", "code": B_DIAGNOSIS}]},
            "code": {"coding": [{"system": "urn:x", "code": B_DIAGNOSIS}]},
            "subject": {"reference": f"Patient/{b}"},
            # asserted by patient A: in A's compartment too, still B's own
            "asserter": {"reference": f"Patient/{a}"},
        },
    )
    concept = _post(
        client,
        "/fhir/Observation",
        {
            **{k: v for k, v in _obs(b, 1).items() if k != "valueQuantity"},
            "code": {"coding": [{"system": "http://loinc.org", "code": "8310-5"}]},
            "valueCodeableConcept": {"coding": [{"system": "urn:x", "code": B_DIAGNOSIS}]},
            "performer": [{"reference": f"Patient/{a}"}],
        },
    )
    group = _post(
        client,
        "/fhir/Group",
        {
            "resourceType": "Group",
            "type": "person",
            "actual": True,
            "member": [{"entity": {"reference": f"Patient/{p}"}} for p in (b, a)],
        },
    )
    document = _post(
        client,
        "/fhir/Bundle",
        {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": {"resourceType": "Basic", "code": {"text": B_DIAGNOSIS}}}],
        },
    )
    assert (
        client.post(
            "/api/v1/patient-links", json={"source": VENDOR, "userId": "u-a", "nationalId": FNR_A}
        ).status_code
        == 201
    )

    def key(body: dict[str, Any]) -> dict[str, str]:
        r = client.post("/api/v1/actors", json=body)
        assert r.status_code == 201, r.text
        return {"Authorization": f"Bearer {r.json()['key']}"}

    roles = {
        "anonymous": {"Authorization": ""},
        "gp": key({"role": "gp", "hpr": GP_A}),
        "followup": key({"role": "followup", "organization": {"orgnr": MUNICIPALITY}}),
        "epj": key({"role": "epj", "organization": {"orgnr": MUNICIPALITY}}),
        "hospital": key({"role": "hospital", "organization": {"orgnr": HOSPITAL}}),
        "vendor": key({"role": "vendor", "organization": {"orgnr": VENDOR}}),
    }
    return Victim(b, ob, flag, task, condition, document, concept, group), a, roles


Request = Callable[[Any, dict[str, str], Victim, str], Any]
"""(client, headers, victim, patient A's id) → response."""


def _get(path: str) -> Request:
    return lambda c, h, v, a: c.get(path.format(v=v, a=a, fnr=FNR_B), headers=h)


def _async_get(path: str) -> Request:
    return lambda c, h, v, a: c.get(
        path.format(v=v, a=a, fnr=FNR_B), headers={**h, "Prefer": "respond-async"}
    )


def _json(method: str, path: str, body: Callable[[Victim, str], Any]) -> Request:
    return lambda c, h, v, a: c.request(
        method,
        path.format(v=v, a=a, fnr=FNR_B),
        json=body(v, a),
        headers={**h, "Content-Type": "application/fhir+json"},
    )


def _bundle(method: str, url: str, resource: Callable[[Victim, str], Any] | None) -> Request:
    def body(v: Victim, a: str) -> dict[str, Any]:
        entry: dict[str, Any] = {"request": {"method": method, "url": url.format(v=v, a=a)}}
        if resource is not None:
            entry["resource"] = resource(v, a)
        return {"resourceType": "Bundle", "type": "batch", "entry": [entry]}

    return _json("POST", "/fhir", body)


def _moved(v: Victim, a: str) -> dict[str, Any]:
    return {**_obs(a, 1), "id": v.observation, "status": "corrected"}


_META_BODY = {
    "resourceType": "Parameters",
    "parameter": [{"name": "meta", "valueMeta": {"tag": [{"system": "urn:x", "code": "seen"}]}}],
}
_VICTIM_META = {
    "resourceType": "Parameters",
    "parameter": [
        {"name": "meta", "valueMeta": {"tag": [{"system": "urn:x", "code": B_DIAGNOSIS}]}}
    ],
}

_WITHDRAW = [{"op": "replace", "path": "/status", "value": "entered-in-error"}]

ORU_FOR_B = (
    "MSH|^~\\&|GW|GW|DHO|DHO|20260301080000+0100||ORU^R01^ORU_R01|m-1|P|2.6\r"
    f"PID|||{FNR_B}^^^NO-FNR^NNFNR||Offer^Ola\r"
    "OBR|1|||8867-4^Heart rate^LN\r"
    "OBX|1|NM|8867-4^Heart rate^LN||77|/min|||||F|||20260301080000+0100\r"
)

CASES: dict[tuple[str, str], list[Request]] = {
    ("GET", "/openapi.json"): [_get("/openapi.json")],
    ("GET", "/"): [_get("/")],
    ("GET", "/static-offline-docs"): [_get("/static-offline-docs/swagger-ui-bundle.js")],
    ("GET", "/docs"): [_get("/docs")],
    ("GET", "/docs/oauth2-redirect"): [_get("/docs/oauth2-redirect")],
    ("GET", "/redoc"): [_get("/redoc")],
    ("GET", "/healthz"): [_get("/healthz")],
    ("GET", "/readyz"): [_get("/readyz")],
    ("GET", "/metrics"): [_get("/metrics")],
    ("GET", "/fhir/metadata"): [_get("/fhir/metadata")],
    ("GET", "/.well-known/smart-configuration"): [_get("/.well-known/smart-configuration")],
    ("GET", "/fhir/.well-known/smart-configuration"): [
        _get("/fhir/.well-known/smart-configuration")
    ],
    ("GET", "/fhir/{rtype}/{rid}"): [
        _get("/fhir/Patient/{v.patient}"),
        _get("/fhir/Observation/{v.observation}"),
        _get("/fhir/Flag/{v.flag}"),
        _get("/fhir/Condition/{v.condition}"),
        _get("/fhir/Bundle/{v.document}"),
    ],
    ("GET", "/fhir/{rtype}"): [
        _get("/fhir/Patient?identifier=" + FNR_SYSTEM + "|{fnr}"),
        _get("/fhir/Observation?patient={v.patient}"),
        _get("/fhir/Observation?subject:Patient.identifier=" + FNR_SYSTEM + "|{fnr}"),
        _get("/fhir/Observation?_summary=count&patient={v.patient}"),
        _get("/fhir/Observation?_id={v.observation}"),
        _get("/fhir/Flag?patient={v.patient}"),
        _get("/fhir/Patient?_has:Observation:patient:_id={v.observation}"),
        _get("/fhir/Observation?patient={a}&_include=Observation:subject"),
        _get("/fhir/AuditEvent"),
        _get("/fhir/Condition?patient={v.patient}"),
        _get("/fhir/Condition?subject:Patient.identifier=" + FNR_SYSTEM + "|{fnr}"),
        _get("/fhir/Condition?patient.identifier={fnr}&_include=Condition:patient"),
        _get("/fhir/Patient?_has:Condition:patient:code=" + B_DIAGNOSIS),
        _get("/fhir/Practitioner?_revinclude=Patient:general-practitioner"),
        _get("/fhir/Patient?_id={a}&_revinclude=Condition:asserter&_revinclude=Flag:patient"),
        _get("/fhir/Observation?value-quantity=" + str(B_VALUE)),
        _get("/fhir/Observation?_sort=-date&code-value-quantity=8867-4$gt170"),
        _get("/fhir/Condition?asserter:missing=false&_sort=code"),
        _get("/fhir/Condition?subject=Patient/{v.patient}"),
        _get("/fhir/Condition?asserter=Patient/{v.patient}"),
        _get("/fhir/Condition?code=" + B_DIAGNOSIS),
        _get("/fhir/Observation?value-concept=urn:x|"),
        _get("/fhir/Observation?code-value-concept=8310-5$urn:x|"),
        _get("/fhir/Observation?combo-value-concept:missing=false"),
        _get("/fhir/Observation?combo-code=8310-5,8867-4"),
        _get("/fhir/Observation?performer=Patient/{a}"),
        _get("/fhir/Group"),
        _get("/fhir/Group?member=Patient/{a}&_revinclude=Observation:subject"),
        _get("/fhir/Condition"),
        _get("/fhir/Bundle"),
        _get("/fhir/Basic"),
        _get("/fhir/Provenance"),
    ],
    ("POST", "/fhir/{rtype}/_search"): [
        lambda c, h, v, a: c.post(
            "/fhir/Observation/_search",
            content=f"patient={v.patient}",
            headers={**h, "Content-Type": "application/x-www-form-urlencoded"},
        )
    ],
    ("POST", "/fhir/{rtype}"): [
        _json("POST", "/fhir/Observation", lambda v, a: _obs(v.patient, 1)),
        lambda c, h, v, a: c.post(
            "/fhir/Observation",
            json=_obs(a, 1),
            headers={
                **h,
                "Content-Type": "application/fhir+json",
                "If-None-Exist": f"_id={v.observation}",
            },
        ),
    ],
    ("PUT", "/fhir/{rtype}/{rid}"): [
        _json("PUT", "/fhir/Observation/{v.observation}", _moved),
    ],
    ("PATCH", "/fhir/{rtype}/{rid}"): [
        lambda c, h, v, a: c.patch(
            f"/fhir/Observation/{v.observation}",
            json=_WITHDRAW,
            headers={**h, "Content-Type": "application/json-patch+json"},
        ),
    ],
    ("PATCH", "/fhir/{rtype}"): [
        lambda c, h, v, a: c.patch(
            f"/fhir/Observation?_id={v.observation}",
            json=_WITHDRAW,
            headers={**h, "Content-Type": "application/json-patch+json"},
        ),
    ],
    ("PUT", "/fhir/{rtype}"): [
        _json("PUT", "/fhir/Observation?_id={v.observation}", _moved),
        _json("PUT", "/fhir/Observation?patient={v.patient}", lambda v, a: _obs(a, 1)),
    ],
    ("DELETE", "/fhir/{rtype}"): [
        lambda c, h, v, a: c.delete(f"/fhir/Flag?_id={v.flag}", headers=h),
        lambda c, h, v, a: c.delete(f"/fhir/Flag?patient={v.patient}", headers=h),
    ],
    ("DELETE", "/fhir/{rtype}/{rid}"): [
        lambda c, h, v, a: c.delete(f"/fhir/Flag/{v.flag}", headers=h),
    ],
    ("GET", "/fhir/{rtype}/{rid}/_history"): [
        _get("/fhir/Observation/{v.observation}/_history"),
        _get("/fhir/Condition/{v.condition}/_history"),
    ],
    ("GET", "/fhir/Patient/{pid}/$everything"): [
        _get("/fhir/Patient/{v.patient}/$everything"),
        _get("/fhir/Patient/{a}/$everything?_type=Condition,Observation"),
    ],
    ("POST", "/fhir/Patient/{pid}/$everything"): [
        lambda c, h, v, a: c.post(f"/fhir/Patient/{v.patient}/$everything", headers=h)
    ],
    ("POST", "/fhir/{rtype}/$validate"): [
        _json("POST", "/fhir/Observation/$validate", lambda v, a: _obs(v.patient, 1))
    ],
    ("POST", "/fhir/{rtype}/{rid}/$validate"): [
        _json("POST", "/fhir/Observation/{v.observation}/$validate", _moved)
    ],
    ("GET", "/fhir/{rtype}/{rid}/$meta"): [_get("/fhir/Condition/{v.condition}/$meta")],
    ("GET", "/fhir/{rtype}/$meta"): [
        _get("/fhir/Condition/$meta"),
        _get("/fhir/Patient/$meta"),
        _get("/fhir/Bundle/$meta"),
    ],
    ("POST", "/fhir/{rtype}/$meta"): [
        lambda c, h, v, a: c.post("/fhir/Condition/$meta", headers=h)
    ],
    ("GET", "/fhir/$meta"): [_get("/fhir/$meta")],
    ("POST", "/fhir/{rtype}/{rid}/$meta-add"): [
        _json("POST", "/fhir/Condition/{v.condition}/$meta-add", lambda v, a: _META_BODY),
        _json("POST", "/fhir/Patient/{v.patient}/$meta-add", lambda v, a: _META_BODY),
    ],
    ("POST", "/fhir/{rtype}/{rid}/$meta-delete"): [
        _json("POST", "/fhir/Condition/{v.condition}/$meta-delete", lambda v, a: _VICTIM_META),
        _json("POST", "/fhir/Observation/{v.observation}/$meta-delete", lambda v, a: _META_BODY),
    ],
    ("POST", "/fhir/$meta"): [lambda c, h, v, a: c.post("/fhir/$meta", headers=h)],
    ("POST", "/fhir/{rtype}/{rid}/$meta"): [
        lambda c, h, v, a: c.post(f"/fhir/Observation/{v.observation}/$meta", headers=h)
    ],
    ("GET", "/fhir/_history"): [_get("/fhir/_history")],
    # $export: kicked off as each role; what the job writes is checked in test_bulk_export
    ("GET", "/fhir/$export"): [_async_get("/fhir/$export?_type=Observation")],
    ("GET", "/fhir/Patient/$export"): [_async_get("/fhir/Patient/$export?_type=Observation")],
    ("GET", "/fhir/Group/{gid}/$export"): [_async_get("/fhir/Group/{v.patient}/$export")],
    ("GET", "/fhir/$export-status/{job}"): [_get("/fhir/$export-status/{v.patient}")],
    ("DELETE", "/fhir/$export-status/{job}"): [
        lambda c, h, v, a: c.delete(f"/fhir/$export-status/{v.patient}", headers=h)
    ],
    ("GET", "/fhir/$export-file/{job}/{name}"): [
        _get("/fhir/$export-file/{v.patient}/Observation.ndjson")
    ],
    ("GET", "/fhir/Patient/{pid}/{rtype}"): [
        _get("/fhir/Patient/{v.patient}/Observation"),
        _get("/fhir/Patient/{v.patient}/Condition"),
        _get("/fhir/Patient/{v.patient}/Patient"),
        _get("/fhir/Patient/{v.patient}/*"),
        _get("/fhir/Patient/{v.patient}/*?_count=1&_summary=true"),
        _get("/fhir/Patient/{a}/*?_id={v.condition},{v.observation},{v.patient}"),
        _get("/fhir/Patient/{v.patient}/*?_summary=count"),
        # A's compartment holds B's resources that name A (asserter, performer, member)
        _get("/fhir/Patient/{a}/Condition"),
        _get("/fhir/Patient/{a}/Observation?value-concept:missing=false"),
        _get("/fhir/Patient/{a}/Group"),
        _get("/fhir/Patient/{a}/*"),
        _get("/fhir/Patient/{a}/*?_count=1"),
    ],
    ("GET", "/fhir"): [
        _get("/fhir?_type=Observation,Condition,Flag,Patient"),
        _get("/fhir?_type=Bundle,Basic"),
        _get("/fhir?_type=Condition,Observation&_elements=code,subject,meta"),
        _get("/fhir?_type=Condition,Patient&_summary=true&_id={v.condition},{v.patient}"),
        _get("/fhir?_type=Condition,Observation,Flag&_summary=count&patient={v.patient}"),
    ],
    ("GET", "/fhir/"): [_get("/fhir/?_type=Condition&_id={v.condition}")],
    ("GET", "/fhir/{rtype}/_history"): [
        _get("/fhir/Condition/_history"),
        _get("/fhir/Observation/_history"),
    ],
    ("GET", "/fhir/{rtype}/{rid}/_history/{vid}"): [
        _get("/fhir/Observation/{v.observation}/_history/1")
    ],
    ("POST", "/fhir"): [
        _bundle("GET", "Observation/{v.observation}", None),
        _bundle("GET", "Observation?patient={v.patient}", None),
        _bundle("PUT", "Observation/{v.observation}", _moved),
        _bundle("DELETE", "Flag/{v.flag}", None),
    ],
    ("POST", "/fhir/"): [_bundle("GET", "Patient/{v.patient}", None)],
    ("GET", "/fhir/Observation/$lastn"): [_get("/fhir/Observation/$lastn?patient={v.patient}")],
    ("POST", "/fhir/Observation/$lastn"): [
        lambda c, h, v, a: c.post(
            "/fhir/Observation/$lastn",
            json={
                "resourceType": "Parameters",
                "parameter": [{"name": "patient", "valueString": v.patient}],
            },
            headers=h,
        )
    ],
    ("GET", "/fhir/Observation/$stats"): [
        _get("/fhir/Observation/$stats?patient={v.patient}&code=8867-4&statistic=maximum")
    ],
    ("POST", "/fhir/Observation/$stats"): [
        lambda c, h, v, a: c.post(
            "/fhir/Observation/$stats",
            json={
                "resourceType": "Parameters",
                "parameter": [
                    {"name": "patient", "valueString": v.patient},
                    {"name": "code", "valueString": "8867-4"},
                    {"name": "statistic", "valueString": "maximum"},
                ],
            },
            headers=h,
        )
    ],
    ("GET", "/fhir/Patient/{patient_id}/$summary"): [_get("/fhir/Patient/{v.patient}/$summary")],
    ("GET", "/api/v1/patients/{national_id}/summary"): [
        _get("/api/v1/patients/{fnr}/summary"),
        _get("/api/v1/patients/{fnr}/summary?view=followup"),
    ],
    ("GET", "/api/v1/patients/{national_id}/plan"): [_get("/api/v1/patients/{fnr}/plan")],
    ("PUT", "/api/v1/patients/{national_id}/plan"): [
        _json(
            "PUT",
            "/api/v1/patients/{fnr}/plan",
            lambda v, a: {
                "approvedBy": {"hpr": GP_B},
                "zones": [{"code": "8867-4", "unit": "/min", "green": {"low": 1, "high": 300}}],
            },
        )
    ],
    ("GET", "/api/v1/patients/{national_id}/plan/proposal"): [
        _get("/api/v1/patients/{fnr}/plan/proposal")
    ],
    ("GET", "/api/v1/patients/{national_id}/plan/versions"): [
        _get("/api/v1/patients/{fnr}/plan/versions")
    ],
    ("POST", "/api/v1/patients/{national_id}/plan/drafts"): [
        _json(
            "POST",
            "/api/v1/patients/{fnr}/plan/drafts",
            lambda v, a: {
                "zones": [{"code": "8867-4", "unit": "/min", "green": {"low": 1, "high": 300}}],
                "goals": ["x"],
            },
        )
    ],
    ("PUT", "/api/v1/patients/{national_id}/plan/drafts/{plan_id}"): [
        _json(
            "PUT",
            "/api/v1/patients/{fnr}/plan/drafts/x",
            lambda v, a: {
                "zones": [{"code": "8867-4", "unit": "/min", "green": {"low": 1, "high": 300}}]
            },
        )
    ],
    ("POST", "/api/v1/patients/{national_id}/plan/drafts/{plan_id}/propose"): [
        _json("POST", "/api/v1/patients/{fnr}/plan/drafts/x/propose", lambda v, a: {})
    ],
    ("POST", "/api/v1/patients/{national_id}/plan/{plan_id}/approve"): [
        _json("POST", "/api/v1/patients/{fnr}/plan/x/approve", lambda v, a: {})
    ],
    ("GET", "/api/v1/patients/{national_id}/plan/{plan_id}/approval"): [
        lambda c, h, v, a: c.get(
            "/api/v1/patients/" + FNR_B + "/plan/x/approval", headers={**h, "Accept": "text/html"}
        ),
        lambda c, h, v, a: c.get(
            "/api/v1/patients/" + FNR_B + "/plan/x/approval?access_token=" + _token(h),
            headers={"Authorization": "", "Accept": "text/html"},  # a link: no header
        ),
    ],
    ("POST", "/api/v1/patients/{national_id}/plan/{plan_id}/approval"): [
        lambda c, h, v, a: c.post(
            "/api/v1/patients/" + FNR_B + "/plan/x/approval",
            content="decision=approve&form_token=1.1.x",
            headers={**h, "Content-Type": "application/x-www-form-urlencoded"},
        ),
        lambda c, h, v, a: c.post(
            "/api/v1/patients/" + FNR_B + "/plan/x/approval",
            content="decision=changes&text=x&form_token=1.1.x&access_token=" + _token(h),
            headers={"Authorization": "", "Content-Type": "application/x-www-form-urlencoded"},
        ),
    ],
    ("GET", "/api/v1/patients/{national_id}/plan/nhn-status"): [
        _get("/api/v1/patients/{fnr}/plan/nhn-status")
    ],
    ("POST", "/api/v1/patients/{national_id}/plan/import-nhn"): [
        _json("POST", "/api/v1/patients/{fnr}/plan/import-nhn", lambda v, a: {})
    ],
    ("POST", "/api/v1/patients/{national_id}/plan/{plan_id}/revoke"): [
        _json("POST", "/api/v1/patients/{fnr}/plan/x/revoke", lambda v, a: {"reason": "x"})
    ],
    # nødrett opens an unrelated patient's record by design (tests/access/test_emergency_access.py);
    # here, without the reason it needs, it must open nothing
    ("POST", "/api/v1/patients/{national_id}/emergency-access"): [
        _json("POST", "/api/v1/patients/{fnr}/emergency-access", lambda v, a: {"reason": "x"})
    ],
    ("GET", "/api/v1/emergency-access"): [_get("/api/v1/emergency-access")],
    ("GET", "/api/v1/audit/patients/{national_id}/accesses"): [
        _get("/api/v1/audit/patients/{fnr}/accesses")
    ],
    ("POST", "/ingest/{adapter}"): [
        lambda c, h, v, a: c.post(
            "/ingest/hl7v2",
            content=ORU_FOR_B.encode(),
            headers={**h, "Content-Type": "application/hl7-v2"},
        ),
        lambda c, h, v, a: c.post(
            f"/ingest/fhir?patient={FNR_B}",
            json=_obs(v.patient, 1),
            headers={**h, "Content-Type": "application/fhir+json"},
        ),
    ],
    ("POST", "/api/v1/patient-links"): [
        lambda c, h, v, a: c.post(
            "/api/v1/patient-links",
            json={"source": VENDOR, "userId": "u-b", "nationalId": FNR_B},
            headers=h,
        )
    ],
    ("GET", "/api/v1/patient-links"): [_get("/api/v1/patient-links")],
    ("GET", "/api/v1/quarantine"): [_get("/api/v1/quarantine")],
    ("POST", "/api/v1/quarantine/release"): [
        lambda c, h, v, a: c.post("/api/v1/quarantine/release", headers=h)
    ],
    ("GET", "/api/v1/ingest/messages"): [
        _get("/api/v1/ingest/messages"),
        _get("/api/v1/ingest/messages?outcome=rejected"),
    ],
    ("GET", "/api/v1/ingest/messages/{message_id}"): [_get("/api/v1/ingest/messages/x")],
    ("GET", "/api/v1/messages"): [_get("/api/v1/messages?patient={fnr}")],
    ("GET", "/api/v1/messages/{row_id}"): [_get("/api/v1/messages/1")],
    ("GET", "/api/v1/messages/{row_id}/content"): [_get("/api/v1/messages/1/content")],
    ("POST", "/api/v1/messages/{row_id}/reprocess"): [
        lambda c, h, v, a: c.post("/api/v1/messages/1/reprocess", headers=h)
    ],
    ("POST", "/api/v1/messages/{row_id}/cancel"): [
        lambda c, h, v, a: c.post("/api/v1/messages/1/cancel", headers=h)
    ],
    ("POST", "/api/v1/messages/inbound"): [
        lambda c, h, v, a: c.post("/api/v1/messages/inbound", content=b"<MsgHead/>", headers=h)
    ],
    ("POST", "/api/v1/actors"): [
        lambda c, h, v, a: c.post("/api/v1/actors", json={"role": "admin"}, headers=h)
    ],
    ("GET", "/api/v1/actors"): [_get("/api/v1/actors")],
    ("DELETE", "/api/v1/actors/{actor_id}"): [
        lambda c, h, v, a: c.delete("/api/v1/actors/x", headers=h)
    ],
    ("GET", "/api/v1/indicators"): [
        _get(f"/api/v1/indicators?organization={OTHER_MUNICIPALITY}&from=2026-01-01&to=2026-12-31")
    ],
    ("GET", "/api/v1/worklist"): [
        _get(f"/api/v1/worklist?organization={OTHER_MUNICIPALITY}"),
        lambda c, h, v, a: c.get(
            f"/api/v1/worklist?organization={OTHER_MUNICIPALITY}",
            headers={**h, "Accept": "text/html"},
        ),
        _get(f"/api/v1/worklist?organization={MUNICIPALITY}"),
    ],
    ("POST", "/api/v1/worklist/tasks/{task_id}/actions"): [
        lambda c, h, v, a: c.post(
            f"/api/v1/worklist/tasks/{v.task}/actions",
            json={"action": "complete", "outcome": "ingen-tiltak"},
            headers=h,
        ),
        lambda c, h, v, a: c.post(
            f"/api/v1/worklist/tasks/{v.task}/actions",
            json={"action": "take"},
            headers=h,
        ),
    ],
}


def _token(headers: dict[str, str]) -> str:
    """The bearer token of a role's headers (for a link or a form that carries it)."""
    return headers.get("Authorization", "").partition(" ")[2]


ROLES = ["anonymous", "gp", "followup", "epj", "hospital", "vendor"]


def test_every_route_is_in_the_matrix(client) -> None:  # type: ignore[no-untyped-def]
    routes = registered_routes(client.app)
    missing = sorted(routes - set(CASES))
    assert not missing, f"routes with no access-matrix case (add them to CASES): {missing}"
    stale = sorted(set(CASES) - routes)
    assert not stale, f"cases for routes the app no longer has: {stale}"


@pytest.mark.parametrize("role", ROLES)
def test_no_role_reaches_an_unrelated_patient(client, role: str) -> None:  # type: ignore[no-untyped-def]
    victim, a, roles = _world(client)
    headers = roles[role]
    before = client.get(f"/fhir/Observation/{victim.observation}").json()
    leaks: list[str] = []
    for (method, path), requests in sorted(CASES.items()):
        for n, request in enumerate(requests):
            r = request(client, headers, victim, a)
            where = f"{method} {path} #{n}: {r.status_code}"
            if r.status_code >= 500:
                leaks.append(f"{where} server error {r.text[:200]}")
                continue
            asked = str(r.request.url) + r.request.content.decode("utf-8", "replace")
            # what the request itself named may be echoed (a self link, an error); anything
            # else of the victim's is a leak
            found = [m for m in victim.markers() if m in r.text and m not in asked]
            if found:
                leaks.append(f"{where} shows {found}: {r.text[:300]}")
    after = client.get(f"/fhir/Observation/{victim.observation}").json()
    assert after == before, "the victim's Observation was changed"
    flag = client.get(f"/fhir/Flag/{victim.flag}")
    assert flag.status_code == 200, "the victim's Flag was deleted"
    task = client.get(f"/fhir/Task/{victim.task}").json()
    assert task["status"] == "requested" and "owner" not in task, "the victim's Task was changed"
    condition = client.get(f"/fhir/Condition/{victim.condition}").json()
    assert condition["meta"]["versionId"] == "1", "the victim's Condition was changed"
    assert not leaks, "\n".join(leaks)
