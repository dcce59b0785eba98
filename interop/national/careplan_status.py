"""NHN's older careplan service (HIT careplan, "Pasientens planer API"): whether a patient has an
active care plan there, and when it last changed — its status endpoint, which takes a
machine-to-machine HelseID token.

``POST {base}/api/careplan/status`` with ``{"nin": "<fnr or D-nummer>"}`` answers
``{"activeCarePlan": bool, "lastChangedDateTime": datetime | null}`` (the Kjernejournal variant
adds ``privacySetting``). The variant, its HelseID API, path and header names are data
(``mappings/national/nhn-careplan.yaml``); the token type (Bearer per NHN's pages) is the HelseID
API's. This is not the 2026 plan API with zones (:mod:`interop.national.plans_api`): its plans
are its own, and nothing here reads, imports or changes a plan.

The answer names no patient, so what ties it to the patient is the call alone: one call per
number, nothing cached or shared between calls, and the number checked (a person number; a
test-environment number only when ``INTEROP_ENVIRONMENT=test``) before it leaves. The number is
never logged; the answer is read as strict JSON and anything off the contract is an error.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from importlib.resources import files
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import yaml

from interop.national.helseid import HelseIdClients, HelseIdError
from interop.national.tenants import Tenant
from interop.synthetic_identities import patient_id_problem
from interop.text import local_time, text

PRIVACY_FLAGS = ("consent", "hasReservationKjernejournal", "isRestricted", "isBlocked")


class CareplanStatusError(Exception):
    def __init__(self, message: str, *, status: int | None = None, transient: bool = False):
        super().__init__(message)
        self.status = status
        self.transient = transient


@dataclass(frozen=True)
class Variant:
    name: str
    api: str
    path: str
    source_system_header: str
    event_id_header: str | None


@lru_cache(maxsize=1)
def _mapping() -> dict[str, Any]:
    data = yaml.safe_load((files("mappings") / "national" / "nhn-careplan.yaml").read_text())
    return dict(data)


def variant(name: str) -> Variant:
    v = (_mapping().get("variants") or {}).get(name)
    if not isinstance(v, dict):
        raise CareplanStatusError(
            f"INTEROP_NHN_CAREPLAN_VARIANT {name!r} is not in mappings/national/nhn-careplan.yaml"
        )
    headers = v.get("headers") or {}
    return Variant(
        name,
        str(v["api"]),
        str(v["path"]),
        str(headers["source_system"]),
        str(headers["event_id"]) if headers.get("event_id") else None,
    )


@dataclass(frozen=True)
class CareplanStatus:
    national_id: str
    """the number asked about (the answer itself names no one)"""
    active: bool
    last_changed: datetime | None
    privacy: dict[str, bool]
    """the Kjernejournal variant's ``privacySetting`` flags, when given"""

    def __repr__(self) -> str:  # never print the number
        return f"CareplanStatus(active={self.active}, last_changed={self.last_changed})"

    def as_json(self, zone: str) -> dict[str, Any]:
        return {
            "activeCarePlan": self.active,
            "lastChangedDateTime": self.last_changed.isoformat() if self.last_changed else None,
            "privacySetting": self.privacy or None,
            "text": self.text(zone),
        }

    def text(self, zone: str) -> str:
        """What the care team reads (bokmål, Norwegian local time)."""
        line = text("nhn_careplan.active") if self.active else text("nhn_careplan.none")
        if self.last_changed is not None:
            line += " " + text(
                "nhn_careplan.last_changed", time=local_time(self.last_changed, zone)
            )
        flags = [text(f"nhn_careplan.privacy.{f}") for f in PRIVACY_FLAGS if self.privacy.get(f)]
        if flags:
            line += " " + text("nhn_careplan.privacy.intro", flags=", ".join(flags))
        return line


