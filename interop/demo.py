"""A synthetic, deterministic demo data set for ``interop demo``.

One fictional municipality (*Fjordvik kommune*) with its follow-up centre (*Oppfølgingssenteret*),
a hospital, four GP practices with two fastleger (regular GPs) each, and ~50 patients followed up
at home for COPD (*KOLS*), heart failure (*hjertesvikt*), type 2 diabetes or hypertension.

The address book comes out as FHIR R4 JSON dicts (Organization, Endpoint, Practitioner,
PractitionerRole, Patient — referenced resources first); the home measurements come out as
canonical :class:`adapters.base.Measurement` objects, as an adapter would report them, so the
demo exercises the real ingest pipeline. Nothing here touches the store.

Every person number is a synthetic Test-Norge/Tenor fødselsnummer (month + 80, see
:mod:`interop.identifiers`); organisation numbers, HER-ids and HPR numbers are generated and
well-formed but made up. Names, streets and places are fictional.

The simulation (per-patient baselines, drift, morning/evening and weekend differences, missed
days, deterioration episodes) is driven by the :data:`PROFILES` table: simulation parameters, not
clinical thresholds. The same ``seed`` and ``end`` always give the same data set.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from adapters.base import (
    LOINC,
    MDC,
    SNOMED,
    Code,
    Component,
    DeviceRef,
    Measurement,
    PatientRef,
)
from interop.identifiers import (
    FNR_OID,
    HERID_OID,
    HPR_OID,
    ORGNR_OID,
    generate_fnr,
    generate_herid,
    generate_hpr,
    generate_orgnr,
)

__all__ = [
    "CONDITIONS",
    "DEMO_SOURCE_SYSTEM",
    "DEMO_TAG",
    "PROFILES",
    "QUANTITIES",
    "Condition",
    "DemoDataSet",
    "DemoEpisode",
    "DemoPatient",
    "generate_demo",
]

OSLO = ZoneInfo("Europe/Oslo")
DEMO_SOURCE_SYSTEM = "https://dho-interop.no/demo"
"""System of every demo measurement's ``source_id`` (and of the demo devices' serials)."""
DEMO_TAG = {
    "system": "https://dho-interop.no/fhir/CodeSystem/data-origin",
    "code": "demo",
    "display": "Synthetic demo data",
}
TRANSPORT_SYSTEM = "https://dho-interop.no/fhir/CodeSystem/transport"
IEEE_EUI64_SYSTEM = "urn:oid:1.2.840.10004.1.1.1.0.0.1.0.0.1.2680"
ICPC2_SYSTEM = "urn:oid:2.16.578.1.12.4.1.1.7170"
NO_BASIS = "http://hl7.no/fhir/StructureDefinition/no-basis-"
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, DEMO_SOURCE_SYSTEM)


class Condition(StrEnum):
    """The chronic condition a demo patient is followed up for."""

    COPD = "copd"
    HEART_FAILURE = "heart-failure"
    DIABETES = "diabetes"
    HYPERTENSION = "hypertension"


@dataclass(frozen=True, slots=True)
class ConditionInfo:
    text: str
    """Norwegian name as a clinician writes it."""
    icpc2: Code
    snomed: Code


CONDITIONS: dict[Condition, ConditionInfo] = {
    Condition.COPD: ConditionInfo(
        "KOLS",
        Code(ICPC2_SYSTEM, "R95", "Kronisk obstruktiv lungesykdom"),
        Code(SNOMED, "13645005", "Chronic obstructive lung disease"),
    ),
    Condition.HEART_FAILURE: ConditionInfo(
        "Hjertesvikt",
        Code(ICPC2_SYSTEM, "K77", "Hjertesvikt"),
        Code(SNOMED, "84114007", "Heart failure"),
    ),
    Condition.DIABETES: ConditionInfo(
        "Diabetes type 2",
        Code(ICPC2_SYSTEM, "T90", "Diabetes type 2"),
        Code(SNOMED, "44054006", "Diabetes mellitus type 2"),
    ),
    Condition.HYPERTENSION: ConditionInfo(
        "Hypertensjon",
        Code(ICPC2_SYSTEM, "K86", "Hypertensjon ukomplisert"),
        Code(SNOMED, "38341003", "Hypertensive disorder"),
    ),
}


# ---- what is measured --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Quantity:
    """One measured quantity: codes, UCUM unit, rounding and physical limits of the simulation."""

    loinc: Code
    unit: str
    decimals: int
    low: float
    high: float
    mdc: Code | None = None


QUANTITIES: dict[str, Quantity] = {
    "spo2": Quantity(
        Code(LOINC, "2708-6", "Oxygen saturation in Arterial blood"),
        "%",
        0,
        70,
        100,
        Code(MDC, "150456", "MDC_PULS_OXIM_SAT_O2"),
    ),
    "pulse": Quantity(
        Code(LOINC, "8867-4", "Heart rate"),
        "/min",
        0,
        35,
        180,
        Code(MDC, "149530", "MDC_PULS_OXIM_PULS_RATE"),
    ),
    "temp": Quantity(
        Code(LOINC, "8310-5", "Body temperature"),
        "Cel",
        1,
        34.5,
        41.5,
        Code(MDC, "150364", "MDC_TEMP_BODY"),
    ),
    "weight": Quantity(
        Code(LOINC, "29463-7", "Body weight"),
        "kg",
        1,
        35,
        200,
        Code(MDC, "188736", "MDC_MASS_BODY_ACTUAL"),
    ),
    "glucose": Quantity(
        Code(LOINC, "14743-9", "Glucose [Moles/volume] in Capillary blood by Glucometer"),
        "mmol/L",
        1,
        2.0,
        33.0,
        Code(MDC, "160184", "MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD"),
    ),
    "sys": Quantity(
        Code(LOINC, "8480-6", "Systolic blood pressure"),
        "mm[Hg]",
        0,
        80,
        240,
        Code(MDC, "150021", "MDC_PRESS_BLD_NONINV_SYS"),
    ),
    "dia": Quantity(
        Code(LOINC, "8462-4", "Diastolic blood pressure"),
        "mm[Hg]",
        0,
        40,
        140,
        Code(MDC, "150022", "MDC_PRESS_BLD_NONINV_DIA"),
    ),
}
BP_PANEL = Code(LOINC, "85354-9", "Blood pressure panel with all children optional")
BP_PANEL_MDC = Code(MDC, "150020", "MDC_PRESS_BLD_NONINV")
PULSE_FROM_CUFF_MDC = Code(MDC, "149546", "MDC_PULS_RATE_NON_INV")


@dataclass(frozen=True, slots=True)
class DeviceModel:
    key: str
    manufacturer: str
    model: str
    type: Code


DEVICES: dict[str, DeviceModel] = {
    "oximeter": DeviceModel(
        "oximeter", "Nordlys Medical", "NM-OX20", Code(MDC, "528388", "Pulse oximeter")
    ),
    "bp": DeviceModel(
        "bp", "Nordlys Medical", "NM-BP300", Code(MDC, "528391", "Blood pressure monitor")
    ),
    "scale": DeviceModel(
        "scale", "Nordlys Medical", "NM-SC150", Code(MDC, "528399", "Weighing scale")
    ),
    "glucometer": DeviceModel(
        "glucometer", "Nordlys Medical", "NM-GL10", Code(MDC, "528401", "Glucose meter")
    ),
    "thermometer": DeviceModel(
        "thermometer", "Nordlys Medical", "NM-TH5", Code(MDC, "528392", "Thermometer")
    ),
}


@dataclass(frozen=True, slots=True)
class Reading:
    """One item of a measuring session: a quantity (or the BP panel) taken with a device."""

    what: str
    """A key of :data:`QUANTITIES`, or ``bp`` for the systolic/diastolic panel."""
    device: str
    """A key of :data:`DEVICES`."""


@dataclass(frozen=True, slots=True)
class Series:
    """How one quantity behaves for patients with a condition (simulation parameters)."""

    baseline: tuple[float, float]
    """Per-patient baseline drawn uniformly from this range."""
    noise: float
    """Standard deviation of day-to-day variation."""
    drift: tuple[float, float] = (0.0, 0.0)
    """Total slow change over the whole period, drawn per patient."""
    evening: float = 0.0
    """Evening minus morning."""
    weekend: float = 0.0
    """Saturday/Sunday minus weekdays."""
    episode: tuple[float, float] = (0.0, 0.0)
    """Change at the peak of a deterioration episode, drawn per episode."""
    spike_chance: float = 0.0
    """Chance per reading of an isolated outlier (e.g. a hypoglycaemia)."""
    spike: tuple[float, float] = (0.0, 0.0)


@dataclass(frozen=True, slots=True)
class Profile:
    """What a patient with this condition measures, when, and how the values behave."""

    morning: tuple[Reading, ...]
    evening: tuple[Reading, ...]
    series: dict[str, Series]
    episodes: tuple[int, ...]
    """Number of deterioration episodes: one drawn uniformly from this tuple per patient."""
    episode_days: tuple[int, int] = (3, 7)
    what_goes_wrong: str = ""


_OXIMETER = Reading("spo2", "oximeter")
_OX_PULSE = Reading("pulse", "oximeter")
_BP = Reading("bp", "bp")
_CUFF_PULSE = Reading("pulse", "bp")

PROFILES: dict[Condition, Profile] = {
    Condition.COPD: Profile(
        morning=(_OXIMETER, _OX_PULSE, Reading("temp", "thermometer")),
        evening=(_OXIMETER, _OX_PULSE),
        series={
            "spo2": Series((91, 95), 1.0, (-1.5, 0.5), evening=-0.5, episode=(-9, -5)),
            "pulse": Series((70, 88), 5, (-2, 4), evening=3, weekend=-1, episode=(12, 24)),
            "temp": Series((36.4, 36.9), 0.2, episode=(0.8, 2.6)),
        },
        episodes=(0, 1, 1, 2),
        what_goes_wrong="exacerbation: SpO2 falls, pulse and temperature rise",
    ),
    Condition.HEART_FAILURE: Profile(
        morning=(Reading("weight", "scale"), _BP, _CUFF_PULSE, _OXIMETER),
        evening=(_BP, _CUFF_PULSE),
        series={
            "weight": Series((62, 112), 0.35, (-1.0, 1.5), weekend=0.3, episode=(2.0, 4.5)),
            "sys": Series((112, 140), 7, (-4, 6), evening=-4, episode=(-8, 12)),
            "dia": Series((64, 84), 5, (-2, 3), evening=-2, episode=(-4, 8)),
            "pulse": Series((60, 80), 5, (-2, 3), evening=2, episode=(10, 22)),
            "spo2": Series((94, 97), 1.0, episode=(-6, -2)),
        },
        episodes=(0, 1, 1, 1, 2),
        what_goes_wrong="fluid retention: weight gain over days, pulse up, SpO2 down",
    ),
    Condition.DIABETES: Profile(
        morning=(Reading("glucose", "glucometer"), Reading("weight", "scale")),
        evening=(Reading("glucose", "glucometer"),),
        series={
            "glucose": Series(
                (6.0, 9.0),
                1.2,
                (-1.0, 1.5),
                evening=1.6,
                weekend=0.8,
                episode=(6, 13),
                spike_chance=0.015,
                spike=(-5.0, -3.5),
            ),
            "weight": Series((68, 122), 0.4, (-2.5, 1.0), weekend=0.3),
        },
        episodes=(0, 1, 1, 2),
        what_goes_wrong="hyperglycaemia; the odd hypoglycaemia",
    ),
    Condition.HYPERTENSION: Profile(
        morning=(_BP, _CUFF_PULSE),
        evening=(_BP, _CUFF_PULSE),
        series={
            "sys": Series((132, 156), 8, (-12, 4), evening=-5, weekend=3, episode=(24, 46)),
            "dia": Series((78, 95), 6, (-6, 2), evening=-3, weekend=2, episode=(10, 20)),
            "pulse": Series((58, 80), 5, (-2, 2), evening=2, episode=(4, 12)),
        },
        episodes=(0, 0, 1, 1, 2),
        what_goes_wrong="blood pressure crisis over a few days",
    ),
}

CONDITION_MIX: tuple[Condition, ...] = (
    Condition.COPD,
    Condition.HEART_FAILURE,
    Condition.DIABETES,
    Condition.HYPERTENSION,
)
MORNING = (time(6, 45), time(9, 45))
EVENING = (time(18, 30), time(22, 15))
ADHERENCE = (0.86, 0.99)
"""Per-patient share of days with any measurement."""
EVENING_SKIP = 0.06
"""Chance that an otherwise measured day has no evening session."""


# ---- fictional people and places ---------------------------------------------------------------

FEMALE_NAMES = [
    "Anne",
    "Inger",
    "Kari",
    "Marit",
    "Ingrid",
    "Liv",
    "Eva",
    "Berit",
    "Astrid",
    "Bjørg",
    "Hilde",
    "Solveig",
    "Marianne",
    "Randi",
    "Elisabeth",
    "Kristin",
    "Bente",
    "Heidi",
    "Gerd",
    "Tone",
    "Turid",
    "Grete",
    "Sigrid",
    "Wenche",
    "Unni",
    "Karin",
    "Ragnhild",
]
MALE_NAMES = [
    "Jan",
    "Per",
    "Bjørn",
    "Ole",
    "Lars",
    "Kjell",
    "Knut",
    "Arne",
    "Svein",
    "Hans",
    "Geir",
    "Tor",
    "Morten",
    "Terje",
    "Odd",
    "Erik",
    "Rune",
    "Trond",
    "Harald",
    "Olav",
    "Tore",
    "Gunnar",
    "Rolf",
    "Leif",
    "Helge",
    "Einar",
    "Arild",
    "Jon",
    "Magne",
    "Sverre",
]
FAMILY_NAMES = [
    "Hansen",
    "Johansen",
    "Olsen",
    "Larsen",
    "Andersen",
    "Pedersen",
    "Nilsen",
    "Kristiansen",
    "Jensen",
    "Karlsen",
    "Johnsen",
    "Pettersen",
    "Eriksen",
    "Berg",
    "Haugen",
    "Hagen",
    "Johannessen",
    "Andreassen",
    "Jacobsen",
    "Dahl",
    "Jørgensen",
    "Halvorsen",
    "Henriksen",
    "Lund",
    "Sørensen",
    "Moen",
    "Gundersen",
    "Iversen",
    "Strand",
    "Solberg",
    "Svendsen",
    "Eide",
    "Knutsen",
    "Martinsen",
    "Paulsen",
    "Bakken",
    "Kristoffersen",
    "Mathisen",
    "Lie",
    "Nygård",
    "Solheim",
    "Aas",
    "Fjeld",
]
STREETS = (
    "Storgata",
    "Kirkeveien",
    "Skolegata",
    "Fjordveien",
    "Bakkeveien",
    "Solbakken",
    "Granveien",
    "Bjørkeveien",
    "Havnegata",
    "Strandveien",
    "Lyngveien",
    "Furuveien",
    "Sjøgata",
    "Prestegårdsveien",
    "Åsveien",
    "Elvegata",
)
CITY = "Fjordvik"
MUNICIPALITY = "Fjordvik kommune"
POSTAL_CODES = ("6690", "6691", "6693", "6694", "6697")
PRACTICES = (
    "Sentrum legesenter",
    "Havna legekontor",
    "Åsen legesenter",
    "Elvebakken fastlegekontor",
)
GPS_PER_PRACTICE = 2


# ---- the data set ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DemoEpisode:
    """A simulated deterioration: values move towards yellow/red and back."""

    start: date
    days: int


@dataclass(frozen=True, slots=True)
class DemoPatient:
    key: str
    """Stable key within the data set, e.g. ``patient-007``."""
    resource_id: str
    fnr: str
    name: str
    condition: Condition
    gp_role_id: str
    """PractitionerRole id of the patient's fastlege."""
    episodes: tuple[DemoEpisode, ...]
    devices: tuple[DeviceRef, ...]


