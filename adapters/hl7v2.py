"""HL7 v2 ORU^R01 → canonical measurements (IHE PCD-01 / Continua WAN and lab-style LOINC).

Conventions the mapping tables rely on:

* codes: OBX-3 as given: ``MDC`` → ``urn:iso:std:iso:11073:10101``, ``LN``/``LOINC`` →
  ``http://loinc.org``, ``SCT``/``SNOMED-CT`` → SNOMED CT; any other coding system is
  reported as ``urn:dho-interop:code:hl7v2:<system>``.
* units: OBX-6 with a UCUM coding system → the UCUM code; an MDC unit → ``MDC:<code>``
  (e.g. ``MDC:266016`` = mm[Hg]); otherwise the unit text as given (``mg/dl``).
* PCD-01 containment (OBX-4 ``MDS.VMD.CHAN.METRIC``): rows above metric level, time-sync and
  device attributes are device description, reported as ``not-a-measurement``; numeric metrics
  under a blood-pressure container (``150020``) become one measurement with components; the
  device's EUI-64 (OBX-18 on the MDS row) identifies the device.
* OBX-11: F/R/S/U/empty → final, C → corrected, P → preliminary, D/W → entered-in-error,
  I/X/N → no result (diagnostic).
* Patient: PID-3 repetitions with a valid fødselsnummer/D-nummer (type FNR/DNR or assigning
  authority 2.16.578.1.12.4.1.4.1/…4.2) identify the patient directly; else the first
  repetition is a vendor id resolved through the patient-link table.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from adapters.base import (
    DIAG_INVALID,
    DIAG_INVALID_IDENTIFIER,
    DIAG_MISSING_PATIENT,
    DIAG_MISSING_TIME,
    DIAG_MISSING_VALUE,
    DIAG_NOT_A_MEASUREMENT,
    DIAG_PARSE_ERROR,
    DIAG_UNSUPPORTED,
    DNR_OID,
    FNR_OID,
    LOINC,
    MDC,
    SNOMED,
    AdapterError,
    AdapterResult,
    Code,
    Comparator,
    Component,
    DeviceRef,
    Diagnostic,
    IngestMeta,
    Measurement,
    PatientRef,
    vendor_user_system,
)
from adapters.hl7v2_segments import Delimiters, Hl7SyntaxError, Segment, escape, parse
from adapters.identifiers import person_id_system
from adapters.timeutil import parse_hl7_ts

EUI64_SYSTEM = "urn:oid:1.2.840.10004.1.1.1.0.0.1.0.0.1.2680"
BP_CONTAINER = "150020"
CODE_SYSTEMS = {
    "MDC": MDC,
    "LN": LOINC,
    "LOINC": LOINC,
    "SCT": SNOMED,
    "SNOMED-CT": SNOMED,
    "SNM": SNOMED,
}
STATUS = {
    "": "final",
    "F": "final",
    "R": "final",
    "S": "final",
    "U": "final",
    "C": "corrected",
    "P": "preliminary",
    "D": "entered-in-error",
    "W": "entered-in-error",
}
NO_RESULT = {
    "I": "result pending (OBX-11 I)",
    "X": "no result could be obtained (OBX-11 X)",
    "N": "not asked (OBX-11 N)",
}
NUMERIC_TYPES = frozenset({"NM", "SN"})
SN_COMPARATORS: dict[str, Comparator | None] = {
    "": None,
    "=": None,
    ">": ">",
    ">=": ">=",
    "<": "<",
    "<=": "<=",
}
"""SN.1: how the value relates to the number (``<>``, not equal, is no measurement)."""
FNR_AUTHORITIES = {"2.16.578.1.12.4.1.4.1": FNR_OID, "2.16.578.1.12.4.1.4.2": DNR_OID}
FNR_TYPES = {"FNR": FNR_OID, "DNR": DNR_OID}


@dataclass(frozen=True, slots=True)
class MshInfo:
    delimiters: Delimiters
    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str
    timestamp: str
    message_type: str
    control_id: str
    processing_id: str
    version: str
    raw_sending_application: str = ""
    raw_sending_facility: str = ""
    raw_receiving_application: str = ""
    raw_receiving_facility: str = ""

    @property
    def sender(self) -> str:
        """MSH-3.1|MSH-4.1: the source name a sender's local patient ids are scoped by."""
        return f"{self.sending_application}|{self.sending_facility}"

    @property
    def sender_identity(self) -> str:
        """The full sending application and facility (every component: a gateway's EUI-64 in
        MSH-3.2 tells two gateways of one vendor apart): with MSH-10 it names a message."""
        return f"{self.raw_sending_application}|{self.raw_sending_facility}"


