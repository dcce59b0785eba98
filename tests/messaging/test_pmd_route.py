"""New Observations → subscribed FHIR endpoints: as stored (``observation``) and as an NHN
Pasientens måledata upload (``pmd``): a pmd-Bundle-Observation of VkpObservation copies, checked
against the IG's own StructureDefinitions (``shared/standards/fhir/no-vkp-observation``)."""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.observation import Observation
from sqlalchemy import event

from adapters.base import (
    FNR_OID,
    LOINC,
    MDC,
    UCUM,
    AdapterResult,
    Code,
    Component,
    DeviceRef,
    IngestMeta,
    Measurement,
    PatientRef,
)
from interop.identifiers import ORGNR_OID, generate_fnr
from interop.ingest.pipeline import IngestPipeline
from interop.messaging.addressbook import TRANSPORT_SYSTEM
from interop.messaging.pmd import vkp_observation, vkp_profile
from interop.routing.outbox import OutboxMessage
from interop.routing.rules import SUBSCRIPTION_SYSTEM
from interop.routing.transports import FhirRestTransport
from tests.conftest import STANDARDS
from tests.messaging.test_gp_flow import FNR, _outbox, _post, address_book

IG = STANDARDS / "fhir" / "no-vkp-observation"
EUI64 = "urn:oid:1.2.840.10004.1.1.1.0.0.1.0.0.1.2680"
FNR2 = generate_fnr(date(1948, 3, 9), rng=random.Random(11))

# ---- the IG, read from its own files --------------------------------------------------------


@cache
def _sd(name: str) -> dict[str, Any]:
    return dict(json.loads((IG / f"StructureDefinition-{name}.json").read_text("utf-8")))


@cache
def _value_sets() -> dict[str, set[tuple[str | None, str]]]:
    """Local ValueSets expanded: url → {(system, code)}."""
    systems: dict[str, set[str]] = {}
    for f in IG.glob("CodeSystem-*.json"):
        cs = json.loads(f.read_text("utf-8"))
        systems[cs["url"]] = {c["code"] for c in cs.get("concept", [])}
    out: dict[str, set[tuple[str | None, str]]] = {}
    for f in IG.glob("ValueSet-*.json"):
        vs = json.loads(f.read_text("utf-8"))
        codes: set[tuple[str | None, str]] = set()
        for inc in vs.get("compose", {}).get("include", []):
            if inc.get("concept"):
                codes |= {(inc.get("system"), c["code"]) for c in inc["concept"]}
            else:
                codes |= {(inc.get("system"), c) for c in systems.get(inc.get("system"), set())}
        out[vs["url"]] = codes
    return out


def _vital_sign_profiles() -> dict[str, str]:
    """LOINC code → VKP profile URL, from each profile's fixed LOINC coding slice."""
    out = {}
    for f in IG.glob("StructureDefinition-vkp-Observation-*.json"):
        sd = json.loads(f.read_text("utf-8"))
        els = {e["id"]: e for e in sd["snapshot"]["element"]}
        for eid, e in els.items():
            if eid.startswith("Observation.code.coding:") and eid.endswith(".code"):
                system = els.get(eid[: -len(".code")] + ".system", {})
                if system.get("fixedUri") == LOINC and "fixedCode" in e:
                    out[e["fixedCode"]] = sd["url"]
    return out


def _kids(node: Any, name: str) -> list[Any]:
    if not isinstance(node, dict):
        return []
    if name.endswith("[x]"):
        base = name[:-3]
        vals = [v for k, v in node.items() if k.startswith(base) and k[len(base) :][:1].isupper()]
    else:
        vals = [node[name]] if name in node else []
    flat: list[Any] = []
    for v in vals:
        flat.extend(v if isinstance(v, list) else [v])
    return flat


def _at(node: Any, path: str) -> list[Any]:
    nodes = [node]
    for part in path.split("."):
        if part == "$this":
            continue
        nodes = [k for n in nodes for k in _kids(n, part)]
    return nodes


def _matches(value: Any, pattern: Any) -> bool:
    """``value`` carries ``pattern`` (primitives equal; objects: every pattern key, lists: every
    pattern item somewhere)."""
    if isinstance(pattern, dict):
        if not isinstance(value, dict):
            return False
        for k, p in pattern.items():
            v = value.get(k)
            if isinstance(p, list):
                if not isinstance(v, list) or not all(any(_matches(x, q) for x in v) for q in p):
                    return False
            elif not _matches(v, p):
                return False
        return True
    return bool(value == pattern)


