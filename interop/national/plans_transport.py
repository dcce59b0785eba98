"""NHN *Pasientens planer* as an outbox transport (``connectionType`` ``nhn-plans``): the plan
JSON built by :mod:`interop.national.plans_export` is created or updated at the Endpoint's
address (the API's base URL), with HelseID + DPoP (API ``plans`` in the tenants file) unless
``INTEROP_NHN_PLANS_HELSEID=false`` (NHN's development environment has no HelseID).

* No NHN plan tied to the patient's plans yet: the patient's NHN plans are searched first; one
  with exactly our content is adopted (our own create whose answer was lost), otherwise the
  plan is created.
* Tied: updated with the version we hold. On 409 the current plan is read: when its clinical
  content is what we last exported (someone changed status or comment only, or our own
  update's answer was lost) the update is sent again with the server's version; when someone
  else changed the zones nothing is overwritten — the conflict is written on our CarePlan and
  the message is dead-lettered with the reason, for an operator (``interop outbox dead``).
* A revoke or completion is not held up by someone else's zones: that our plan is no longer
  in use must reach NHN (a plan shown there as active that nobody follows anymore is the
  danger), so the update carries the status, our comment and a note that the zones were left
  as they are — never the clinical content. The conflict is still recorded on our CarePlan
  (and ``interop plans poll-nhn`` tells the care team); the version we hold stays, so a later
  plan meets the 409 again and overwrites nothing.
* An NHN plan whose ``subject`` is not the patient we send for is never updated.

The NHN id, version and exported content are written back on our CarePlan (service write).
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
import orjson

from interop.national.helseid import HelseIdClients
from interop.national.plans_api import (
    PlansApiClient,
    PlansApiError,
    PlanVersionConflict,
    clinical,
    plans_auth,
    subject_number,
)
from interop.national.plans_export import link_of, mapping, patient_link, set_link
from interop.routing.outbox import OutboxMessage
from interop.routing.transports import PermanentDeliveryError, TransientDeliveryError
from interop.store.context import WriteContext
from interop.store.repository import FhirStore

log = logging.getLogger("interop.national")


def _same_subject(found: dict[str, Any], subject: dict[str, Any]) -> bool:
    return subject_number(found) == subject["value"]


class PlansTransport:
    name = "nhn-plans"

    def __init__(
        self,
        store: FhirStore | None,
        helseid: HelseIdClients | None,
        http: httpx.Client,
        *,
        use_helseid: bool = True,
        tenant: str | None = None,
        path: str = "/plan",
        retries: int = 3,
    ) -> None:
        self.store = store
        self.helseid = helseid
        self.http = http
        self.use_helseid = use_helseid
        self.tenant = tenant
        self.path = path
        self.retries = retries

    def client(self, base_url: str) -> PlansApiClient:
        return PlansApiClient(base_url, http=self.http, auth=self._auth(), path=self.path)

    def _auth(self) -> httpx.Auth | None:
        try:
            return plans_auth(self.helseid, use_helseid=self.use_helseid, tenant=self.tenant)
        except PlansApiError as exc:
            raise PermanentDeliveryError(str(exc)) from None

    def deliver(self, message: OutboxMessage) -> bool:
        if self.store is None:
            raise PermanentDeliveryError("the nhn-plans transport needs the store (worker wiring)")
        try:
            payload = orjson.loads(message.payload)
            plan_ref: str = payload["carePlan"]
            request: dict[str, Any] = payload["request"]
            subject: dict[str, Any] = request["subject"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise PermanentDeliveryError(f"not an NHN plan payload: {exc}") from None
        api = self.client(message.address)
        try:
            saved, conflict = self._send(api, plan_ref, request, subject)
        except PlansApiError as exc:
            if exc.transient:
                raise TransientDeliveryError(str(exc)) from exc
            raise PermanentDeliveryError(str(exc)) from exc
        self._record(plan_ref, saved, conflict)
        if conflict and _in_use(request):
            raise PermanentDeliveryError(conflict)
        log.info(
            "NHN plan %s at version %s for %s", saved.get("id"), saved.get("version"), plan_ref
        )
        return True

    def _send(
        self,
        api: PlansApiClient,
        plan_ref: str,
        request: dict[str, Any],
        subject: dict[str, Any],
    ) -> tuple[dict[str, Any], str | None]:
        """The NHN plan as saved, and the conflict that kept us from saving (or None)."""
        link = self._link(plan_ref)
        wanted = clinical(request.get("clinical_content"))
        if link is None:
            for found in api.search(subject["value"]):
                if _same_subject(found, subject) and clinical(found.get("clinical_content")) == (
                    wanted
                ):
                    link = {"id": found["id"], "version": found["version"], "exported": wanted}
                    break
            else:
                created = api.create(request)
                if not _same_subject(created, subject):
                    raise PlansApiError("NHN answered the create with another patient's plan")
                return created, None
        version = link.get("version")
        exported = link.get("exported")
        for _ in range(self.retries):
            if not isinstance(version, int):
                current = api.get(link["id"])
                version = int(current["version"])
            try:
                updated = api.update(link["id"], {**_without_subject(request), "version": version})
                if not _same_subject(updated, subject):
                    raise PlansApiError(f"NHN plan {link['id']} belongs to another patient")
                return updated, None
            except PlanVersionConflict:
                current = api.get(link["id"])
                if not _same_subject(current, subject):
                    raise PlansApiError(
                        f"NHN plan {link['id']} belongs to another patient; not updated"
                    ) from None
                theirs = clinical(current.get("clinical_content"))
                if theirs not in (exported, wanted):
                    reason = (
                        f"NHN plan {link['id']} was changed by someone else (version "
                        f"{current.get('version')}, {current.get('updated_at')}, by "
                        f"{orjson.dumps(current.get('updated_by')).decode()}): its zones differ "
                        f"from what we exported; not overwritten — reconcile by hand "
                        f"(`interop plans import-nhn`) and activate again"
                    )
                    if _in_use(request):
                        return current, reason
                    # our plan was revoked or completed: that it is no longer in use must
                    # reach NHN (a plan shown as active there that nobody follows is the
                    # danger), but their zones stay — the status alone, never the content
                    updated = api.update(link["id"], _status_only(request, current))
                    if not _same_subject(updated, subject):
                        raise PlansApiError(
                            f"NHN plan {link['id']} belongs to another patient"
                        ) from None
                    return updated, reason
                version = int(current["version"])
        raise PlansApiError(f"NHN plan {link['id']}: still 409 after {self.retries} tries")

    def _link(self, plan_ref: str) -> dict[str, Any] | None:
        assert self.store is not None
        with self.store.reader() as conn:
            stored = self.store.get("CarePlan", plan_ref.split("/", 1)[1], conn)
            if stored is None or stored.deleted:
                raise PermanentDeliveryError(f"{plan_ref} is gone")
            return patient_link(conn, _patient_of(stored.json()))

    def _record(self, plan_ref: str, saved: dict[str, Any], conflict: str | None) -> None:
        assert self.store is not None
        with self.store.write(WriteContext.service()) as tx:
            stored = tx.get("CarePlan", plan_ref.split("/", 1)[1])
            if stored is None or stored.deleted:
                return
            cp = stored.json()
            cp.pop("meta", None)
            old = cp.get("identifier"), cp.get("extension")
            if conflict is None:
                content = saved.get("clinical_content") or {}
                set_link(cp, str(saved["id"]), int(saved["version"]), content)
            else:
                # keep the version and content we hold: the next export meets the same 409
                # until a person has reconciled (imported the NHN plan and activated it)
                held = link_of(cp) or patient_link(tx.conn, _patient_of(cp)) or {}
                set_link(
                    cp,
                    str(saved["id"]),
                    int(held.get("version") or 0),
                    held.get("exported") or {},
                    conflict,
                )
            if (cp.get("identifier"), cp.get("extension")) != old:
                tx.update("CarePlan", cp["id"], cp)


def _in_use(request: dict[str, Any]) -> bool:
    """Whether the request exports a plan in use (NHN ``status`` of our ``active`` state,
    ``mappings/national/nhn-plans.yaml``), not one revoked or completed."""
    return bool(request.get("status") == mapping()["status"]["active"])


def _status_only(request: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """An update that ends the NHN plan's use (revoked/completed) and leaves its clinical
    content — someone else's zones — as it is."""
    from interop.text import text

    comment = text("nhn_plan.revoke_over_conflict", version=current.get("version"))
    if request.get("comment"):
        comment = f"{request['comment']} ({comment})"
    body: dict[str, Any] = {
        "version": int(current["version"]),
        "status": request["status"],
        "comment": comment,
    }
    if request.get("updated_by"):
        body["updated_by"] = request["updated_by"]
    return body


def _without_subject(request: dict[str, Any]) -> dict[str, Any]:
    """An update carries no ``subject`` (read-only after create)."""
    return {k: v for k, v in request.items() if k != "subject"}


def _patient_of(cp: dict[str, Any]) -> str:
    return str((cp.get("subject") or {}).get("reference", "")).split("/", 1)[-1]
