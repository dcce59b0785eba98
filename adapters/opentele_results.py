"""OpenTele completed-questionnaire uploads (part of the ``opentele`` adapter).

The format, as learned from the public OpenTele sources (Apache-2.0; read, not copied):

* ``silverbullet-dk/opentele-citizen-server`` @ ``370b42cb3c9663842f22925745ac69d2b1f0b1e6``:
  ``grails-app/conf/UrlMappings.groovy`` (``POST /rest/questionnaire/listing`` → upload),
  ``grails-app/controllers/org/opentele/server/citizen/model/QuestionnaireMobileController.groovy``
  (``upload()``: ``QuestionnaireId``, ``date``, ``output``; the patient is the logged-in
  user), ``grails-app/services/org/opentele/server/citizen/CompletedQuestionnaireService.groovy``
  (how each output variable becomes a NodeResult/Measurement, the ``#SEVERITY``/``#CANCEL``/
  ``#NOTE`` secondary variables, the questionnaire severity = the worst node severity, GREEN
  by default), ``grails-app/services/org/opentele/server/citizen/QuestionnaireOutputBuilder.groovy``
  (the variable names the app is told to fill in) and
  ``test/integration/org/opentele/server/citizen/model/QuestionnaireMobileControllerTests.groovy``.
* ``silverbullet-dk/opentele-server-core-plugin`` @ ``0b3bad26979d434dda8980db688401f2a3a1e954``:
  ``grails-app/domain/org/opentele/server/model/questionnaire/MeasurementNode.groovy`` (variable
  names), ``src/groovy/org/opentele/server/core/model/types/{Severity,DataType,MeterTypeName,
  Unit,ProteinValue,GlucoseInUrineValue}.groovy``.
* ``silverbullet-dk/opentele-client-android`` @ ``0302f8519168d66e709247f387a733b6210243bb``:
  ``questionnaire-mainapp/src/dk/silverbullet/telemed/questionnaire/output/OutputSkema.java``
  and ``.../questionnaire/expression/VariableAdapter.java`` (the JSON the app posts),
  ``.../questionnaire/node/CRPNode.java`` (CRP "under 5" is sent as 0),
  ``.../device/accuchek/BloodSugarMeasurement(s).java``.
* ``silverbullet-dk/opentele-client-html`` @ ``e6a1009d045d970875ae041a90ab0dc2c2db75e1``:
  ``app/services/restApiServices/questionnaires.js`` (``replyTo``) and
  ``app/services/parserServices/*.js``.

An upload is one JSON object::

    {"name": "KOL", "version": "1.0", "QuestionnaireId": 27, "date": "2015-03-02T08:15:00Z",
     "output": [{"name": "45.BP#SYSTOLIC", "type": "Integer", "value": 150}, ...]}

Each output variable is named ``<node id>.<VAR>[#<FIELD>][#<SECONDARY>]``: ``FIELD`` (a
question's answer: Boolean, Integer, Float, String or a radio choice), ``DECISION`` (a
branch the app evaluated), or a measurement node (``BP#SYSTOLIC|DIASTOLIC|
MEAN_ARTERIAL_PRESSURE|PULSE``, ``SAT#SATURATION|PULSE``, ``WEIGHT``, ``TEMPERATURE``, ``CRP``,
``HEMOGLOBIN``, ``URINE``/``URINE_GLUCOSE`` (ordinals), ``BS#BLOODSUGARMEASUREMENTS`` (the
meter's readings, each with its own time), ``LF#FEV1|FEV6|FEV1_FEV6_RATIO|FEF2575``,
``CTG``, ``CGM``), with ``#DEVICE_ID`` and the secondary ``#SEVERITY`` (GREEN/YELLOW/RED from
the questionnaire flow), ``#CANCEL`` (the patient skipped the measurement) and ``#NOTE``.
Variables without a value are ignored, as OpenTele's server does.

What this module makes of it:

* measurement nodes → :class:`Measurement` in ``urn:dho-interop:code:opentele`` (codes.yaml
  maps them), at the upload's ``date`` (OpenTele's own rule; blood-sugar readings keep their
  own times); a skipped measurement is reported, not stored; CTG and CGM series, unknown node
  types and malformed variables are reported with their ``$.output[i]`` location;
* one :class:`QuestionnaireAnswers` per upload: one item per node (linkId = node id), the
  questionnaire as ``urn:dho-interop:opentele:<source>:questionnaire:<id>|<version>``, authored
  at ``date``, and the flow's severity as a zone (GREEN/YELLOW/RED → green/yellow/red; OpenTele's
  ABOVE/BELOW_THRESHOLD → red) on the response and on each item, also reported in the ingest
  report (``questionnaire-severity``);
* the patient: the upload carries none (OpenTele's server uses the logged-in user), so it comes
  from the body's ``PatientId`` (the Android app's field) or the ``user`` option (the OpenTele
  user name) — both vendor user ids resolved through the patient-link table — or the ``cpr``
  option (``urn:oid:1.2.208.176.1.2``, linked the same way) or the out-of-band ``meta.patient``;
  never guessed. Without one the upload is refused.
* stable keys: the response and each node's measurements are keyed on (source, patient,
  questionnaire id, upload date, node, variable), so a re-sent upload creates nothing; blood-
  sugar readings on their content (patient, code, time, meter), since the app re-sends a
  meter's memory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

from adapters.base import (
    DIAG_INVALID,
    DIAG_MISSING_PATIENT,
    DIAG_MISSING_TIME,
    DIAG_MISSING_VALUE,
    DIAG_NOT_A_MEASUREMENT,
    DIAG_PARSE_ERROR,
    DIAG_UNSUPPORTED,
    AdapterError,
    AdapterResult,
    Answer,
    Code,
    Component,
    DeviceRef,
    Diagnostic,
    IngestMeta,
    Measurement,
    PatientRef,
    QuestionnaireAnswers,
    vendor_user_system,
)
from adapters.timeutil import parse_iso

CODE_SYSTEM = "urn:dho-interop:code:opentele"
CPR_SYSTEM = "urn:oid:1.2.208.176.1.2"
UPLOAD_SYSTEM = "urn:dho-interop:opentele:completed-questionnaire"
NODE_RESULT_SYSTEM = "urn:dho-interop:opentele:node-result"
DEVICE_SYSTEM = "urn:dho-interop:device:opentele"
DIAG_SEVERITY = "questionnaire-severity"

# OpenTele's Severity enum, in its own order (worse is later); the zone each one means here.
SEVERITY_RANK = {
    "NONE": 0,
    "GREEN": 1,
    "ORANGE": 2,
    "BLUE": 3,
    "YELLOW": 4,
    "RED": 5,
    "BELOW_THRESHOLD": 6,
    "ABOVE_THRESHOLD": 7,
}
ZONE = {
    "GREEN": "green",
    "YELLOW": "yellow",
    "RED": "red",
    "BELOW_THRESHOLD": "red",
    "ABOVE_THRESHOLD": "red",
}
ZONE_RANK = {"green": 0, "yellow": 1, "red": 2}
SECONDARY = ("SEVERITY", "CANCEL", "NOTE")

# node VAR → (label, {field: (code, unit, display)}); "" is the field of a single-value node
NUMERIC_NODES: dict[str, tuple[str, dict[str, tuple[str, str, str]]]] = {
    "BP": (
        "Blood pressure and pulse",
        {
            "SYSTOLIC": ("SYSTOLIC", "mm[Hg]", "Systolic blood pressure"),
            "DIASTOLIC": ("DIASTOLIC", "mm[Hg]", "Diastolic blood pressure"),
            "MEAN_ARTERIAL_PRESSURE": (
                "MEAN_ARTERIAL_PRESSURE",
                "mm[Hg]",
                "Mean arterial pressure",
            ),
            "PULSE": ("PULSE", "/min", "Pulse"),
        },
    ),
    "SAT": (
        "Oxygen saturation",
        {
            "SATURATION": ("SATURATION", "%", "Oxygen saturation"),
            "PULSE": ("PULSE", "/min", "Pulse"),
        },
    ),
    "WEIGHT": ("Weight", {"": ("WEIGHT", "kg", "Body weight")}),
    "TEMPERATURE": ("Temperature", {"": ("TEMPERATURE", "Cel", "Body temperature")}),
    "CRP": ("C-reactive protein", {"": ("CRP", "mg/L", "C-reactive protein")}),
    "HEMOGLOBIN": ("Haemoglobin", {"": ("HEMOGLOBIN", "g/dL", "Haemoglobin")}),
    "LF": (
        "Lung function",
        {
            "FEV1": ("FEV1", "L", "FEV1"),
            "FEV6": ("FEV6", "L", "FEV6"),
            "FEV1_FEV6_RATIO": ("FEV1_FEV6_RATIO", "1", "FEV1/FEV6"),
            "FEF2575": ("FEF2575", "L/s", "FEF25-75"),
        },
    ),
}
BP_PARTS = ("SYSTOLIC", "DIASTOLIC", "MEAN_ARTERIAL_PRESSURE")
LF_CONTEXT = ("FEV_GOOD_TEST", "FEV_SOFTWARE_VERSION")
ORDINAL_NODES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "URINE": ("Protein in urine", "URINE", ("Neg.", "+/-", "+1", "+2", "+3", "+4")),
    "URINE_GLUCOSE": ("Glucose in urine", "URINE_GLUCOSE", ("Neg.", "+1", "+2", "+3", "+4")),
}
SERIES_NODES = {
    "CTG": "CTG (fetal heart rate and contraction series)",
    "CGM": "continuous glucose monitoring events",
}
BLOOD_SUGAR = "BS"
ANSWER_NODES = {"FIELD": None, "DECISION": "Decision the app evaluated"}


def is_upload(doc: Any) -> bool:
    """Is this JSON value an OpenTele completed-questionnaire upload?"""
    return (
        isinstance(doc, dict)
        and "output" in doc
        and ("QuestionnaireId" in doc or "date" in doc)
        and "nodes" not in doc
    )


@dataclass(slots=True)
class _Var:
    index: int
    name: str
    type: str | None
    value: Any
    field: str
    """``SYSTOLIC`` in ``45.BP#SYSTOLIC``; empty for ``46.FIELD``."""
    secondary: str | None
    """``SEVERITY``/``CANCEL``/``NOTE``, or ``DEVICE_ID``."""