def _fixed(e: dict[str, Any]) -> tuple[str, Any] | None:
    for k, v in e.items():
        if k.startswith("fixed"):
            return "fixed", v
        if k.startswith("pattern"):
            return "pattern", v
    return None


def _in_value_set(value: Any, vs_url: str) -> bool | None:
    """Membership in one of the IG's own ValueSets (None: a ValueSet not known here)."""
    codes = _value_sets().get(vs_url.split("|")[0])
    if codes is None:
        return None
    if isinstance(value, str):
        return value in {c for _, c in codes}
    codings = value.get("coding", [value]) if isinstance(value, dict) else []
    return any((c.get("system"), c.get("code")) in codes for c in codings)


def _desliced(eid: str) -> str:
    return ".".join(p.split(":")[0] for p in eid.split("."))


class Checker:
    """Cardinality, fixed/pattern values and required bindings (to the IG's own ValueSets) of a
    StructureDefinition snapshot, slices told apart by their value/pattern discriminators (the
    first fixed value at the discriminator path, else a required binding) and choice slices by
    name (``valueQuantity``). No FHIRPath: the invariants are asserted separately."""

    def __init__(self, sd: dict[str, Any]) -> None:
        self.elements = {e["id"]: e for e in sd["snapshot"]["element"]}

    def _discriminating(self, slice_id: str, path: str) -> dict[str, Any] | None:
        direct = self.elements.get(f"{slice_id}.{path}")
        if direct is not None and (_fixed(direct) or direct.get("binding")):
            return direct
        for eid, e in self.elements.items():
            inside = eid.startswith(slice_id + ".")
            if inside and _desliced(eid[len(slice_id) + 1 :]) == path and _fixed(e):
                return e
        return direct

    def _in_slice(self, node: Any, base_id: str, slice_id: str) -> bool:
        for d in self.elements[base_id].get("slicing", {}).get("discriminator", []):
            if d["type"] not in ("value", "pattern"):
                continue
            e = self._discriminating(slice_id, d["path"])
            if e is None:
                continue
            values = _at(node, d["path"])
            fixed = _fixed(e)
            binding = e.get("binding", {})
            if fixed is not None:
                if not any(_matches(v, fixed[1]) for v in values):
                    return False
            elif binding.get("strength") == "required":
                verdicts = [_in_value_set(v, binding["valueSet"]) for v in values]
                if all(v is False for v in verdicts):  # also: nothing at the path
                    return False
        return True

    def _step(self, nodes: list[Any], parent_id: str, part: str) -> list[Any]:
        name, _, slice_name = part.partition(":")
        if slice_name and name.endswith("[x]"):
            return [n[slice_name] for n in nodes if isinstance(n, dict) and slice_name in n]
        kids = [k for n in nodes for k in _kids(n, name)]
        if slice_name:
            base_id, eid = f"{parent_id}.{name}", f"{parent_id}.{part}"
            kids = [k for k in kids if self._in_slice(k, base_id, eid)]
        return kids

    def select(self, resource: dict[str, Any], eid: str) -> list[Any]:
        parts = eid.split(".")
        nodes: list[Any] = [resource]
        so_far = parts[0]
        for part in parts[1:]:
            nodes = self._step(nodes, so_far, part)
            so_far = f"{so_far}.{part}"
        return nodes

    def problems(self, resource: dict[str, Any]) -> list[str]:
        out: list[str] = []
        for eid, e in self.elements.items():
            parts = [p.split(":")[0] for p in eid.split(".")[1:]]
            if not parts or {"extension", "modifierExtension", "id"} & set(parts):
                continue
            parent_id, _, last = eid.rpartition(".")
            mx = e.get("max", "*")
            for parent in self.select(resource, parent_id):
                n = len(self._step([parent], parent_id, last))
                if n < e.get("min", 0):
                    out.append(f"{eid}: {n} < min {e['min']}")
                if mx != "*" and n > int(mx):
                    out.append(f"{eid}: {n} > max {mx}")
            fixed = _fixed(e)
            binding = e.get("binding", {})
            for node in self.select(resource, eid):
                if fixed is not None and not _matches(node, fixed[1]):
                    out.append(f"{eid}: {node!r} is not the {fixed[0]} {fixed[1]!r}")
                required = binding.get("strength") == "required"
                if required and _in_value_set(node, binding["valueSet"]) is False:
                    out.append(f"{eid}: {node!r} not in {binding['valueSet']}")
        return out


