"""What the audit log recorded about the latest refusal (the caller is told less than that)."""

from __future__ import annotations


def last_refusal(client) -> str:  # type: ignore[no-untyped-def]
    """The reason the audit log gives for the newest refused access (admin client)."""
    bundle = client.get(
        "/fhir/AuditEvent", params={"outcome": "4", "_sort": "-_lastUpdated", "_count": "1"}
    ).json()
    assert bundle.get("entry"), bundle
    return str(bundle["entry"][0]["resource"]["outcomeDesc"])
