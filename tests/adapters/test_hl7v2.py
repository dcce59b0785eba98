"""HL7 v2 ORU^R01 adapter on every real sample, the splitter and MLLP framing."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.base import MDC, AdapterError, IngestMeta, vendor_user_system
from adapters.hl7v2 import Hl7v2Adapter, build_ack, split_message_header
from adapters.hl7v2_segments import Delimiters, escape, parse, unescape
from adapters.mllp import MllpDecoder, mllp_frame
from tests.conftest import CONFORMANCE

VENDOR = CONFORMANCE / "vendor"
A = Hl7v2Adapter()
META = IngestMeta(source="test")


def run(rel: str):  # type: ignore[no-untyped-def]
    return A.parse((VENDOR / rel).read_bytes(), META)


def summary(
    result,
) -> list[tuple[str, Decimal | None, str | None, tuple[tuple[str, Decimal | None], ...]]]:  # type: ignore[no-untyped-def]
    return [
        (m.code.code, m.value, m.unit, tuple((c.code.code, c.value) for c in m.components))
        for m in result.measurements
    ]


def codes(result, code: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [d.location for d in result.diagnostics if d.code == code]


def test_continua_blood_pressure_is_one_measurement_with_components() -> None:
    r = run("continua-ipf/valid-bp-continua-wan.hl7v2")
    assert summary(r) == [
        (
            "150020",
            None,
            None,
            (("150021", Decimal(120)), ("150022", Decimal(80)), ("150023", Decimal(100))),
        )
    ]
    [m] = r.measurements
    assert m.code.system == MDC and m.components[0].unit == "MDC:266016"
    assert m.device is not None and m.device.identifier_value == "0123456789ABCDEF"
    assert (
        m.patient.system == vendor_user_system("Imaginary Hospital") and m.patient.value == "789567"
    )
    assert m.effective.isoformat() == "2009-08-13T09:57:15+00:00"
    assert r.message_id == "MSGID1234" and r.items_seen == 7
    assert len(codes(r, "not-a-measurement")) == 3  # time sync, device profile, absolute time


@pytest.mark.parametrize(
    ("rel", "expected", "skipped"),
    [
        (
            "continua-ipf/valid-glucose-continua-wan.hl7v2",
            [("160184", Decimal("37.5"), "MDC:264274", ())],
            6,
        ),
        (
            "continua-ipf/valid-oximeter-continua-wan.hl7v2",
            [("150456", Decimal("80.5"), "MDC:262688", ())],
            2,
        ),
        (
            "continua-ipf/valid-thermometer-continua-wan.hl7v2",
            [("188424", Decimal("98.6"), "MDC:266560", ())],
            1,
        ),
        (
            "continua-ipf/valid-pcd01-request.hl7v2",
            [
                (
                    "150020",
                    None,
                    None,
                    (("150021", Decimal(120)), ("150022", Decimal(80)), ("150023", Decimal(100))),
                )
            ],
            1,
        ),
        ("fhir-converter/ORU-R01-RMGEAD.hl7", [("1554-5", Decimal(182), "mg/dl", ())], 0),
    ],
)
def test_samples(rel: str, expected: list, skipped: int) -> None:  # type: ignore[type-arg]
    r = run(rel)
    assert summary(r) == expected
    assert len(r.diagnostics) == skipped, [d.message for d in r.diagnostics]


def test_scale_two_groups_six_metrics() -> None:
    r = run("continua-ipf/valid-scale-continua-wan.hl7v2")
    assert [m.code.code for m in r.measurements] == ["188736", "188740", "188752"] * 2
    assert [m.value for m in r.measurements][:3] == [Decimal(80), Decimal(180), Decimal("24.7")]
    assert len(codes(r, "not-a-measurement")) == 6


def test_invalid_glucose_gets_precise_diagnostics() -> None:
    r = run("continua-ipf/invalid-glucose-continua-wan.hl7v2")
    assert [m.code.code for m in r.measurements] == ["160184", "160220"]
    empty_type = [d for d in r.diagnostics if "OBX-2 value type is empty" in d.message]
    assert [d.location.split()[0] for d in empty_type] == ["OBX[8]", "OBX[9]", "OBX[10]"]
    assert all(d.severity == "error" for d in empty_type)


def test_maximum_request_statuses_and_withdrawn_component() -> None:
    r = run("continua-ipf/valid-pcd01-MaximumRequest2.hl7")
    bp = r.measurements[0]
    assert bp.status == "corrected" and [c.code.code for c in bp.components] == ["150021", "150023"]
    assert codes(r, "withdrawn")
    assert [m.code.code for m in r.measurements[1:]] == [
        "1500212",
        "1500212",
    ]  # unknown codes: mapping rejects them
    assert any("OBX-11 X" in d.message for d in r.diagnostics)


def test_lab_oru_with_bom_statuses_and_offsets() -> None:
    r = run("fhir-converter/LAB-ORU-1.hl7")
    assert len(r.measurements) == 8 and r.items_seen == 10
    assert {m.status for m in r.measurements} == {"preliminary", "final"}
    assert r.measurements[0].effective.isoformat() == "2014-10-06T06:27:00+07:00"
    assert len(codes(r, "not-a-measurement")) == 2  # OBX-11 I: pending


def test_pcd01_request2_units_and_codes() -> None:
    r = run("continua-ipf/valid-pcd01-request2.hl7v2")
    assert len(r.measurements) == 9
    assert r.measurements[0].unit == "/min" and r.measurements[2].unit == "mm[Hg]"
    assert r.measurements[0].timezone_assumed  # OBR-7 has no offset


def test_observation_bundle_expected_empty_value_type() -> None:
    r = run("fhir-converter/ObservationBundle-expected.hl7")
    assert r.measurements == []
    assert [d.code for d in r.diagnostics] == ["unsupported"]


def test_ack_message_is_refused() -> None:
    with pytest.raises(AdapterError, match="ACK"):
        run("continua-ipf/valid-pcd01-response2.hl7v2")
    with pytest.raises(AdapterError):
        A.parse(b"not hl7 at all", META)


def test_fnr_in_pid3_identifies_patient_and_bad_checksum_is_reported() -> None:
    base = "MSH|^~\\&|APP|FAC|||20260101120000+0100||ORU^R01|C1|P|2.6\rPID|||{pid}\rOBR|1|||x|||20260101115000+0100\rOBX|1|NM|8867-4^Heart rate^LN||72|/min^/min^UCUM|||||F\r"
    ok = A.parse(base.format(pid="13031353453^^^&2.16.578.1.12.4.1.4.1&ISO^FNR").encode(), META)
    assert ok.measurements[0].patient.value == "13031353453"
    bad = A.parse(base.format(pid="13031353454^^^^FNR").encode(), META)
    assert bad.measurements == [] and bad.diagnostics[0].code == "invalid-identifier"


def test_header_and_ack() -> None:
    raw = (VENDOR / "continua-ipf/valid-bp-continua-wan.hl7v2").read_bytes()
    msh = split_message_header(raw)
    assert (msh.message_type, msh.control_id, msh.version) == ("ORU^R01", "MSGID1234", "2.6")
    ack = parse(build_ack(msh, "AA"))
    assert ack[1].name == "MSA" and ack[1][1] == "AA" and ack[1][2] == "MSGID1234"
    err = parse(build_ack(msh, "AR", text="no"))
    assert err[2].name == "ERR"


@given(
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x0b\x1c"),
        max_size=40,
    )
)
def test_escape_round_trips(value: str) -> None:
    d = Delimiters()
    escaped = escape(value, d)
    assert d.field not in escaped and d.component not in escaped
    assert unescape(escaped, d) == value


@given(
    st.lists(
        st.binary(min_size=1, max_size=50).filter(lambda b: b"\x0b" not in b and b"\x1c" not in b),
        min_size=1,
        max_size=5,
    ),
    st.integers(min_value=1, max_value=17),
)
def test_mllp_decoder_any_chunking(messages: list[bytes], chunk: int) -> None:
    stream = b"".join(mllp_frame(m) for m in messages)
    dec = MllpDecoder()
    out: list[bytes] = []
    for i in range(0, len(stream), chunk):
        out.extend(dec.feed(stream[i : i + chunk]))
    assert out == messages


@given(st.sampled_from(["\r", "\n", "\r\n"]))
def test_line_endings_are_normalised(nl: str) -> None:
    msg = nl.join(
        [
            "MSH|^~\\&|A|B|||20260101120000+0100||ORU^R01|X|P|2.6",
            "PID|||u1^^^acme",
            "OBX|1|NM|8867-4^HR^LN||70|/min^^UCUM|||||F|||20260101115000+0100",
        ]
    )
    r = A.parse(("\ufeff" + msg).encode(), META)
    assert len(r.measurements) == 1


def _sn(value: str) -> bytes:
    return (
        "MSH|^~\\&|GW|GW|DHO|DHO|20260301080000+0100||ORU^R01^ORU_R01|sn-1|P|2.6\r"
        "PID|||13031353453^^^NO-FNR^NNFNR\r"
        "OBR|1|||15074-8^Glucose^LN\r"
        f"OBX|1|SN|15074-8^Glucose^LN||{value}|mmol/L|||||F|||20260301080000+0100\r"
    ).encode()


@pytest.mark.parametrize(
    ("sn", "expected"),
    [
        (">^11", (Decimal(11), None, ">")),  # the sender's bound, not the meter's limit
        ("<=^2.5", (Decimal("2.5"), None, "<=")),
        ("^7.2", (Decimal("7.2"), None, None)),
        ("=^7.2", (Decimal("7.2"), None, None)),
        (">", (None, "HI", None)),  # a bound without a number: off scale
    ],
)
def test_structured_numeric_keeps_its_comparator(sn: str, expected: tuple) -> None:  # type: ignore[type-arg]
    (m,) = A.parse(_sn(sn), META).measurements
    assert (m.value, m.out_of_range, m.comparator) == expected


@pytest.mark.parametrize("sn", ["^1^-^5", "^1^:^2", "<>^5", "~^5"])
def test_structured_numeric_that_is_not_one_value_is_refused(sn: str) -> None:
    r = A.parse(_sn(sn), META)
    assert not r.measurements
    (d,) = [d for d in r.diagnostics if d.severity == "error"]
    assert d.location and "OBX-5" in d.message