def _local_references(node: Any, path: str = "") -> list[str]:
    if isinstance(node, list):
        return [r for i, x in enumerate(node) for r in _local_references(x, f"{path}[{i}]")]
    if not isinstance(node, dict):
        return []
    found = []
    for k, v in node.items():
        if k == "reference" and not str(v).startswith(("urn:uuid:", "http://", "https://")):
            found.append(f"{path}.reference={v}")
        found.extend(_local_references(v, f"{path}.{k}"))
    return found


# ---- fixtures and helpers ------------------------------------------------------------------------


def _endpoint(client, code: str, address: str) -> str:  # type: ignore[no-untyped-def]
    return _post(
        client,
        {
            "resourceType": "Endpoint",
            "status": "active",
            "connectionType": {"system": TRANSPORT_SYSTEM, "code": "fhir-rest"},
            "payloadType": [{"coding": [{"system": SUBSCRIPTION_SYSTEM, "code": code}]}],
            "address": address,
        },
    )


def _m(
    code: Code,
    value: str | None,
    unit: str | None,
    when: datetime,
    fnr: str = FNR,
    **kw: Any,
) -> Measurement:
    return Measurement(
        code,
        Decimal(value) if value is not None else None,
        unit,
        when,
        PatientRef(FNR_OID, fnr),
        f"{code.code} {when.isoformat()}",
        **kw,
    )


NOW = datetime.now(UTC).replace(microsecond=0)


def _vitals(fnr: str = FNR, minutes_ago: float = 60) -> list[Measurement]:
    at = NOW - timedelta(minutes=minutes_ago)
    return [
        _m(Code(LOINC, "8867-4"), "72", "/min", at, fnr),
        _m(
            Code(LOINC, "2708-6"),
            "97",
            "%",
            at,
            fnr,
            device=DeviceRef(EUI64, "0123456789ABCDEF", display="Pulsoksymeter"),
        ),
        _m(
            Code(MDC, "150020"),
            None,
            None,
            at,
            fnr,
            components=(
                Component(Code(MDC, "150021"), Decimal("128"), "mm[Hg]"),
                Component(Code(MDC, "150022"), Decimal("82"), "mm[Hg]"),
            ),
        ),
        _m(Code(LOINC, "8310-5"), "36.9", "Cel", at, fnr),
        _m(Code(LOINC, "29463-7"), "81.4", "kg", at, fnr),
        _m(Code(LOINC, "9279-1"), "16", "/min", at, fnr),
        _m(Code(LOINC, "15074-8"), "6.1", "mmol/L", at, fnr),
    ]


def _ingest(services, items: list[Measurement]):  # type: ignore[no-untyped-def]
    return IngestPipeline(services).ingest_result(
        "test", AdapterResult(measurements=items), IngestMeta(source="test")
    )


def _rows(services, kind: str | None = None) -> list[Any]:  # type: ignore[no-untyped-def]
    return [
        r
        for r in _outbox(services)
        if r.event == "observation.created" and (kind is None or r.kind == kind)
    ]


@pytest.fixture
def book(client, tmp_path: Path) -> dict[str, str]:  # type: ignore[no-untyped-def]
    ids = address_book(client, tmp_path)
    ids["pmd"] = _endpoint(client, "pmd", "https://pmd.test.nhn.no/fhir")
    ids["hospital"] = _endpoint(client, "observation", "https://fhir.hospital.test/r4")
    return ids


# ---- tests -------------------------------------------------------------------------------------