@dataclass(slots=True)
class _Node:
    node_id: str
    kind: str
    variables: list[_Var] = field(default_factory=list)

    @property
    def first(self) -> int:
        return self.variables[0].index


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        try:
            d = Decimal(str(value))
        except InvalidOperation:
            return None
        return d if d.is_finite() else None
    if isinstance(value, str):
        try:
            d = Decimal(value.strip().replace(",", "."))
        except InvalidOperation:
            return None
        return d if d.is_finite() else None
    return None


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _fmt(d: Decimal) -> str:
    return format(d.normalize(), "f")


class _Upload:
    """One upload being translated; collects into ``result``."""

    def __init__(self, doc: Mapping[str, Any], meta: IngestMeta, where: str) -> None:
        self.doc = doc
        self.meta = meta
        self.where = where
        self.result = AdapterResult()

    def loc(self, suffix: str) -> str:
        return f"{self.where}{suffix}"

    def diag(self, severity: Any, code: str, message: str, suffix: str) -> None:
        self.result.diagnostics.append(Diagnostic(severity, code, message, self.loc(suffix)))

    # ---- the envelope ----------------------------------------------------------------------
    def patient(self) -> PatientRef:
        body_id = self.doc.get("PatientId")
        if body_id not in (None, ""):
            if not isinstance(body_id, str | int) or isinstance(body_id, bool):
                raise AdapterError(
                    "PatientId is not a string or number", DIAG_INVALID, self.loc(".PatientId")
                )
            return PatientRef(vendor_user_system(self.meta.source), str(body_id).strip())
        user = self.meta.options.get("user")
        if user:
            return PatientRef(vendor_user_system(self.meta.source), user.strip())
        cpr = self.meta.options.get("cpr")
        if cpr:
            return PatientRef(CPR_SYSTEM, cpr.strip())
        if self.meta.patient is not None:
            return self.meta.patient
        raise AdapterError(
            "the upload names no patient (OpenTele takes it from the logged-in user): send "
            "the OpenTele user name as the 'user' option, the CPR number as 'cpr', or the "
            "patient's fødselsnummer as 'patient'",
            DIAG_MISSING_PATIENT,
            self.loc(".PatientId"),
        )

    def questionnaire_id(self) -> str:
        qid = self.doc.get("QuestionnaireId")
        if isinstance(qid, bool) or not isinstance(qid, int | str) or str(qid).strip() == "":
            raise AdapterError(
                f"QuestionnaireId {qid!r} is missing or not an id",
                DIAG_INVALID,
                self.loc(".QuestionnaireId"),
            )
        return str(qid).strip()

    def when(self) -> tuple[datetime, bool]:
        raw = self.doc.get("date")
        if not isinstance(raw, str):
            raise AdapterError(
                f"date {raw!r} is missing or not an ISO 8601 date-time",
                DIAG_MISSING_TIME,
                self.loc(".date"),
            )
        try:
            parsed = parse_iso(raw, self.meta.default_timezone)
        except ValueError as exc:
            raise AdapterError(str(exc), DIAG_MISSING_TIME, self.loc(".date")) from None
        return parsed.value, parsed.zone_assumed

    # ---- the output variables --------------------------------------------------------------
    def nodes(self) -> list[_Node]:
        output = self.doc.get("output")
        if not isinstance(output, list):
            raise AdapterError(
                "output is not a list of variables", DIAG_INVALID, self.loc(".output")
            )
        if not output:
            raise AdapterError(
                "the upload has no output variables", DIAG_MISSING_VALUE, self.loc(".output")
            )
        nodes: dict[tuple[str, str], _Node] = {}
        empty = 0
        for i, entry in enumerate(output):
            at = f".output[{i}]"
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                self.diag("error", DIAG_INVALID, "output variable is not an object with a name", at)
                continue
            name = entry["name"]
            node_id, dot, rest = name.partition(".")
            tokens = [t for t in rest.split("#") if t]
            if not (dot and node_id.isascii() and node_id.isdigit() and tokens):
                self.diag(
                    "error",
                    DIAG_INVALID,
                    f"variable {name!r} is not named <node id>.<VARIABLE> as OpenTele names them",
                    at,
                )
                continue
            if entry.get("value") is None:
                empty += 1
                continue
            kind, sub = tokens[0], tokens[1:]
            secondary = None
            if sub and sub[-1].upper() in SECONDARY + ("DEVICE_ID",):
                secondary = sub[-1].upper()
                sub = sub[:-1]
            var = _Var(i, name, entry.get("type"), entry["value"], "#".join(sub), secondary)
            nodes.setdefault((node_id, kind), _Node(node_id, kind)).variables.append(var)
        if empty:
            self.diag(
                "information",
                DIAG_MISSING_VALUE,
                f"{empty} output variable(s) without a value were ignored (as OpenTele does)",
                ".output",
            )
        return sorted(nodes.values(), key=lambda n: (int(n.node_id), n.kind, n.first))

    def translate(self) -> AdapterResult:
        qid = self.questionnaire_id()
        authored, assumed = self.when()
        patient = self.patient()
        version = self.doc.get("version")
        version = str(version).strip() if isinstance(version, str | int | float) else ""
        title = self.doc.get("name") if isinstance(self.doc.get("name"), str) else None
        nodes = self.nodes()
        key = hashlib.sha256(
            "\x1f".join(
                [
                    self.meta.source,
                    patient.system,
                    patient.value,
                    qid,
                    authored.isoformat(),
                ]
            ).encode()
        ).hexdigest()
        self.result.items_seen = len(nodes)
        answers: list[Answer] = []
        severities: list[tuple[str, str, int]] = []  # (OpenTele severity, node label, index)
        for node in nodes:
            severity = self.node_severity(node)
            if severity is not None:
                severities.append((severity, f"node {node.node_id} {node.kind}", node.first))
            zone = ZONE.get(severity or "")
            answers.extend(self.node(node, patient, authored, assumed, key, zone))
        overall = self.overall(severities, title or qid)
        scope = quote(self.meta.source, safe="")
        canonical = f"urn:dho-interop:opentele:{scope}:questionnaire:{quote(qid, safe='')}"
        if version:
            canonical += f"|{version}"
        if answers:
            self.result.questionnaires.append(
                QuestionnaireAnswers(
                    questionnaire=canonical,
                    patient=patient,
                    authored=authored,
                    answers=tuple(answers),
                    location=self.where,
                    source_id=(UPLOAD_SYSTEM, key),
                    title=title,
                    severity=overall,
                    timezone_assumed=assumed,
                )
            )
        return self.result

    def node_severity(self, node: _Node) -> str | None:
        worst: str | None = None
        for v in node.variables:
            if v.secondary != "SEVERITY":
                continue
            sev = str(v.value).strip().upper()
            if sev not in SEVERITY_RANK:
                self.diag(
                    "warning",
                    DIAG_INVALID,
                    f"node {node.node_id}: severity {v.value!r} is not an OpenTele severity",
                    f".output[{v.index}]",
                )
                continue
            if worst is None or SEVERITY_RANK[sev] > SEVERITY_RANK[worst]:
                worst = sev
        return worst

    def overall(self, severities: list[tuple[str, str, int]], title: str) -> str:
        """The questionnaire's zone: the worst node zone; GREEN (OpenTele's default) if none."""
        zoned = [(ZONE[s], s, label) for s, label, _ in severities if s in ZONE]
        for s, label, index in severities:
            if s not in ZONE:
                self.diag(
                    "warning",
                    DIAG_UNSUPPORTED,
                    f"{label}: OpenTele severity {s} has no zone here; not counted",
                    f".output[{index}]",
                )
        if not zoned:
            self.diag(
                "information",
                DIAG_SEVERITY,
                f"OpenTele questionnaire {title!r}: no node carried a GREEN/YELLOW/RED "
                "severity; green (OpenTele's default)",
                "",
            )
            return "green"
        zone = max(zoned, key=lambda z: ZONE_RANK[z[0]])[0]
        why = ", ".join(f"{label} {s}" for z, s, label in zoned if z == zone)
        self.diag(
            "information" if zone == "green" else "warning",
            DIAG_SEVERITY,
            f"OpenTele questionnaire {title!r} completed with severity {zone.upper()} ({why})",
            "",
        )
        return zone

    # ---- one node ----------------------------------------------------------------------------
    def node(
        self,
        node: _Node,
        patient: PatientRef,
        when: datetime,
        assumed: bool,
        key: str,
        zone: str | None,
    ) -> list[Answer]:
        at = f".output[{node.first}]"
        notes = [str(v.value) for v in node.variables if v.secondary == "NOTE" and v.value != ""]
        cancelled = any(v.secondary == "CANCEL" and _truthy(v.value) for v in node.variables)
        primaries = [v for v in node.variables if v.secondary is None]
        devices = [v for v in node.variables if v.secondary == "DEVICE_ID"]
        device = None
        if devices and str(devices[0].value).strip():
            serial = str(devices[0].value).strip()
            device = DeviceRef(DEVICE_SYSTEM, serial, serial=serial)
        if node.kind in ANSWER_NODES:
            return self.answer(node, primaries, notes, zone)
        if node.kind in NUMERIC_NODES or node.kind in ORDINAL_NODES or node.kind == BLOOD_SUGAR:
            label = (
                NUMERIC_NODES[node.kind][0]
                if node.kind in NUMERIC_NODES
                else ORDINAL_NODES[node.kind][0]
                if node.kind in ORDINAL_NODES
                else "Blood sugar"
            )
            if cancelled:
                self.diag(
                    "information",
                    DIAG_MISSING_VALUE,
                    f"node {node.node_id} {node.kind}: the patient skipped the measurement",
                    at,
                )
                return [Answer(node.node_id, f"{label} (skipped)", None, zone)]
            ctx = _Ctx(node, patient, when, assumed, key, zone, device, "; ".join(notes) or None)
            if node.kind == BLOOD_SUGAR:
                summary = self.blood_sugar(ctx, primaries)
            elif node.kind in ORDINAL_NODES:
                summary = self.ordinal(ctx, primaries)
            else:
                summary = self.numeric(ctx, primaries)
            return [Answer(node.node_id, f"{label} (measurement)", summary or None, zone)]
        if node.kind in SERIES_NODES:
            message = (
                f"node {node.node_id}: {SERIES_NODES[node.kind]} are not supported; "
                f"its {len(node.variables)} variable(s) were not stored"
            )
        else:
            message = (
                f"node {node.node_id}: OpenTele node type {node.kind!r} is not known; its "
                f"{len(node.variables)} variable(s) were not stored"
            )
        self.diag("error", DIAG_UNSUPPORTED, message, at)
        return [Answer(node.node_id, f"{node.kind} (not stored)", None, zone)]

    def answer(
        self, node: _Node, primaries: list[_Var], notes: list[str], zone: str | None
    ) -> list[Answer]:
        text = ANSWER_NODES[node.kind]
        value = self.answer_value(node, primaries[0]) if primaries else None
        out = [Answer(node.node_id, text, value, zone)]
        for v in primaries[1:]:
            self.diag(
                "warning",
                DIAG_UNSUPPORTED,
                f"node {node.node_id}: second answer variable {v.name!r} left out",
                f".output[{v.index}]",
            )
        if notes:
            out.append(Answer(f"{node.node_id}.note", "Note", "; ".join(notes)))
        return out

    def answer_value(self, node: _Node, v: _Var) -> str | Decimal | bool | int | None:
        declared = (v.type or "").strip()
        value = v.value
        bad = False
        out: str | Decimal | bool | int | None = None
        if declared == "Boolean" or node.kind == "DECISION":
            if isinstance(value, bool):
                out = value
            elif isinstance(value, str) and value.strip().lower() in ("true", "false"):
                out = value.strip().lower() == "true"
            else:
                bad = True
        elif declared == "Integer":
            d = _number(value)
            if d is not None and d == d.to_integral_value():
                out = int(d)
            else:
                bad = True
        elif declared == "Float":
            d = _number(value)
            out = d
            bad = d is None
        elif isinstance(value, bool | int):
            out = value
        elif isinstance(value, float):
            out = _number(value)
        elif isinstance(value, str):
            out = value if value.strip() else None
        else:
            bad = True
        if bad:
            self.diag(
                "error",
                DIAG_INVALID,
                f"node {node.node_id}: answer {value!r} is not a valid {declared or 'value'}",
                f".output[{v.index}]",
            )
            return None
        return out

    # ---- measurement nodes ---------------------------------------------------------------------
    def measurement(
        self,
        ctx: _Ctx,
        code: str,
        display: str,
        value: Decimal | None,
        unit: str | None,
        suffix: str,
        at: int,
        *,
        components: tuple[Component, ...] = (),
        value_string: str | None = None,
        note: str | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> Measurement:
        """A node's measurement at the upload's time, keyed on the upload and node."""
        attrs: dict[str, Any] = {"opentele.node": ctx.node.node_id}
        if ctx.zone:
            attrs["opentele.severity"] = ctx.zone
        attrs.update(attributes or {})
        return Measurement(
            Code(CODE_SYSTEM, code, display),
            value,
            unit,
            ctx.when,
            ctx.patient,
            self.loc(f".output[{at}]"),
            components=components,
            device=ctx.device,
            source_id=(NODE_RESULT_SYSTEM, f"{ctx.key}/{ctx.node.node_id}/{suffix}"),
            timezone_assumed=ctx.assumed,
            value_string=value_string,
            note=note if note is not None else ctx.note,
            attributes=attrs,
        )

    def numeric(self, ctx: _Ctx, primaries: list[_Var]) -> str:
        label, fields = NUMERIC_NODES[ctx.node.kind]
        values: dict[str, tuple[Decimal, _Var]] = {}
        context: dict[str, Any] = {}
        for v in primaries:
            if ctx.node.kind == "LF" and v.field in LF_CONTEXT:
                context[f"opentele.{v.field}"] = v.value
                continue
            if v.field not in fields:
                self.diag(
                    "warning",
                    DIAG_UNSUPPORTED,
                    f"node {ctx.node.node_id}: variable {v.name!r} is not a {label.lower()} value",
                    f".output[{v.index}]",
                )
                continue
            d = _number(v.value)
            if d is None:
                self.diag(
                    "error",
                    DIAG_INVALID,
                    f"node {ctx.node.node_id}: {v.name} = {v.value!r} is not a number",
                    f".output[{v.index}]",
                )
                continue
            values[v.field] = (d, v)
        parts: list[str] = []
        if ctx.node.kind == "BP":
            present = [f for f in BP_PARTS if f in values]
            if present:
                comps = tuple(
                    Component(Code(CODE_SYSTEM, fields[f][0], fields[f][2]), values[f][0], "mm[Hg]")
                    for f in present
                )
                self.result.measurements.append(
                    self.measurement(
                        ctx,
                        "BLOOD_PRESSURE",
                        "Blood pressure",
                        None,
                        None,
                        "BP",
                        values[present[0]][1].index,
                        components=comps,
                    )
                )
                parts.append(
                    "/".join(_fmt(values[f][0]) for f in present if f != "MEAN_ARTERIAL_PRESSURE")
                    + " mm[Hg]"
                )
            rest = ["PULSE"] if "PULSE" in values else []
        else:
            rest = [f for f in fields if f in values]
        for f in rest:
            code, unit, display = fields[f]
            d, v = values[f]
            note = ctx.note
            if code == "CRP" and d == 0:
                zero = "reported as 0: under 5 mg/L (the OpenTele apps send 0 for '<5')"
                note = f"{note}; {zero}" if note else zero
            self.result.measurements.append(
                self.measurement(
                    ctx, code, display, d, unit, f or code, v.index, note=note, attributes=context
                )
            )
            parts.append(f"{display} {_fmt(d)} {unit}" if f else f"{_fmt(d)} {unit}")
        return ", ".join(parts)

    def ordinal(self, ctx: _Ctx, primaries: list[_Var]) -> str:
        label, code, levels = ORDINAL_NODES[ctx.node.kind]
        parts = []
        for v in primaries:
            d = _number(v.value)
            if d is None or d != d.to_integral_value() or not 0 <= int(d) < len(levels):
                self.diag(
                    "error",
                    DIAG_INVALID,
                    f"node {ctx.node.node_id}: {v.value!r} is not one of OpenTele's "
                    f"{label.lower()} levels 0..{len(levels) - 1}",
                    f".output[{v.index}]",
                )
                continue
            level = levels[int(d)]
            self.result.measurements.append(
                self.measurement(ctx, code, label, None, None, code, v.index, value_string=level)
            )
            parts.append(level)
        return ", ".join(parts)

    def blood_sugar(self, ctx: _Ctx, primaries: list[_Var]) -> str:
        stored = 0
        for v in primaries:
            body = v.value
            readings = body.get("measurements") if isinstance(body, dict) else None
            if not isinstance(readings, list):
                self.diag(
                    "error",
                    DIAG_INVALID,
                    f"node {ctx.node.node_id}: {v.name} holds no list of measurements",
                    f".output[{v.index}].value",
                )
                continue
            serial = body.get("serialNumber")
            device = (
                DeviceRef(DEVICE_SYSTEM, str(serial), serial=str(serial)) if serial else ctx.device
            )
            for j, reading in enumerate(readings):
                at = f".output[{v.index}].value.measurements[{j}]"
                if not isinstance(reading, dict):
                    self.diag("error", DIAG_INVALID, "reading is not an object", at)
                    continue
                if _truthy(reading.get("isControlMeasurement")):
                    self.diag(
                        "information",
                        DIAG_NOT_A_MEASUREMENT,
                        "control-solution test of the meter, not the patient's blood sugar",
                        at,
                    )
                    continue
                d = _number(reading.get("result"))
                if d is None:
                    self.diag(
                        "error",
                        DIAG_INVALID,
                        f"blood sugar result {reading.get('result')!r} is not a number",
                        at,
                    )
                    continue
                try:
                    t = parse_iso(
                        str(reading.get("timeOfMeasurement") or ""), self.meta.default_timezone
                    )
                except ValueError as exc:
                    self.diag("error", DIAG_MISSING_TIME, f"blood sugar reading: {exc}", at)
                    continue
                flags = {
                    f"opentele.{k}": reading[k]
                    for k in (
                        "isBeforeMeal",
                        "isAfterMeal",
                        "hasTemperatureWarning",
                        "isOutOfBounds",
                        "otherInformation",
                    )
                    if reading.get(k) is not None
                }
                note = ctx.note
                if _truthy(reading.get("isOutOfBounds")):
                    oob = "the meter flagged this reading as outside its measuring range"
                    note = f"{note}; {oob}" if note else oob
                    self.diag("warning", DIAG_INVALID, f"blood sugar {d} mmol/L: {oob}", at)
                self.result.measurements.append(
                    Measurement(
                        Code(CODE_SYSTEM, "BLOODSUGAR", "Blood sugar"),
                        d,
                        "mmol/L",
                        t.value,
                        ctx.patient,
                        self.loc(at),
                        device=device,
                        timezone_assumed=t.zone_assumed,
                        note=note,
                        attributes={"opentele.node": ctx.node.node_id, **flags},
                    )
                )
                stored += 1
        return f"{stored} reading(s)" if stored else ""


@dataclass(frozen=True, slots=True)
class _Ctx:
    node: _Node
    patient: PatientRef
    when: datetime
    assumed: bool
    key: str
    zone: str | None
    device: DeviceRef | None
    note: str | None


def parse_uploads(doc: Any, meta: IngestMeta) -> AdapterResult:
    """One upload object, or a JSON array of them (each refused on its own)."""
    if isinstance(doc, dict):
        return _Upload(doc, meta, "$").translate()
    result = AdapterResult()
    for i, item in enumerate(doc):
        where = f"$[{i}]"
        if not is_upload(item):
            result.diagnostics.append(
                Diagnostic("error", DIAG_UNSUPPORTED, "not an OpenTele questionnaire upload", where)
            )
            result.items_seen += 1
            continue
        try:
            part = _Upload(item, meta, where).translate()
        except AdapterError as exc:
            result.diagnostics.append(
                Diagnostic("error", exc.code or DIAG_PARSE_ERROR, str(exc), exc.location)
            )
            result.items_seen += 1
            continue
        result.measurements.extend(part.measurements)
        result.questionnaires.extend(part.questionnaires)
        result.diagnostics.extend(part.diagnostics)
        result.items_seen += part.items_seen
    return result
