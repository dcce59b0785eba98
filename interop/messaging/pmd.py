"""New Observations for subscribed FHIR endpoints: as stored (hospital, EPJ) or as an upload to
NHN's *Pasientens måledata* (PMD) in the shape of HL7 Norway's VkpObservation IG.

What the IG (``hl7.fhir.no.vkp.observation`` 0.5.1, FHIR 4.0.1; the StructureDefinitions,
CodeSystems and ValueSets in ``shared/standards/fhir/no-vkp-observation``) asks of an upload:

* **Bundle** — profile ``http://hl7.no/fhir/vkpobservation/StructureDefinition/pmd-Bundle-Observation``:
  ``type`` = ``batch`` (patternCode); every ``entry.fullUrl`` 1..1 ("unique id … for reference in
  the response"; the answer, ``pmd-Bundle-Response``, is a ``batch-response`` whose
  ``entry.response`` carries the extension ``…/PmdBundleResponseEntryIdExtension`` with that
  fullUrl); ``entry.resource`` only Observation; ``entry.request`` 1..1 with ``method`` bound
  (required) to ``pmd-bundle-requests``: ``POST`` | ``PUT``; ``request.url`` 1..1 (core).
* **Observation.meta.profile** — one profile per vital sign, each derived from the FHIR core
  vital-signs profile and adding a SNOMED CT coding slice (0..*, must-support):

  - heart rate, LOINC 8867-4: ``vkp-Observation-Heartrate``, SNOMED CT 364075005
  - SpO2, LOINC 2708-6: ``vkp-Observation-Oxygensat``, SNOMED CT 431314004
  - blood pressure panel, LOINC 85354-9: ``vkp-Observation-Bloodpressure``, SNOMED CT
    75367002; components 2..*: SystolicBP (8480-6, SNOMED CT 271649006) and DiastolicBP
    (8462-4, 271650006) 1..1 each, ``mm[Hg]`` fixed, no value of its own
  - body temperature, LOINC 8310-5: ``vkp-Observation-Bodytemp``, SNOMED CT 276885007
  - body weight, LOINC 29463-7: ``vkp-Observation-Bodyweight``, SNOMED CT 27113001
  - respiratory rate, LOINC 9279-1: ``vkp-Observation-Resprate``, SNOMED CT 86290005

  Inherited from the core profiles: ``status`` 1..1, ``category`` slice VSCat 1..1 (system
  ``http://terminology.hl7.org/CodeSystem/observation-category``, code ``vital-signs``), the
  LOINC coding 1..1 (fixed system + code), ``subject`` 1..1, ``effective[x]`` 1..1
  (dateTime|Period, vs-1: at least a day), ``valueQuantity`` only, UCUM system fixed and
  ``code`` fixed (``/min``, ``%``) or bound (``Cel``/``[degF]``, ``kg``/``g``/``[lb_av]``),
  vs-2/vs-3 (a value or a dataAbsentReason). Any other code uses the general profile
  ``…/vkp-Observation`` (open code slices for LOINC, SNOMED CT and NPU/NLK
  ``urn:oid:2.16.578.1.12.4.1.1.7280``).
* **subject** — a logical reference: ``subject.identifier`` with ``system`` bound (required) to
  ``vkp-subject-identifiers``: ``urn:oid:2.16.578.1.12.4.1.4.1`` (FNR, fødselsnummer),
  ``…4.1.4.2`` (DNR, D-nummer), ``…4.1.4.3`` (FHN); "the Name of the patient should be given
  in the subject.display element".
* **performer** — in the general ``vkp-Observation``: slice ``organization`` (the organisation
  responsible for the information, *opprinnelig dataansvarlig virksomhet*) by
  ``identifier.system`` bound (required) to ``vkp-performer-organization-identifiers``:
  ``urn:oid:2.16.578.1.12.4.1.4.101`` (organisasjonsnummer) or ``…4.1.4.102`` (RESH) — the
  HER-id is *not* in that value set; slice ``author`` (a person by FNR). The six vital-sign
  profiles restrict ``performer`` to ``Reference(Practitioner)`` with ``identifier.system``
  bound (required) to ``vkp-performer-identifiers`` = FNR only: an organisation cannot be the
  performer there, so those copies carry no performer (the IG gives no other place for it).
* ``device`` — ``Reference(Device|DeviceMetric)``, optional; copies carry the Device's
  identifier and name (a logical reference) or nothing.

What this module adds: the stored Observation with ``meta`` = the VKP profile only (no id,
versionId, lastUpdated), the SNOMED CT codings the profile names (when missing), the subject
by FNR/D-nummer (FHN as last resort) with the patient's name, the municipality (the
``partOf`` parent of ``Patient.managingOrganization``, else that organisation) as
``performer`` by organisasjonsnummer (else RESH) where the profile allows it, no local
reference left anywhere, and our idempotency ``identifier`` kept. Each entry is a conditional
create: ``POST Observation`` with ``ifNoneExist`` = ``identifier=<system>|<value>`` and a
``fullUrl`` ``urn:uuid:`` derived from that identifier, so a re-sent upload names the same
entries and creates nothing new (``PUT`` is allowed too; a conditional create fits new
Observations). The ``fhir-rest`` transport POSTs the Bundle to the Endpoint's address and
counts any 2xx as delivered: a batch answers 200 even when single entries failed, so a PMD
``batch-response`` entry with an error status is not yet noticed by the outbox.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

import orjson
from sqlalchemy import Connection, select

from interop.fhir.dates import format_instant, now_utc
from interop.identifiers import FHN_OID, ORGNR_OID, RESH_OID
from interop.messaging.addressbook import DNR_OID, FNR_OID, AddressError, resource_json
from interop.store.repository import FhirStore
from interop.store.schema import resource_table

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
VKP_SD = "http://hl7.no/fhir/vkpobservation/StructureDefinition/"
PMD_BUNDLE_PROFILE = VKP_SD + "pmd-Bundle-Observation"
VKP_OBSERVATION = VKP_SD + "vkp-Observation"

VITAL_SIGN_PROFILES: dict[str, tuple[str, str, str, frozenset[str]]] = {
    # LOINC → (profile, SNOMED CT code, SNOMED CT display, UCUM codes the profile accepts)
    "8867-4": (
        VKP_SD + "vkp-Observation-Heartrate",
        "364075005",
        "Heart rate",
        frozenset({"/min"}),
    ),
    "2708-6": (
        VKP_SD + "vkp-Observation-Oxygensat",
        "431314004",
        "Peripheral oxygen saturation",
        frozenset({"%"}),
    ),
    "85354-9": (
        VKP_SD + "vkp-Observation-Bloodpressure",
        "75367002",
        "Blood pressure",
        frozenset({"mm[Hg]"}),
    ),
    "8310-5": (
        VKP_SD + "vkp-Observation-Bodytemp",
        "276885007",
        "Core body temperature",
        frozenset({"Cel", "[degF]"}),
    ),
    "29463-7": (
        VKP_SD + "vkp-Observation-Bodyweight",
        "27113001",
        "Body weight",
        frozenset({"kg", "g", "[lb_av]"}),
    ),
    "9279-1": (
        VKP_SD + "vkp-Observation-Resprate",
        "86290005",
        "Respiratory rate",
        frozenset({"/min"}),
    ),
}
BP_COMPONENTS = {
    "8480-6": ("271649006", "Systolic blood pressure"),
    "8462-4": ("271650006", "Diastolic blood pressure"),
}
SUBJECT_SYSTEMS = (FNR_OID, DNR_OID, FHN_OID)
"""``vkp-subject-identifiers``, in the order we prefer them."""
PERFORMER_ORGANISATION_SYSTEMS = (ORGNR_OID, RESH_OID)
"""``vkp-performer-organization-identifiers``, in the order we prefer them."""
ORGANISATION_PERFORMER_PROFILES = frozenset({VKP_OBSERVATION})
"""Profiles with a ``performer:organization`` slice (the vital-sign ones have none)."""
MAX_ENTRIES = 500
"""Observations per Bundle; a larger ingest is sent as several Bundles."""

_ENTRY_NAMESPACE = uuid.UUID("6f1b7a52-3c1e-5d1e-9a49-2f4c7d0e8b11")


# ---- loading ----------------------------------------------------------------------------------
def load_observations(conn: Connection, refs: Iterable[str]) -> list[dict[str, Any]]:
    """The current versions of these Observations (``Observation/{id}``), in the given order;
    deleted or unknown ones are left out."""
    ids = [r.split("/", 1)[1] for r in refs if r.startswith("Observation/")]
    found: dict[str, dict[str, Any]] = {}
    r = resource_table
    for i in range(0, len(ids), 500):
        for row in conn.execute(
            select(r.c.res_id, r.c.content, r.c.deleted).where(
                r.c.res_type == "Observation", r.c.res_id.in_(ids[i : i + 500])
            )
        ):
            if not row.deleted:
                found[row.res_id] = orjson.loads(row.content)
    return [found[i] for i in ids if i in found]


def _identifier(resource: dict[str, Any], systems: Iterable[str]) -> dict[str, str] | None:
    idents = resource.get("identifier") or []
    for system in systems:
        for i in idents:
            if i.get("system") == system and i.get("value"):
                return {"system": system, "value": str(i["value"])}
    return None


def _name(resource: dict[str, Any]) -> str | None:
    names = resource.get("name") or []
    if not names:
        return None
    n = next((x for x in names if x.get("use") == "official"), names[0])
    if n.get("text"):
        return str(n["text"])
    text = " ".join([*n.get("given", []), n.get("family", "")]).strip()
    return text or None


# ---- the parties --------------------------------------------------------------------------------
def pmd_subject(patient: dict[str, Any]) -> dict[str, Any]:
    """``Observation.subject`` as VKP wants it: FNR (else D-nummer, else FHN) and the name."""
    ident = _identifier(patient, SUBJECT_SYSTEMS)
    if ident is None:
        raise AddressError(
            f"Patient/{patient.get('id')} has no fødselsnummer, D-nummer or hjelpenummer "
            "(PMD identifies the subject by one of them)"
        )
    subject: dict[str, Any] = {"identifier": ident}
    name = _name(patient)
    if name:
        subject["display"] = name
    return subject


def municipality_of(store: FhirStore, conn: Connection, patient: dict[str, Any]) -> dict[str, Any]:
    """The organisation responsible for the data: the ``partOf`` parent of the patient's
    managing organisation (the municipality around its follow-up centre), else that
    organisation itself."""
    org = resource_json(store, conn, (patient.get("managingOrganization") or {}).get("reference"))
    if org is None:
        raise AddressError(f"Patient/{patient.get('id')} has no managingOrganization")
    parent = resource_json(store, conn, (org.get("partOf") or {}).get("reference"))
    return parent if parent is not None else org


def pmd_performer(organisation: dict[str, Any]) -> dict[str, Any]:
    """``performer:organization``: by organisasjonsnummer (else RESH) and name."""
    ident = _identifier(organisation, PERFORMER_ORGANISATION_SYSTEMS)
    if ident is None:
        raise AddressError(
            f"Organization/{organisation.get('id')} has no organisasjonsnummer or RESH-id "
            "(PMD identifies the responsible organisation by one of them)"
        )
    performer: dict[str, Any] = {"type": "Organization", "identifier": ident}
    if organisation.get("name"):
        performer["display"] = str(organisation["name"])
    return performer


def _device_reference(device: dict[str, Any] | None) -> dict[str, Any] | None:
    """A logical reference to the device: its first identifier and its name, or nothing."""
    if device is None:
        return None
    out: dict[str, Any] = {}
    for i in device.get("identifier") or []:
        if i.get("system") and i.get("value"):
            out["identifier"] = {"system": i["system"], "value": i["value"]}
            break
    names = [n.get("name") for n in device.get("deviceName") or [] if n.get("name")]
    display = names[0] if names else device.get("modelNumber") or device.get("manufacturer")
    if display:
        out["display"] = str(display)
    return out or None


# ---- one Observation ------------------------------------------------------------------------------
def _loinc_codes(concept: dict[str, Any]) -> list[str]:
    return [str(c.get("code")) for c in (concept.get("coding") or []) if c.get("system") == LOINC]


def _units(obs: dict[str, Any]) -> set[str | None]:
    nodes = obs.get("component") or [obs]
    return {
        (n["valueQuantity"].get("code") if n["valueQuantity"].get("system") == UCUM else None)
        for n in nodes
        if "valueQuantity" in n
    }


def vkp_profile(obs: dict[str, Any]) -> str:
    """The VKP profile this Observation conforms to: its vital-sign profile when the code,
    category and units fit it, else the general ``vkp-Observation``."""
    vital = any(
        c.get("code") == "vital-signs"
        for cat in obs.get("category") or []
        for c in cat.get("coding") or []
    )
    for code in _loinc_codes(obs.get("code") or {}):
        hit = VITAL_SIGN_PROFILES.get(code)
        if hit is None:
            continue
        if vital and _units(obs) <= hit[3] and (code != "85354-9" or _bp_components_fit(obs)):
            return hit[0]
        break
    return VKP_OBSERVATION


def _bp_components_fit(obs: dict[str, Any]) -> bool:
    found = {c for comp in obs.get("component") or [] for c in _loinc_codes(comp.get("code") or {})}
    return not obs.get("valueQuantity") and {"8480-6", "8462-4"} <= found


def _with_snomed(concept: dict[str, Any], code: str, display: str) -> dict[str, Any]:
    codings = list(concept.get("coding") or [])
    if any(c.get("system") == SNOMED and c.get("code") == code for c in codings):
        return concept
    return {**concept, "coding": [*codings, {"system": SNOMED, "code": code, "display": display}]}


def _is_local(ref: str) -> bool:
    """Relative (``Patient/…``) or to a contained resource (``#…``; copies drop ``contained``)."""
    return not ref.startswith(("urn:uuid:", "urn:oid:", "http://", "https://"))


def strip_local_references(node: Any) -> Any:
    """The node without literal references to resources of this server: a Reference keeps its
    identifier/display, or is dropped when nothing else is left (``None``)."""
    if isinstance(node, list):
        kept = [strip_local_references(x) for x in node]
        kept = [x for x in kept if x is not None]
        return kept or None
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "reference" and isinstance(value, str) and _is_local(value):
            continue
        cleaned = strip_local_references(value)
        if cleaned is not None:
            out[key] = cleaned
    if (
        "reference" in node
        and "reference" not in out
        and not ({"identifier", "display"} & out.keys())
    ):
        return None
    return out or None


def vkp_observation(
    stored: dict[str, Any],
    *,
    subject: dict[str, Any],
    performer: dict[str, Any] | None,
    device: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A VkpObservation-conformant copy of a stored Observation (see the module docstring)."""
    obs = orjson.loads(orjson.dumps(stored))
    for key in ("id", "meta", "text", "contained", "performer"):
        obs.pop(key, None)
    profile = vkp_profile(stored)
    out: dict[str, Any] = {"resourceType": "Observation", "meta": {"profile": [profile]}}
    out.update(obs)
    out["subject"] = subject
    if performer is not None and profile in ORGANISATION_PERFORMER_PROFILES:
        out["performer"] = [performer]
    out.pop("device", None)
    dev = _device_reference(device)
    if dev is not None:
        out["device"] = dev
    loinc = next((c for c in _loinc_codes(out.get("code") or {}) if c in VITAL_SIGN_PROFILES), None)
    if loinc is not None and profile != VKP_OBSERVATION:
        _, sct, display, _units_ok = VITAL_SIGN_PROFILES[loinc]
        out["code"] = _with_snomed(out["code"], sct, display)
        if loinc == "85354-9":
            comps = []
            for comp in out.get("component") or []:
                codes = _loinc_codes(comp.get("code") or {})
                hit = next((BP_COMPONENTS[c] for c in codes if c in BP_COMPONENTS), None)
                comps.append({**comp, "code": _with_snomed(comp["code"], *hit)} if hit else comp)
            out["component"] = comps
    cleaned = strip_local_references(out)
    assert isinstance(cleaned, dict)
    return cleaned


# ---- Bundles ----------------------------------------------------------------------------------------
def _key(obs: dict[str, Any]) -> tuple[str, str] | None:
    for i in obs.get("identifier") or []:
        if i.get("system") and i.get("value"):
            return str(i["system"]), str(i["value"])
    return None


def _entry(obs: dict[str, Any], fallback_id: str | None) -> dict[str, Any]:
    key = _key(obs)
    name = f"{key[0]}|{key[1]}" if key else f"Observation/{fallback_id}"
    request: dict[str, Any] = {"method": "POST", "url": "Observation"}
    if key:
        request["ifNoneExist"] = f"identifier={key[0]}|{key[1]}"
    return {
        "fullUrl": f"urn:uuid:{uuid.uuid5(_ENTRY_NAMESPACE, name)}",
        "resource": obs,
        "request": request,
    }


def _chunks(items: list[Any]) -> list[list[Any]]:
    return [items[i : i + MAX_ENTRIES] for i in range(0, len(items), MAX_ENTRIES)]


def observation_bundles(stored: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The new Observations as stored, as ``transaction`` Bundles of conditional creates (the
    receiver answers 2xx only when every entry was taken)."""
    return [
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "timestamp": format_instant(now_utc()),
            "entry": [_entry(obs, obs.get("id")) for obs in chunk],
        }
        for chunk in _chunks(stored)
    ]


PMD_BUNDLE_IDENTIFIER = "https://www.nhn.no/komlink/bundle-identifier"
"""Bundle.identifier system in NHN's PMD 2.0 examples."""


def pmd_bundles(
    store: FhirStore,
    conn: Connection,
    patient_id: str,
    stored: list[dict[str, Any]],
    *,
    bundle_type: str = "batch",
) -> list[dict[str, Any]]:
    """``pmd-Bundle-Observation`` batches of VkpObservation copies of the stored Observations;
    :class:`AddressError` when the patient or the municipality cannot be identified as the IG
    requires."""
    patient = resource_json(store, conn, f"Patient/{patient_id}")
    if patient is None:
        raise AddressError(f"Patient/{patient_id} not found")
    subject = pmd_subject(patient)
    performer = pmd_performer(municipality_of(store, conn, patient))
    devices: dict[str, dict[str, Any] | None] = {}
    copies = []
    for obs in stored:
        ref = (obs.get("device") or {}).get("reference")
        if ref and ref not in devices:
            devices[ref] = resource_json(store, conn, ref)
        copies.append(
            vkp_observation(
                obs,
                subject=subject,
                performer=performer,
                device=devices.get(ref) if ref else None,
            )
        )
    bundles = []
    for chunk, chunk_stored in zip(_chunks(copies), _chunks(stored), strict=True):
        entries = [
            _entry(copy, obs.get("id")) for copy, obs in zip(chunk, chunk_stored, strict=True)
        ]
        bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "meta": {"profile": [PMD_BUNDLE_PROFILE]},
            # the same entries make the same identifier: a re-sent upload can be recognised
            "identifier": {
                "system": PMD_BUNDLE_IDENTIFIER,
                "value": str(uuid.uuid5(_ENTRY_NAMESPACE, "|".join(e["fullUrl"] for e in entries))),
            },
            "type": bundle_type,
            "timestamp": format_instant(now_utc()),
            "entry": entries,
        }
        if bundle_type == "collection":
            # NHN's PMD 2.0 examples: a collection, whose entries carry no request (bdl-3)
            del bundle["meta"]
            for e in entries:
                e.pop("request", None)
        bundles.append(bundle)
    return bundles