def test_new_observations_reach_the_fhir_subscriber_as_stored(client, services, book) -> None:  # type: ignore[no-untyped-def]
    report = _ingest(services, _vitals())
    assert report.created == 7
    [row] = _rows(services, "fhir-observations")
    assert row.destination == f"Endpoint/{book['hospital']}" and row.transport == "fhir-rest"
    assert row.content_type == "application/fhir+json" and row.patient_id == book["patient"]
    bundle = orjson.loads(bytes(row.payload))
    Bundle.model_validate(bundle)
    assert bundle["type"] == "transaction"
    assert [e["resource"]["id"] for e in bundle["entry"]] == [
        r.split("/")[1] for r in report.resources
    ]
    for entry in bundle["entry"]:
        stored = client.get(f"/fhir/Observation/{entry['resource']['id']}").json()
        assert entry["resource"] == stored
        ident = stored["identifier"][0]
        assert entry["request"] == {
            "method": "POST",
            "url": "Observation",
            "ifNoneExist": f"identifier={ident['system']}|{ident['value']}",
        }
        assert entry["fullUrl"].startswith("urn:uuid:")

    # the transport POSTs the Bundle to the Endpoint's base (a real local HTTP receiver)
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from tests.live_server import live_server

    seen: list[tuple[str, str, bytes]] = []

    async def receive(request: Request) -> JSONResponse:
        seen.append((request.method, request.url.path, await request.body()))
        return JSONResponse({"resourceType": "Bundle", "type": "transaction-response"})

    app = Starlette(routes=[Route("/r4", receive, methods=["POST"])])
    with live_server(app) as base:
        delivered = FhirRestTransport().deliver(
            OutboxMessage(
                row.id,
                row.msg_id,
                row.destination,
                row.transport,
                f"{base}/r4",
                row.content_type,
                bytes(row.payload),
                row.kind,
                0,
                False,
                None,
            )
        )
    assert delivered and row.address == "https://fhir.hospital.test/r4"
    assert seen[0][:2] == ("POST", "/r4") and orjson.loads(seen[0][2]) == bundle


def test_pmd_upload_is_a_conformant_vkp_batch(client, services, book) -> None:  # type: ignore[no-untyped-def]
    report = _ingest(services, _vitals())
    [row] = _rows(services, "pmd-observations")
    assert row.destination == f"Endpoint/{book['pmd']}" and row.transport == "fhir-rest"
    bundle = orjson.loads(bytes(row.payload))

    # the Bundle: FHIR R4 structure, the pmd-Bundle-Observation profile, no local references
    Bundle.model_validate(bundle)
    assert bundle["meta"]["profile"] == [_sd("pmd-Bundle-Observation")["url"]]
    assert Checker(_sd("pmd-Bundle-Observation")).problems(bundle) == []
    assert bundle["type"] == "batch" and len(bundle["entry"]) == 7
    assert len({e["fullUrl"] for e in bundle["entry"]}) == 7  # bdl-7
    assert _local_references(bundle) == []

    municipality = client.get(f"/fhir/Organization/{book['municipality']}").json()
    orgnr = next(i["value"] for i in municipality["identifier"] if i["system"] == ORGNR_OID)
    stored = {
        tuple(o["identifier"][0].values()): o
        for o in (
            client.get(f"/fhir/Observation/{r.split('/')[1]}").json() for r in report.resources
        )
    }
    expected_profiles = _vital_sign_profiles()
    assert set(expected_profiles) == {"8867-4", "2708-6", "85354-9", "8310-5", "29463-7", "9279-1"}
    profiles = {}
    for entry in bundle["entry"]:
        obs = entry["resource"]
        Observation.model_validate(obs)
        loinc = next(c["code"] for c in obs["code"]["coding"] if c["system"] == LOINC)
        [profile] = obs["meta"]["profile"]
        profiles[loinc] = profile
        assert profile == expected_profiles.get(loinc, _sd("vkp-Observation")["url"])
        name = profile.rsplit("/", 1)[1]
        assert Checker(_sd(name)).problems(obs) == [], loinc
        # idempotency identifier kept: the stored Observation it copies
        original = stored[(obs["identifier"][0]["system"], obs["identifier"][0]["value"])]
        assert (
            obs["valueQuantity" if "valueQuantity" in obs else "component"]
            == original.get("valueQuantity", original.get("component"))
            or loinc == "85354-9"
        )
        assert obs["effectiveDateTime"] == original["effectiveDateTime"]
        assert "id" not in obs and set(obs["meta"]) == {"profile"}
        assert entry["request"]["method"] in {
            c
            for _, c in _value_sets()[
                "http://hl7.no/fhir/vkpobservation/ValueSet/pmd-bundle-requests.valueset"
            ]
        }
        assert entry["request"]["url"] == "Observation"
        ident = obs["identifier"][0]
        assert entry["request"]["ifNoneExist"] == f"identifier={ident['system']}|{ident['value']}"
        # subject: the fødselsnummer and the name, no local reference
        assert obs["subject"] == {
            "identifier": {"system": FNR_OID, "value": FNR},
            "display": "Line Danser",
        }
        # invariants the checker does not evaluate (FHIRPath): vs-1, vs-2, vs-3, obs-6, obs-7
        assert len(obs["effectiveDateTime"]) >= 10
        assert obs.get("component") or "valueQuantity" in obs or "dataAbsentReason" in obs
        assert all(
            "valueQuantity" in c or "dataAbsentReason" in c for c in obs.get("component", [])
        )
        assert not ("valueQuantity" in obs and "dataAbsentReason" in obs)
        # performer: the municipality by organisasjonsnummer where the profile has the slice
        if profile == _sd("vkp-Observation")["url"]:
            assert obs["performer"] == [
                {
                    "type": "Organization",
                    "identifier": {"system": ORGNR_OID, "value": orgnr},
                    "display": "Fjordvik kommune",
                }
            ]
        else:
            assert "performer" not in obs  # Reference(Practitioner) by FNR only in these profiles
    assert profiles["15074-8"] == _sd("vkp-Observation")["url"]

    # the blood pressure panel with SNOMED CT codings on panel and components
    bp = next(e["resource"] for e in bundle["entry"] if "component" in e["resource"])
    assert {"system": "http://snomed.info/sct", "code": "75367002"}.items() <= next(
        c for c in bp["code"]["coding"] if c["system"] == "http://snomed.info/sct"
    ).items()
    assert [c["valueQuantity"]["value"] for c in bp["component"]] == [128, 82]
    # the device as a logical reference (its EUI-64 and name)
    spo2 = next(
        e["resource"]
        for e in bundle["entry"]
        if e["resource"]["code"]["coding"][0]["code"] == "2708-6"
    )
    assert spo2["device"] == {
        "identifier": {"system": EUI64, "value": "0123456789ABCDEF"},
        "display": "Pulsoksymeter",
    }