def parse_status(body: Any, national_id: str) -> CareplanStatus:
    """The status answer, or :class:`CareplanStatusError` naming what is off the contract."""
    if not isinstance(body, dict):
        raise CareplanStatusError("careplan status: the answer is not a JSON object")
    active = body.get("activeCarePlan")
    if not isinstance(active, bool):
        raise CareplanStatusError("careplan status: activeCarePlan is not true/false")
    raw = body.get("lastChangedDateTime")
    changed: datetime | None = None
    if raw is not None:
        try:
            changed = datetime.fromisoformat(str(raw))
        except ValueError:
            raise CareplanStatusError(
                "careplan status: lastChangedDateTime is not a date and time"
            ) from None
        if changed.tzinfo is None:
            changed = changed.replace(tzinfo=ZoneInfo(str(_mapping()["naive_times_are"])))
    privacy: dict[str, bool] = {}
    setting = body.get("privacySetting")
    if setting is not None:
        if not isinstance(setting, dict) or any(
            not isinstance(setting.get(f), bool) for f in PRIVACY_FLAGS if f in setting
        ):
            raise CareplanStatusError("careplan status: privacySetting is not a set of flags")
        privacy = {f: bool(setting[f]) for f in PRIVACY_FLAGS if f in setting}
    return CareplanStatus(national_id, active, changed, privacy)


class CareplanStatusClient:
    def __init__(
        self,
        base_url: str,
        *,
        http: httpx.Client,
        auth: httpx.Auth | None,
        variant: Variant,
        source_system: str,
        test_environment: bool,
    ) -> None:
        if not 3 <= len(source_system) <= 512:
            raise CareplanStatusError("the source system's name must be 3–512 characters")
        self.url = base_url.rstrip("/") + "/" + variant.path.strip("/")
        self.http = http
        self.auth = auth
        self.variant = variant
        self.source_system = source_system
        self.test_environment = test_environment

    def status(self, national_id: str) -> CareplanStatus:
        problem = patient_id_problem(national_id, test_environment=self.test_environment)
        if problem is not None:
            raise CareplanStatusError(f"careplan status: {problem}", status=400)
        headers = {
            "Accept": "application/json",
            self.variant.source_system_header: self.source_system,
        }
        if self.variant.event_id_header:
            headers[self.variant.event_id_header] = uuid.uuid4().hex
        try:
            r = self.http.post(
                self.url,
                json={"nin": national_id},
                headers=headers,
                auth=self.auth if self.auth is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except HelseIdError as exc:
            raise CareplanStatusError(str(exc), transient=exc.transient) from exc
        except httpx.HTTPError as exc:
            raise CareplanStatusError(f"{self.url}: {type(exc).__name__}", transient=True) from exc
        if r.status_code != 200:
            raise CareplanStatusError(
                f"careplan status: HTTP {r.status_code}",
                status=r.status_code,
                transient=r.status_code in (408, 425, 429) or r.status_code >= 500,
            )
        try:
            body = r.json()
        except ValueError:
            raise CareplanStatusError("careplan status: the answer is not JSON") from None
        return parse_status(body, national_id)


def careplan_tenant(helseid: HelseIdClients, name: str | None) -> Tenant:
    """The tenant calling the careplan service: the one named, else the only one. NHN requires
    both organisation numbers (the legal entity and the point of care) in the token."""
    config = helseid.config
    chosen = next((t for t in config.tenants if t.name == name), None)
    if name and chosen is None:
        raise CareplanStatusError(
            f"INTEROP_NHN_CAREPLAN_TENANT {name!r} is not in the tenants file"
        )
    chosen = chosen or (config.tenants[0] if len(config.tenants) == 1 else None)
    if chosen is None:
        raise CareplanStatusError("several HelseID tenants: set INTEROP_NHN_CAREPLAN_TENANT")
    if not (chosen.orgnr_parent and chosen.orgnr_child):
        raise CareplanStatusError(
            f"tenant {chosen.name}: the careplan service needs orgnr_parent and orgnr_child "
            "(the legal entity and the point of care) in the tenants file"
        )
    return chosen