def message_digest(data: bytes) -> str:
    """A digest of what a message says, to tell a re-send from another message that reuses
    the id (with the sender, see ``MshInfo.sender_identity``).

    "The same message" is the same bytes, except for what a sender may change when it sends a
    message again: the line ends (CR, LF or CRLF), trailing white space, empty lines, MLLP
    framing bytes, and MSH-7 (date/time of message), which senders stamp anew on a re-send.
    Everything else counts, down to one OBX value or one component of PID-3."""
    text = data.strip(b"\x0b\x1c\r\n").replace(b"\r\n", b"\r").replace(b"\n", b"\r")
    segments = [seg.rstrip() for seg in text.split(b"\r")]
    kept = []
    for seg in segments:
        if not seg:
            continue
        if seg.startswith(b"MSH") and len(seg) > 3:
            fields = seg.split(seg[3:4])
            if len(fields) > 6:
                fields[6] = b""  # MSH-7 (MSH-1 is the separator itself, so MSH-n is fields[n-1])
            seg = seg[3:4].join(fields)
        kept.append(seg)
    return hashlib.sha256(b"\r".join(kept)).hexdigest()


def split_message_header(data: bytes) -> MshInfo:
    """Read only the MSH segment (cheap; used to acknowledge before full parsing)."""
    head = data[:4096]
    try:
        segs = parse(head.split(b"\r", 1)[0] if b"\r" in head else head.split(b"\n", 1)[0])
    except Hl7SyntaxError as exc:
        raise ValueError(str(exc)) from exc
    msh = segs[0]
    mtype = msh.components(9)
    return MshInfo(
        delimiters=msh.d,
        sending_application=msh.component(3, 1),
        sending_facility=msh.component(4, 1),
        receiving_application=msh.component(5, 1),
        receiving_facility=msh.component(6, 1),
        timestamp=msh.component(7, 1),
        message_type="^".join(x for x in mtype[:2] if x),
        control_id=msh.text(10).strip(),
        processing_id=msh.component(11, 1) or "P",
        version=msh.component(12, 1) or "2.5",
        raw_sending_application=msh[3],
        raw_sending_facility=msh[4],
        raw_receiving_application=msh[5],
        raw_receiving_facility=msh[6],
    )


def build_ack(
    msh: MshInfo | None,
    code: str,
    *,
    text: str | None = None,
    errors: tuple[tuple[str, str], ...] = (),
) -> bytes:
    """An ACK (MSA-1 AA/AE/AR) answering ``msh``; ERR segments for AE/AR (code, text)."""
    d = msh.delimiters if msh else Delimiters()
    fs, cs = d.field, d.component
    now = datetime.now(UTC).strftime("%Y%m%d%H%M%S+0000")
    version = msh.version if msh else "2.5"
    enc = f"{d.component}{d.repetition}{d.escape}{d.subcomponent}"
    segs = [
        fs.join(
            [
                "MSH",
                enc,
                msh.raw_receiving_application if msh else "DHO-INTEROP",
                msh.raw_receiving_facility if msh else "",
                msh.raw_sending_application if msh else "",
                msh.raw_sending_facility if msh else "",
                now,
                "",
                f"ACK{cs}R01{cs}ACK",
                uuid.uuid4().hex[:20],
                msh.processing_id if msh else "P",
                version,
            ]
        ),
        fs.join(["MSA", code, escape(msh.control_id, d) if msh else "", escape(text or "", d)]),
    ]
    if code != "AA":
        for err_code, err_text in errors or (("207" if code == "AE" else "200", text or "error"),):
            segs.append(
                fs.join(
                    [
                        "ERR",
                        "",
                        "",
                        f"{err_code}{cs}{escape(err_text, d)}{cs}HL70357",
                        "E",
                        "",
                        "",
                        "",
                        escape(err_text, d),
                    ]
                )
            )
    return ("\r".join(segs) + "\r").encode("utf-8")