def test_one_message_per_endpoint_and_patient_per_transaction(client, services, book) -> None:  # type: ignore[no-untyped-def]
    _ingest(services, _vitals())
    assert sorted(r.kind for r in _rows(services)) == ["fhir-observations", "pmd-observations"]

    # the same measurements again: duplicates, nothing new to send
    again = _ingest(services, _vitals())
    assert again.created == 0 and again.duplicate == 7
    assert len(_rows(services)) == 2

    # two patients in one transaction: one message per patient per endpoint
    _post(
        client,
        {
            "resourceType": "Patient",
            "identifier": [{"system": FNR_OID, "value": FNR2}],
            "managingOrganization": {"reference": f"Organization/{book['centre']}"},
        },
    )
    _ingest(services, [*_vitals(minutes_ago=30)[:2], *_vitals(FNR2, minutes_ago=30)[:3]])
    new = _rows(services)[2:]
    assert sorted((r.kind, r.patient_id != book["patient"]) for r in new) == [
        ("fhir-observations", False),
        ("fhir-observations", True),
        ("pmd-observations", False),
        ("pmd-observations", True),
    ]
    for r in new:
        b = orjson.loads(bytes(r.payload))
        mine = r.patient_id == book["patient"]
        assert len(b["entry"]) == (2 if mine else 3)
        if r.kind == "pmd-observations":
            assert {e["resource"]["subject"]["identifier"]["value"] for e in b["entry"]} == {
                FNR if mine else FNR2
            }