@dataclass(slots=True)
class DemoDataSet:
    resources: list[dict[str, Any]]
    """FHIR R4 resources, each referenced resource before the resources that reference it."""
    measurements: list[Measurement]
    """In time order."""
    patients: list[DemoPatient] = field(default_factory=list)

    def of_type(self, resource_type: str) -> list[dict[str, Any]]:
        return [r for r in self.resources if r["resourceType"] == resource_type]


def generate_demo(
    *, patients: int = 50, days: int = 90, end: datetime, seed: int = 42
) -> DemoDataSet:
    """The demo data set: the address book and ``days`` days of home measurements up to ``end``.

    ``end`` must be timezone-aware. Deterministic for a given ``seed``, ``patients``, ``days``
    and ``end``.
    """
    if end.tzinfo is None or end.utcoffset() is None:
        raise ValueError("end must be a timezone-aware datetime")
    if patients < 1 or days < 1:
        raise ValueError("patients and days must be positive")
    book = _AddressBook(seed)
    resources = book.resources()
    demo_patients: list[DemoPatient] = []
    measurements: list[Measurement] = []
    end_local = end.astimezone(OSLO)
    first_day = end_local.date() - timedelta(days=days - 1)
    for index in range(patients):
        rng = random.Random(f"dho-demo:{seed}:patient:{index}")
        condition = CONDITION_MIX[index % len(CONDITION_MIX)]
        gp_role = book.gp_roles[rng.randrange(len(book.gp_roles))]
        patient, resource = _patient(seed, index, condition, gp_role, book, rng, first_day, days)
        resources.append(resource)
        demo_patients.append(patient)
        measurements.extend(_measurements(seed, patient, rng, first_day, days, end))
    measurements.sort(key=lambda m: (m.effective, m.location))
    return DemoDataSet(resources, measurements, demo_patients)


