"""What off-the-shelf clients send first besides plain reads and searches: a conditional read
(``If-None-Match``, ``If-Modified-Since``: 304 when unchanged, on the Observation fast path
too), and result parameters the server does not serve (a second ``_sort`` key, an unknown
``_total``, ``_revinclude:iterate``) refused with 400 naming them instead of dropped."""

from __future__ import annotations

from email.utils import format_datetime, parsedate_to_datetime

import pytest

from tests.api.test_fhir_crud import observation, patient
from tests.api.test_r4_types import condition
from tests.api.test_search_breadth import _create


@pytest.mark.parametrize("kind", ["Condition", "Observation"])
def test_if_modified_since(client, kind: str) -> None:  # type: ignore[no-untyped-def]
    pid = _create(client, patient())
    rid = _create(client, condition(pid) if kind == "Condition" else observation(pid))
    url = f"/fhir/{kind}/{rid}"
    first = client.get(url)
    lm, etag = first.headers["last-modified"], first.headers["etag"]
    r = client.get(url, headers={"If-Modified-Since": lm})
    assert r.status_code == 304 and r.content == b""
    assert r.headers["etag"] == etag
    earlier = format_datetime(
        parsedate_to_datetime(lm).replace(year=parsedate_to_datetime(lm).year - 1), usegmt=True
    )
    r = client.get(url, headers={"If-Modified-Since": earlier})
    assert r.status_code == 200 and r.json()["id"] == rid
    assert client.get(url, headers={"If-Modified-Since": "yesterday"}).status_code == 200
    # If-None-Match decides when both are sent
    r = client.get(url, headers={"If-None-Match": 'W/"99"', "If-Modified-Since": lm})
    assert r.status_code == 200
    assert client.get(url, headers={"If-None-Match": etag}).status_code == 304


def test_if_modified_since_after_a_change(client) -> None:  # type: ignore[no-untyped-def]
    pid = _create(client, patient())
    cid = _create(client, condition(pid))
    lm = client.get(f"/fhir/Condition/{cid}").headers["last-modified"]
    body = {**condition(pid, code="44054006"), "id": cid}
    assert client.put(f"/fhir/Condition/{cid}", json=body).status_code == 200
    r = client.get(f"/fhir/Condition/{cid}", headers={"If-Modified-Since": lm})
    # the change may fall within the same second as the first version: then 304 is right
    # only if the Last-Modified did not move
    if client.get(f"/fhir/Condition/{cid}").headers["last-modified"] != lm:
        assert r.status_code == 200


def test_result_parameters_not_served_are_refused(client) -> None:  # type: ignore[no-untyped-def]
    pid = _create(client, patient())
    _create(client, condition(pid))
    for q, named in (
        ("Condition?_sort=code,-nonsense", "nonsense"),
        ("Condition?_sort=code,-subject", "subject"),
        ("Condition?_total=bogus", "_total"),
        ("Patient?_revinclude:deep=Condition:subject", "_revinclude:deep"),
        ("Patient?_revinclude:iterate=Condition:nonsense", "nonsense"),
    ):
        r = client.get(f"/fhir/{q}")
        assert r.status_code == 400, (q, r.text)
        assert named in r.text, (q, r.text)
    for q in (
        "Condition?_sort=-_lastUpdated,-_id",
        "Condition?_sort=code,_id",
        "Condition?_sort=code,-recorded-date",
        "Condition?_sort=-_lastUpdated,_id",
        "Patient?_revinclude:iterate=Condition:subject",
        "Condition?_total=estimate",
        "Condition?_total=none",
    ):
        assert client.get(f"/fhir/{q}").status_code == 200, q


def test_the_capability_statement_claims_conditional_reads(client) -> None:  # type: ignore[no-untyped-def]
    cs = client.get("/fhir/metadata").json()
    for res in cs["rest"][0]["resource"]:
        assert res["conditionalRead"] == "full-support", res["type"]


def test_refused_result_parameters_are_named_in_the_issue_expression(client) -> None:  # type: ignore[no-untyped-def]
    """A bad ``_revinclude``, ``_sort`` or ``_count`` is refused with the parameter in the
    issue's ``expression``, as the other search parameters' 400s are."""
    pid = _create(client, patient())
    _create(client, condition(pid))
    for q, named in (
        ("Condition?_sort=nonsense", "_sort"),
        ("Condition?_sort=code,-subject", "_sort"),
        ("Condition?_count=many", "_count"),
        ("Patient?_revinclude=Condition", "_revinclude"),
        ("Patient?_revinclude=Nonsense:subject", "_revinclude"),
        ("Patient?_revinclude=AuditEvent:patient", "_revinclude"),
        ("Patient?_revinclude=Condition:code", "_revinclude"),
        ("Patient?_revinclude=Condition:subject:Nonsense", "_revinclude"),
        ("Patient?_revinclude:iterate=Condition:nonsense", "_revinclude"),
        ("Organization?_revinclude=Condition:subject", "_revinclude"),
    ):
        r = client.get(f"/fhir/{q}")
        assert r.status_code == 400, (q, r.text)
        issue = r.json()["issue"][0]
        assert issue.get("expression") == [named], (q, issue)
