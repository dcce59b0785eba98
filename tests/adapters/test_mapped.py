"""Declarative vendor profiles (mapped-csv, mapped-json) on the real samples."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.base import FNR_OID, AdapterError, IngestMeta, PatientRef
from adapters.mapped import MappedCsvAdapter, MappedJsonAdapter, select, to_decimal
from interop.mapping import MappingSet
from tests.conftest import CONFORMANCE

V = CONFORMANCE / "vendor"
P = PatientRef(FNR_OID, "13031353453")
MS = MappingSet.load()
NOW = datetime(2026, 11, 1, tzinfo=UTC)


def run(adapter, rel: str, profile: str):  # type: ignore[no-untyped-def]
    return adapter.parse(
        (V / rel).read_bytes(), IngestMeta(source="t", patient=P, options={"profile": profile})
    )


def mapped(result) -> list[tuple[str, object, str | None]]:  # type: ignore[no-untyped-def]
    out = []
    for m in result.measurements:
        o = MS.map(m, now=NOW)
        if o.mapped is None:
            out.append((m.code.code, o.diagnostics[0].code, None))
        elif o.mapped.components:
            out.append(
                (o.mapped.concept.loinc.code, tuple(c.value for c in o.mapped.components), "mm[Hg]")
            )
        else:
            out.append(
                (
                    o.mapped.concept.loinc.code,
                    o.mapped.value if o.mapped.value is not None else o.mapped.out_of_range,
                    o.mapped.unit,
                )
            )
    return out


def test_accu_chek_diary() -> None:
    r = run(MappedCsvAdapter(), "accu-chek-csv/ProperDiary.csv", "accu-chek-csv")
    assert mapped(r) == [
        ("14743-9", Decimal("5.2"), "mmol/L"),
        ("14743-9", Decimal("5.5"), "mmol/L"),
        ("14743-9", Decimal("7.2"), "mmol/L"),
        ("14743-9", Decimal("7.2"), "mmol/L"),
        ("14743-9", "HI", "mmol/L"),
        ("14743-9", "LO", "mmol/L"),
    ]
    assert r.items_seen == 11
    assert [d.location for d in r.diagnostics] == ["row 5", "row 7", "row 8", "row 9", "row 12"]
    assert all("control-solution" in d.message for d in r.diagnostics)
    assert r.measurements[0].device is not None and r.measurements[0].device.serial == "U100160433"
    assert (
        r.measurements[0].timezone_assumed
        and r.measurements[0].effective.isoformat() == "2013-01-21T09:48:00+01:00"
    )
    assert r.measurements[1].attributes == {"before_meal": True}


def test_accu_chek_renamed_column_and_padding() -> None:
    r = run(MappedCsvAdapter(), "accu-chek-csv/ProperDiaryWithNewColumnHeader.csv", "accu-chek-csv")
    assert mapped(r) == [
        ("14743-9", Decimal("5.6"), "mmol/L"),
        ("14743-9", Decimal("4.8"), "mmol/L"),
    ]
    assert r.diagnostics == []


def test_withings() -> None:
    r = run(MappedJsonAdapter(), "shimmer/withings-body-measures.json", "withings-body-measures")
    got = mapped(r)
    assert got[0] == ("85354-9", (Decimal(104), Decimal(68)), "mm[Hg]")
    assert ("8867-4", Decimal(41), "/min") in got and ("29463-7", Decimal("74.126"), "kg") in got
    assert ("8310-5", Decimal(37), "Cel") in got
    assert [c for c, *_ in got].count("18") == 3 and (
        "4",
        "unknown-code",
        None,
    ) in got  # not mapped: reported
    goal = run(
        MappedJsonAdapter(),
        "shimmer/withings-body-measures-only-goal.json",
        "withings-body-measures",
    )
    assert goal.measurements == [] and goal.diagnostics[0].code == "not-a-measurement"


def test_ihealth() -> None:
    bp = mapped(run(MappedJsonAdapter(), "shimmer/ihealth-bp.json", "ihealth-bp"))
    assert bp[:2] == [
        ("85354-9", (Decimal(120), Decimal(90)), "mm[Hg]"),
        ("8867-4", Decimal(100), "/min"),
    ]
    glu = run(MappedJsonAdapter(), "shimmer/ihealth-glucose.json", "ihealth-glucose")
    assert mapped(glu) == [
        ("15074-8", Decimal("3.3"), "mmol/L"),
        ("15074-8", Decimal("3.9"), "mmol/L"),
    ]
    assert glu.measurements[0].effective.isoformat() == "2015-09-17T12:03:27-08:00"
    spo2 = mapped(run(MappedJsonAdapter(), "shimmer/ihealth-spo2.json", "ihealth-spo2"))
    assert spo2 == [
        ("2708-6", Decimal(99), "%"),
        ("8867-4", Decimal(80), "/min"),
        ("2708-6", Decimal(90), "%"),
        ("8867-4", Decimal(65), "/min"),
    ]


def test_profile_errors(tmp_path: Path) -> None:
    with pytest.raises(AdapterError, match="available: .*accu-chek-csv"):
        MappedCsvAdapter().parse(b"x", IngestMeta(options={"profile": "nope"}))
    (tmp_path / "bad.yaml").write_text("name: bad\nformat: csv\n")
    with pytest.raises(AdapterError, match="bad.yaml is invalid"):
        MappedCsvAdapter().parse(
            b"x", IngestMeta(options={"profile": "bad", "profiles_dir": str(tmp_path)})
        )
    with pytest.raises(AdapterError, match="is for csv"):
        MappedJsonAdapter().parse(b"{}", IngestMeta(options={"profile": "accu-chek-csv"}))


@given(st.lists(st.integers(min_value=-5, max_value=5), min_size=1, max_size=6))
def test_path_language(values: list[int]) -> None:
    doc = {"a": {"b": [{"c": v} for v in values]}}
    assert select(doc, "a.b[*].c") == values
    assert select(doc, "a.b[0].c") == values[:1]
    assert select({"x": doc}, "$.a.b[*].c", root=doc) == values


@given(st.integers(min_value=0, max_value=99999), st.integers(min_value=0, max_value=99))
def test_decimal_comma(whole: int, frac: int) -> None:
    assert to_decimal(f"{whole},{frac:02d}", decimal_comma=True) == Decimal(f"{whole}.{frac:02d}")


def test_googlefit_and_fitbit_weight() -> None:
    g = run(MappedJsonAdapter(), "shimmer/googlefit-merge-weight.json", "googlefit-weight")
    got = mapped(g)
    assert got and all(code == "29463-7" for code, *_ in got)
    assert got[0][1] == Decimal("72.1")
    assert g.measurements[0].effective.isoformat() == "2015-02-13T00:00:00+00:00"
    f = run(MappedJsonAdapter(), "shimmer/fitbit-body-log-weight.json", "fitbit-body-log-weight")
    assert mapped(f)[:2] == [("29463-7", Decimal("56.7"), "kg"), ("29463-7", Decimal("55.9"), "kg")]
    assert f.measurements[0].timezone_assumed


CSV_META = IngestMeta(
    patient=PatientRef(FNR_OID, "13031353453"), options={"profile": "accu-chek-csv"}
)


@pytest.mark.parametrize("trailing", [";", ""])
def test_a_row_with_too_few_or_too_many_fields_is_refused(trailing: str) -> None:
    """Whether the file ends its rows with a delimiter or not, a row one field short or long
    is refused with its reason: its values would sit under the wrong columns."""
    header = "Dato;Tid;Måleresultat;Måleenhed;Kontrolmåling"
    rows = [
        "01.03.2026;08:00;5,2;mmol/L;" + trailing,  # the last column empty
        "01.03.2026;09:00;6,1;mmol/L" + trailing,  # one field short
        "01.03.2026;10:00;7,0;mmol/L;;X" + trailing,  # one field too many
        "01.03.2026;11:00;5,9;mmol/L;X" + trailing,  # a control test
    ]
    text = "U1;x\n\n" + header + trailing + "\n" + "\n".join(rows) + "\n"
    r = MappedCsvAdapter().parse(text.encode(), CSV_META)
    assert [m.value for m in r.measurements] == [Decimal("5.2")]
    refused = [d for d in r.diagnostics if d.severity == "error"]
    assert [(d.code, d.location) for d in refused] == [("invalid", "row 5"), ("invalid", "row 6")]
    assert "4 fields where the header has 5 columns" in refused[0].message
    assert r.items_seen == 4


def test_one_odd_row_does_not_decide_the_files_convention() -> None:
    header = "Dato;Tid;Måleresultat;Måleenhed;Kontrolmåling"
    rows = [f"0{d}.03.2026;08:00;5,{d};mmol/L;" for d in range(1, 5)]
    rows.append("05.03.2026;08:00;5,5;mmol/L;;")  # one stray delimiter
    text = "U1;x\n\n" + header + "\n" + "\n".join(rows) + "\n"
    r = MappedCsvAdapter().parse(text.encode(), CSV_META)
    assert len(r.measurements) == 4
    assert [d.location for d in r.diagnostics if d.severity == "error"] == ["row 8"]