def _id(seed: int, key: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{seed}:{key}"))


def _meta(profile: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"tag": [dict(DEMO_TAG)]}
    if profile:
        meta["profile"] = [NO_BASIS + profile]
    return meta


def _ref(resource: dict[str, Any]) -> dict[str, Any]:
    ref = {"reference": f"{resource['resourceType']}/{resource['id']}"}
    name = resource.get("name")
    if isinstance(name, str):
        ref["display"] = name
    return ref


def _address(rng: random.Random) -> dict[str, Any]:
    return {
        "use": "home",
        "type": "physical",
        "line": [f"{rng.choice(STREETS)} {rng.randint(1, 60)}"],
        "postalCode": rng.choice(POSTAL_CODES),
        "city": CITY,
        "district": MUNICIPALITY,
        "country": "NO",
    }


class _AddressBook:
    """Municipality, follow-up centre, hospital, GP practices, GPs; their FHIR resources."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.rng = random.Random(f"dho-demo:{seed}:addressbook")
        self._herids: set[str] = set()
        self._orgnrs: set[str] = set()
        self._resources: list[dict[str, Any]] = []
        self.municipality = self._organization("municipality", MUNICIPALITY, "Kommune")
        self.followup_centre = self._organization(
            "followup-centre",
            "Oppfølgingssenteret",
            "Oppfølgingssenter (digital hjemmeoppfølging)",
            part_of=self.municipality,
        )
        self.hospital = self._organization("hospital", "Fjordvik sykehus HF", "Helseforetak")
        self._endpoint("hospital", self.hospital, "hospital")
        self._endpoint("followup-centre", self.followup_centre, "followup")
        self.gp_roles: list[dict[str, Any]] = []
        for p, practice_name in enumerate(PRACTICES):
            practice = self._organization(f"practice-{p}", practice_name, "Legekontor")
            endpoint = self._endpoint(f"practice-{p}", practice, "gp")
            for g in range(GPS_PER_PRACTICE):
                self.gp_roles.append(self._gp(f"gp-{p}-{g}", practice, endpoint))

    def resources(self) -> list[dict[str, Any]]:
        return list(self._resources)

    def _unique(self, taken: set[str], make: Callable[[random.Random], str]) -> str:
        while True:
            value = make(self.rng)
            if value not in taken:
                taken.add(value)
                return value

    def _organization(
        self, key: str, name: str, kind: str, part_of: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        org: dict[str, Any] = {
            "resourceType": "Organization",
            "id": _id(self.seed, f"organization:{key}"),
            "meta": _meta("Organization"),
            "identifier": [
                {"system": ORGNR_OID, "value": self._unique(self._orgnrs, generate_orgnr)},
                {"system": HERID_OID, "value": self._unique(self._herids, generate_herid)},
            ],
            "active": True,
            "type": [{"text": kind}],
            "name": name,
            "address": [{**_address(self.rng), "use": "work"}],
        }
        if part_of is not None:
            org["partOf"] = _ref(part_of)
        self._resources.append(org)
        return org

    def _endpoint(self, key: str, org: dict[str, Any], folder: str) -> dict[str, Any]:
        """A file-drop Endpoint managed by ``org`` (only the Endpoint points to the org: no cycle)."""
        herid = next(i["value"] for i in org["identifier"] if i["system"] == HERID_OID)
        endpoint = {
            "resourceType": "Endpoint",
            "id": _id(self.seed, f"endpoint:{key}"),
            "meta": _meta("Endpoint"),
            "status": "active",
            "connectionType": {
                "system": TRANSPORT_SYSTEM,
                "code": "file-drop",
                "display": "File drop folder",
            },
            "name": f"{org['name']} (filmottak)",
            "managingOrganization": _ref(org),
            "payloadType": [{"text": "PLO/Dialogmelding"}],
            "payloadMimeType": ["application/xml"],
            "address": f"file:///tmp/dho-interop/{folder}-{herid}",
        }
        self._resources.append(endpoint)
        return endpoint

    def _gp(self, key: str, practice: dict[str, Any], endpoint: dict[str, Any]) -> dict[str, Any]:
        female = self.rng.random() < 0.5
        given = self.rng.choice(FEMALE_NAMES if female else MALE_NAMES)
        family = self.rng.choice(FAMILY_NAMES)
        practitioner = {
            "resourceType": "Practitioner",
            "id": _id(self.seed, f"practitioner:{key}"),
            "meta": _meta("Practitioner"),
            "identifier": [{"system": HPR_OID, "value": generate_hpr(self.rng)}],
            "active": True,
            "name": [{"use": "official", "family": family, "given": [given]}],
            "gender": "female" if female else "male",
        }
        role = {
            "resourceType": "PractitionerRole",
            "id": _id(self.seed, f"practitionerrole:{key}"),
            "meta": _meta("PractitionerRole"),
            "identifier": [
                {"system": HERID_OID, "value": self._unique(self._herids, generate_herid)}
            ],
            "active": True,
            "practitioner": {
                "reference": f"Practitioner/{practitioner['id']}",
                "display": f"{given} {family}",
            },
            "organization": _ref(practice),
            "code": [
                {
                    "coding": [
                        {"system": SNOMED, "code": "62247001", "display": "General practitioner"}
                    ],
                    "text": "Fastlege",
                }
            ],
            "endpoint": [{"reference": f"Endpoint/{endpoint['id']}"}],
        }
        self._resources.extend((practitioner, role))
        return role


def _patient(
    seed: int,
    index: int,
    condition: Condition,
    gp_role: dict[str, Any],
    book: _AddressBook,
    rng: random.Random,
    first_day: date,
    days: int,
) -> tuple[DemoPatient, dict[str, Any]]:
    key = f"patient-{index:03d}"
    female = rng.random() < 0.5
    age = max(40, min(95, round(rng.gauss(72, 10))))
    born = first_day - timedelta(days=age * 365 + rng.randrange(365))
    fnr = generate_fnr(born, rng=rng, synthetic=True, gender="female" if female else "male")
    given = rng.choice(FEMALE_NAMES if female else MALE_NAMES)
    family = rng.choice(FAMILY_NAMES)
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": _id(seed, f"patient:{index}"),
        "meta": _meta("Patient"),
        "identifier": [{"use": "official", "system": FNR_OID, "value": fnr}],
        "active": True,
        "name": [{"use": "official", "family": family, "given": [given]}],
        "gender": "female" if female else "male",
        "birthDate": born.isoformat(),
        "address": [_address(rng)],
        "generalPractitioner": [
            {
                "reference": f"PractitionerRole/{gp_role['id']}",
                "display": gp_role["practitioner"]["display"],
            }
        ],
        "managingOrganization": _ref(book.followup_centre),
    }
    profile = PROFILES[condition]
    episodes = []
    for _ in range(rng.choice(profile.episodes)):
        length = rng.randint(*profile.episode_days)
        start = first_day + timedelta(days=rng.randrange(max(1, days - 2)))
        episodes.append(DemoEpisode(start, length))
    devices = tuple(
        _device(seed, index, DEVICES[name], rng)
        for name in sorted({r.device for r in profile.morning + profile.evening})
    )
    patient = DemoPatient(
        key=key,
        resource_id=resource["id"],
        fnr=fnr,
        name=f"{given} {family}",
        condition=condition,
        gp_role_id=gp_role["id"],
        episodes=tuple(sorted(episodes, key=lambda e: e.start)),
        devices=devices,
    )
    return patient, resource


def _device(seed: int, index: int, model: DeviceModel, rng: random.Random) -> DeviceRef:
    eui64 = "".join(rng.choice("0123456789ABCDEF") for _ in range(16))
    serial = f"{model.model}-{seed % 1000:03d}{index:03d}{rng.randrange(10_000):04d}"
    return DeviceRef(
        identifier_system=IEEE_EUI64_SYSTEM,
        identifier_value=eui64,
        manufacturer=model.manufacturer,
        model=model.model,
        serial=serial,
        type=model.type,
        display=f"{model.manufacturer} {model.model}",
    )


# ---- measurements ------------------------------------------------------------------------------


@dataclass(slots=True)
class _PatientSeries:
    """One patient's draw of a :class:`Series`: baseline, drift and episode peaks."""

    spec: Series
    baseline: float
    drift: float
    peaks: list[float]


def _episode_shape(day: date, episode: DemoEpisode) -> float:
    """0 outside the episode; a rise to 1 at the middle and back (a triangle over its days)."""
    offset = (day - episode.start).days
    if offset < 0 or offset >= episode.days:
        return 0.0
    half = episode.days / 2
    return max(0.0, 1.0 - abs(offset + 0.5 - half) / half)


def _measurements(
    seed: int,
    patient: DemoPatient,
    rng: random.Random,
    first_day: date,
    days: int,
    end: datetime,
) -> Iterator[Measurement]:
    profile = PROFILES[patient.condition]
    series = {
        name: _PatientSeries(
            spec,
            rng.uniform(*spec.baseline),
            rng.uniform(*spec.drift),
            [rng.uniform(*spec.episode) for _ in patient.episodes],
        )
        for name, spec in profile.series.items()
    }
    devices = {d.model: d for d in patient.devices}
    adherence = rng.uniform(*ADHERENCE)
    for n in range(days):
        day = first_day + timedelta(days=n)
        if rng.random() > adherence:
            continue  # missed day
        sessions = [("am", MORNING, profile.morning)]
        if rng.random() > EVENING_SKIP:
            sessions.append(("pm", EVENING, profile.evening))
        for slot, window, readings in sessions:
            when = _session_time(day, window, rng)
            if when > end:
                continue
            values = {
                name: _value(s, day, n / max(1, days - 1), slot == "pm", patient.episodes, rng)
                for name, s in series.items()
            }
            for seq, reading in enumerate(readings):
                device = devices[DEVICES[reading.device].model]
                yield _measurement(seed, patient, day, slot, reading, values, device, when, seq)


def _session_time(day: date, window: tuple[time, time], rng: random.Random) -> datetime:
    start = window[0].hour * 60 + window[0].minute
    stop = window[1].hour * 60 + window[1].minute
    minute = rng.randint(start, stop)
    second = rng.randrange(60)
    return datetime(day.year, day.month, day.day, minute // 60, minute % 60, second, tzinfo=OSLO)


def _value(
    s: _PatientSeries,
    day: date,
    progress: float,
    evening: bool,
    episodes: tuple[DemoEpisode, ...],
    rng: random.Random,
) -> float:
    spec = s.spec
    value = s.baseline + s.drift * progress + rng.gauss(0, spec.noise)
    if evening:
        value += spec.evening
    if day.weekday() >= 5:
        value += spec.weekend
    for peak, episode in zip(s.peaks, episodes, strict=True):
        value += peak * _episode_shape(day, episode)
    if spec.spike_chance and rng.random() < spec.spike_chance:
        value += rng.uniform(*spec.spike)
    return value


def _rounded(what: str, value: float) -> Decimal:
    q = QUANTITIES[what]
    clamped = min(q.high, max(q.low, value))
    return Decimal(str(round(clamped, q.decimals))) if q.decimals else Decimal(round(clamped))


def _measurement(
    seed: int,
    patient: DemoPatient,
    day: date,
    slot: str,
    reading: Reading,
    values: dict[str, float],
    device: DeviceRef,
    when: datetime,
    seq: int,
) -> Measurement:
    # readings of one session follow each other by a few seconds
    effective = when + timedelta(seconds=40 * seq)
    stable = f"s{seed}-{patient.key}-{day:%Y%m%d}-{slot}-{reading.what}-{reading.device}"
    common: dict[str, Any] = {
        "effective": effective,
        "patient": PatientRef(FNR_OID, patient.fnr),
        "location": f"demo/{stable}",
        "device": device,
        "source_id": (DEMO_SOURCE_SYSTEM, stable),
        "attributes": {"session": "morning" if slot == "am" else "evening"},
    }
    if reading.what == "bp":
        systolic = _rounded("sys", values["sys"])
        diastolic = _rounded("dia", min(values["dia"], values["sys"] - 20))
        return Measurement(
            code=BP_PANEL,
            value=None,
            unit=None,
            extra_codes=(BP_PANEL_MDC,),
            components=(
                _component("sys", systolic),
                _component("dia", diastolic),
            ),
            **common,
        )
    q = QUANTITIES[reading.what]
    mdc = PULSE_FROM_CUFF_MDC if reading.what == "pulse" and reading.device == "bp" else q.mdc
    return Measurement(
        code=q.loinc,
        value=_rounded(reading.what, values[reading.what]),
        unit=q.unit,
        extra_codes=(mdc,) if mdc else (),
        **common,
    )


def _component(what: str, value: Decimal) -> Component:
    q = QUANTITIES[what]
    return Component(q.loinc, value, q.unit, extra_codes=(q.mdc,) if q.mdc else ())