def _patient(pid: Segment | None, meta: IngestMeta, result: AdapterResult) -> PatientRef | None:
    if pid is None:
        if meta.patient is not None:
            return meta.patient
        result.diagnostics.append(
            Diagnostic("error", DIAG_MISSING_PATIENT, "no PID segment and no patient given", "PID")
        )
        return None
    reps = pid.repetitions(3)
    fallback: PatientRef | None = None
    for i, rep in enumerate(reps):
        comps = pid.components(3, rep)
        ident = comps[0].strip() if comps else ""
        authority = comps[3] if len(comps) > 3 else ""
        id_type = (comps[4] if len(comps) > 4 else "").upper()
        universal = (
            authority.split(pid.d.subcomponent)[1] if pid.d.subcomponent in authority else ""
        )
        national = (
            FNR_TYPES.get(id_type)
            or FNR_AUTHORITIES.get(universal)
            or FNR_AUTHORITIES.get(authority)
        )
        if national:
            system = person_id_system(ident)
            if system is None:
                result.diagnostics.append(
                    Diagnostic(
                        "error",
                        DIAG_INVALID_IDENTIFIER,
                        f"PID-3 repetition {i + 1}: {ident!r} is typed as a national id but fails the check digits",
                        "PID-3",
                    )
                )
                return None
            return PatientRef(system, ident)
        if ident and fallback is None:
            scope = authority.split(pid.d.subcomponent)[0].strip() or meta.source
            fallback = PatientRef(vendor_user_system(scope), ident)
    if fallback is not None:
        return fallback
    if meta.patient is not None:
        return meta.patient
    result.diagnostics.append(
        Diagnostic("error", DIAG_MISSING_PATIENT, "PID-3 has no patient identifier", "PID-3")
    )
    return None


def _code(seg: Segment, n: int) -> Code:
    comps = seg.components(n)
    code = comps[0] if comps else ""
    display = comps[1] if len(comps) > 1 and comps[1] else None
    system_name = comps[2] if len(comps) > 2 else ""
    system = CODE_SYSTEMS.get(
        system_name.upper(), f"urn:dho-interop:code:hl7v2:{system_name or 'local'}"
    )
    return Code(system, code, display)


def _unit(seg: Segment) -> str | None:
    comps = seg.components(6)
    if not comps or not comps[0]:
        return None
    system = comps[2].upper() if len(comps) > 2 else ""
    if system == "UCUM":
        return comps[0]
    if system == "MDC":
        return f"MDC:{comps[0]}"
    return comps[0]


@dataclass
class _Obx:
    seg: Segment
    where: str
    sub_id: tuple[str, ...]
    vtype: str
    code: Code
    value: str
    unit: str | None
    status: str
    time: str