def test_no_subscriber_no_message_and_one_lookup_per_transaction(
    client, services, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    address_book(client, tmp_path)
    _post(
        client,
        {
            "resourceType": "Patient",
            "identifier": [{"system": FNR_OID, "value": FNR2}],
        },
    )
    lookups: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        if "search_token" in statement and "payload-type" in str(parameters):
            lookups.append(statement)

    event.listen(services.engine, "before_cursor_execute", count)
    try:
        report = _ingest(services, [*_vitals(), *_vitals(FNR2)])
    finally:
        event.remove(services.engine, "before_cursor_execute", count)
    assert report.created == 14
    assert _rows(services) == []
    assert len(lookups) == 1  # two patients × two rules: one indexed query


def test_pmd_without_an_organisation_number_is_dead_lettered(client, services, book) -> None:  # type: ignore[no-untyped-def]
    _post(
        client,
        {
            "resourceType": "Patient",
            "identifier": [{"system": FNR_OID, "value": FNR2}],
        },
    )
    _ingest(services, _vitals(FNR2)[:1])
    rows = _rows(services)
    dead = [r for r in rows if r.status == "dead"]
    assert [r.kind for r in dead] == ["pmd-observations"]
    assert "managingOrganization" in dead[0].last_error
    assert [r.kind for r in rows if r.status == "queued"] == ["fhir-observations"]


def test_the_ig_checks_catch_what_the_ig_forbids() -> None:
    stored = {
        "resourceType": "Observation",
        "id": "abc",
        "meta": {
            "versionId": "2",
            "profile": ["http://hl7.org/fhir/StructureDefinition/heartrate"],
        },
        "identifier": [{"system": "urn:dho-interop:measurement-key", "value": "k1"}],
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": LOINC, "code": "8867-4"}]},
        "subject": {"reference": "Patient/p1"},
        "basedOn": [{"reference": "CarePlan/c1"}],
        "derivedFrom": [{"reference": "Observation/o0", "display": "earlier reading"}],
        "device": {"reference": "Device/d1"},
        "effectiveDateTime": "2025-05-01T10:00:00+02:00",
        "valueQuantity": {"value": 72, "unit": "/min", "system": UCUM, "code": "/min"},
    }
    subject = {"identifier": {"system": FNR_OID, "value": FNR}}
    performer = {"type": "Organization", "identifier": {"system": ORGNR_OID, "value": "974760673"}}
    obs = vkp_observation(stored, subject=subject, performer=performer, device=None)
    heart_rate = Checker(_sd("vkp-Observation-Heartrate"))
    assert obs["meta"] == {"profile": [_sd("vkp-Observation-Heartrate")["url"]]}
    assert heart_rate.problems(obs) == [] and _local_references(obs) == []
    assert "basedOn" not in obs and "device" not in obs and "performer" not in obs
    assert obs["derivedFrom"] == [{"display": "earlier reading"}]
    assert {"system": "http://snomed.info/sct", "code": "364075005"}.items() <= (
        obs["code"]["coding"][-1].items()
    )
    Observation.model_validate(obs)

    # what the profiles forbid is found: an organisation as performer, a HER-id as subject,
    # a unit other than /min, no LOINC coding; a transaction instead of a batch
    assert heart_rate.problems({**obs, "performer": [performer]})
    her = {"identifier": {"system": "urn:oid:2.16.578.1.12.4.1.2", "value": "80001"}}
    assert heart_rate.problems({**obs, "subject": her})
    assert heart_rate.problems({**obs, "valueQuantity": {**obs["valueQuantity"], "code": "bpm"}})
    assert heart_rate.problems({**obs, "code": {"coding": obs["code"]["coding"][1:]}})
    general = Checker(_sd("vkp-Observation"))
    assert general.problems({**obs, "performer": [performer]}) == []
    batch = {"resourceType": "Bundle", "type": "batch", "entry": []}
    assert Checker(_sd("pmd-Bundle-Observation")).problems({**batch, "type": "transaction"})

    # a panel without a diastolic component does not get the blood pressure profile
    bp = {
        **stored,
        "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
        "component": [
            {
                "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                "valueQuantity": {"value": 120, "unit": "mm[Hg]", "system": UCUM, "code": "mm[Hg]"},
            }
        ],
    }
    del bp["valueQuantity"]
    assert vkp_profile(bp) == _sd("vkp-Observation")["url"]
    assert (
        vkp_profile({**stored, "valueQuantity": {"value": 72, "system": UCUM, "code": "bpm"}})
        == (_sd("vkp-Observation")["url"])
    )


def test_released_quarantine_is_announced_too(client, services, book) -> None:  # type: ignore[no-untyped-def]
    from interop.ingest.pipeline import release_quarantine

    report = _ingest(services, _vitals(FNR2)[:2])
    assert report.quarantined == 2 and _rows(services) == []
    _post(
        client,
        {
            "resourceType": "Patient",
            "identifier": [{"system": FNR_OID, "value": FNR2}],
            "managingOrganization": {"reference": f"Organization/{book['centre']}"},
        },
    )
    assert release_quarantine(services)["released"] == 2
    rows = _rows(services)
    assert sorted(r.kind for r in rows) == ["fhir-observations", "pmd-observations"]
    pmd = orjson.loads(bytes(next(r for r in rows if r.kind == "pmd-observations").payload))
    assert len(pmd["entry"]) == 2 and _local_references(pmd) == []