class Hl7v2Adapter:
    name = "hl7v2"
    content_types = ("application/hl7-v2", "x-application/hl7-v2+er7", "text/plain")

    def parse(self, data: bytes, meta: IngestMeta) -> AdapterResult:
        if b"\x00" in data:
            raise AdapterError("the message holds a NUL byte; HL7 v2 text cannot", DIAG_PARSE_ERROR)
        try:
            segs = parse(data)
        except Hl7SyntaxError as exc:
            raise AdapterError(str(exc), DIAG_PARSE_ERROR, "MSH") from None
        msh = segs[0]
        mtype = msh.component(9, 1) + "^" + msh.component(9, 2)
        control_id = msh.text(10).strip()
        result = AdapterResult(
            message_id=control_id or None,
            message_sender=f"{msh[3]}|{msh[4]}",
            message_digest=message_digest(data),
        )
        if mtype != "ORU^R01":
            raise AdapterError(
                f"message type {mtype} is not an observation result (ORU^R01)",
                DIAG_UNSUPPORTED,
                "MSH-9",
            )
        zone = meta.default_timezone
        pid = next((s for s in segs if s.name == "PID"), None)
        patient = _patient(pid, meta, result)
        obr_time = msh.component(7, 1)
        devices: dict[str, DeviceRef] = {}
        groups: list[list[_Obx]] = []
        current: list[_Obx] = []
        group_time: dict[int, str] = {}
        for s in segs:
            if s.name == "OBR":
                if current:
                    groups.append(current)
                current = []
                obr_time = s.component(7, 1) or obr_time
                group_time[len(groups)] = obr_time
            elif s.name == "OBX":
                result.items_seen += 1
                group_time.setdefault(len(groups), obr_time)
                current.append(
                    _Obx(
                        s,
                        f"OBX[{s.text(1) or s.index}] (segment {s.index + 1})",
                        tuple(p for p in s.text(4).strip().split(".") if p != ""),
                        s.text(2).strip().upper(),
                        _code(s, 3),
                        s[5],
                        _unit(s),
                        s.text(11).strip().upper(),
                        s.component(14, 1),
                    )
                )
        if current:
            groups.append(current)
        if not result.items_seen:
            raise AdapterError(
                "the message carries no OBX segment: there is nothing to take from it",
                DIAG_INVALID,
                "OBX",
            )
        if patient is None:
            # nothing can be filed without a patient: every item is reported, none is kept
            for g in groups:
                for o in g:
                    result.diagnostics.append(
                        Diagnostic(
                            "error", DIAG_MISSING_PATIENT, "no usable patient identifier", o.where
                        )
                    )
            return result
        for gi, group in enumerate(groups):
            self._group(group, group_time.get(gi, obr_time), patient, zone, devices, result)
        result.devices = list(devices.values())
        return result

    def _group(
        self,
        group: list[_Obx],
        default_time: str,
        patient: PatientRef,
        zone: str,
        devices: dict[str, DeviceRef],
        result: AdapterResult,
    ) -> None:
        containers: dict[tuple[str, ...], _Obx] = {}
        children: dict[tuple[str, ...], list[_Obx]] = {}
        for o in group:
            # MDS rows carry the device identity (OBX-18 EUI-64)
            if len(o.sub_id) == 1:
                eui = o.seg.component(18, 1)
                if eui and o.seg.component(18, 2).upper() == "EUI-64":
                    devices[o.sub_id[0]] = DeviceRef(EUI64_SYSTEM, eui, display=o.code.display)
            if len(o.sub_id) == 3 and o.code.code == BP_CONTAINER and o.code.system == MDC:
                containers[o.sub_id] = o
        for o in group:
            if len(o.sub_id) >= 4 and o.sub_id[:3] in containers:
                children.setdefault(o.sub_id[:3], []).append(o)
        for o in group:
            if o.sub_id[:3] in containers and len(o.sub_id) >= 4:
                continue  # handled with its container
            if o.sub_id in containers:
                self._compound(
                    o, children.get(o.sub_id, []), default_time, patient, zone, devices, result
                )
                continue
            self._single(o, default_time, patient, zone, devices, result)

    def _time(
        self, *candidates: str, zone: str, where: str, result: AdapterResult
    ) -> tuple[datetime, bool] | None:
        for c in candidates:
            if c:
                try:
                    pt = parse_hl7_ts(c, zone)
                    return pt.value, pt.zone_assumed
                except ValueError:
                    result.diagnostics.append(
                        Diagnostic(
                            "error", DIAG_MISSING_TIME, f"timestamp {c!r} is not valid", where
                        )
                    )
                    return None
        result.diagnostics.append(
            Diagnostic(
                "error", DIAG_MISSING_TIME, "no observation time (OBX-14/OBR-7/MSH-7)", where
            )
        )
        return None

    def _device(self, o: _Obx, devices: dict[str, DeviceRef]) -> DeviceRef | None:
        eui = o.seg.component(18, 1)
        if eui and o.seg.component(18, 2).upper() == "EUI-64":
            return DeviceRef(EUI64_SYSTEM, eui)
        for rep in o.seg.repetitions(18):
            comps = o.seg.components(18, rep)
            if comps and comps[-1].upper() == "EUI-64" and len(comps) >= 2:
                return DeviceRef(EUI64_SYSTEM, comps[-2])
        return devices.get(o.sub_id[0]) if o.sub_id else None

    def _not_measurement(self, o: _Obx, result: AdapterResult, why: str) -> None:
        result.diagnostics.append(
            Diagnostic(
                "information",
                DIAG_NOT_A_MEASUREMENT,
                f"{o.code.display or o.code.code}: {why}",
                o.where,
            )
        )

    def _numeric(
        self, o: _Obx, result: AdapterResult
    ) -> tuple[Decimal | None, str | None, Comparator | None] | None:
        """(value, out-of-range, comparator) or None when unusable (diagnostic added).

        SN ``>^11`` is the bound the sender gave (a value with its comparator), never the
        meter's off-scale limit; a comparator without a number is an off-scale reading; a
        range or ratio (``^1^-^5``, ``^1^:^2``) is not one value and is refused."""
        comps = o.seg.components(5)
        comparator: Comparator | None = None
        if o.vtype == "SN":
            sign = (comps[0] if comps else "").strip()
            number = comps[1] if len(comps) > 1 else ""
            if len(comps) > 2 and (comps[2].strip() or "".join(comps[3:]).strip()):
                result.diagnostics.append(
                    Diagnostic(
                        "error",
                        DIAG_UNSUPPORTED,
                        f"{o.code.code}: OBX-5 {o.seg.text(5)!r} is a range or ratio, not one "
                        "value",
                        o.where,
                    )
                )
                return None
            if sign not in SN_COMPARATORS:
                result.diagnostics.append(
                    Diagnostic(
                        "error",
                        DIAG_PARSE_ERROR,
                        f"{o.code.code}: OBX-5 comparator {sign!r} is not one of "
                        f"{', '.join(c for c in SN_COMPARATORS if c)}",
                        o.where,
                    )
                )
                return None
            comparator = SN_COMPARATORS[sign]
            if comparator is not None and not number.strip():
                return None, "HI" if comparator in (">", ">=") else "LO", None
        else:
            number = comps[0] if comps else ""
        number = number.strip()
        if not number:
            result.diagnostics.append(
                Diagnostic("error", DIAG_MISSING_VALUE, f"{o.code.code}: OBX-5 is empty", o.where)
            )
            return None
        upper = number.upper()
        if upper in ("HI", "HIGH"):
            return None, "HI", None
        if upper in ("LO", "LOW"):
            return None, "LO", None
        try:
            return Decimal(number), None, comparator
        except InvalidOperation:
            result.diagnostics.append(
                Diagnostic(
                    "error",
                    DIAG_PARSE_ERROR,
                    f"{o.code.code}: OBX-5 {number!r} is not a number",
                    o.where,
                )
            )
            return None

    def _status(self, o: _Obx, result: AdapterResult) -> str | None:
        if o.status in NO_RESULT:
            self._not_measurement(o, result, NO_RESULT[o.status])
            return None
        st = STATUS.get(o.status)
        if st is None:
            result.diagnostics.append(
                Diagnostic(
                    "error",
                    DIAG_UNSUPPORTED,
                    f"OBX-11 result status {o.status!r} is not known",
                    o.where,
                )
            )
        return st

    def _single(
        self,
        o: _Obx,
        default_time: str,
        patient: PatientRef,
        zone: str,
        devices: dict[str, DeviceRef],
        result: AdapterResult,
    ) -> None:
        if not o.vtype and o.value.strip():
            result.diagnostics.append(
                Diagnostic(
                    "error",
                    DIAG_UNSUPPORTED,
                    f"{o.code.display or o.code.code}: OBX-2 value type is empty, so OBX-5 {o.seg.text(5)!r} cannot be interpreted",
                    o.where,
                )
            )
            return
        if o.sub_id and (len(o.sub_id) < 4 and len(o.sub_id) != 0) and o.code.system == MDC:
            self._not_measurement(o, result, f"device description row (OBX-4 {'.'.join(o.sub_id)})")
            return
        if o.code.system == MDC and (o.code.display or "").startswith(
            ("MDC_ATTR_", "MDC_TIME_", "MDC_DEV_", "MDC_CTXT_")
        ):
            self._not_measurement(o, result, "device attribute or context, not a measurement")
            return
        if not o.vtype:
            result.diagnostics.append(
                Diagnostic(
                    "error",
                    DIAG_UNSUPPORTED,
                    f"{o.code.code}: OBX-2 value type is empty, so OBX-5 {o.value!r} cannot be interpreted",
                    o.where,
                )
            )
            return
        if o.vtype not in NUMERIC_TYPES:
            result.diagnostics.append(
                Diagnostic(
                    "warning",
                    DIAG_UNSUPPORTED,
                    f"{o.code.code}: value type {o.vtype} is not a numeric measurement",
                    o.where,
                )
            )
            return
        status = self._status(o, result)
        if status is None:
            return
        num = self._numeric(o, result)
        if num is None:
            return
        when = self._time(o.time, default_time, zone=zone, where=o.where, result=result)
        if when is None:
            return
        value, oor, comparator = num
        flags = o.seg.text(8)
        result.measurements.append(
            Measurement(
                code=o.code,
                value=value,
                unit=o.unit,
                effective=when[0],
                timezone_assumed=when[1],
                patient=patient,
                location=o.where,
                device=self._device(o, devices),
                status=status,  # type: ignore[arg-type]
                out_of_range=oor,  # type: ignore[arg-type]
                comparator=comparator,
                attributes={"abnormal_flags": flags} if flags else {},
            )
        )

    def _compound(
        self,
        container: _Obx,
        kids: list[_Obx],
        default_time: str,
        patient: PatientRef,
        zone: str,
        devices: dict[str, DeviceRef],
        result: AdapterResult,
    ) -> None:
        comps: list[Component] = []
        statuses: list[str] = []
        when = None
        for k in kids:
            if k.vtype not in NUMERIC_TYPES:
                self._not_measurement(
                    k, result, f"value type {k.vtype or '(none)'} inside the blood-pressure group"
                )
                continue
            st = self._status(k, result)
            if st is None:
                continue
            if st == "entered-in-error":
                result.diagnostics.append(
                    Diagnostic(
                        "warning",
                        "withdrawn",
                        f"{k.code.display or k.code.code} withdrawn by the sender (OBX-11 {k.status}); left out of the blood pressure",
                        k.where,
                    )
                )
                continue
            num = self._numeric(k, result)
            if num is None:
                continue
            statuses.append(st)
            if num[2] is not None:
                # a component keeps no comparator: a bound is not taken as an exact value
                result.diagnostics.append(
                    Diagnostic(
                        "error",
                        DIAG_UNSUPPORTED,
                        f"{k.code.code}: a bound ({num[2]} {num[0]}) as a blood-pressure "
                        "component is not a reading",
                        k.where,
                    )
                )
                continue
            comps.append(Component(k.code, num[0], k.unit, num[1]))  # type: ignore[arg-type]
            if when is None and k.time:
                when = k.time
        if not comps:
            result.diagnostics.append(
                Diagnostic(
                    "error",
                    DIAG_MISSING_VALUE,
                    "blood-pressure group without usable values",
                    container.where,
                )
            )
            return
        t = self._time(
            when or "",
            container.time,
            default_time,
            zone=zone,
            where=container.where,
            result=result,
        )
        if t is None:
            return
        status = (
            "corrected"
            if "corrected" in statuses
            else ("preliminary" if "preliminary" in statuses else "final")
        )
        result.measurements.append(
            Measurement(
                code=container.code,
                value=None,
                unit=None,
                effective=t[0],
                timezone_assumed=t[1],
                patient=patient,
                location=container.where,
                components=tuple(comps),
                device=self._device(container, devices),
                status=status,  # type: ignore[arg-type]
            )
        )
