"""Keep the FHIR address book in step with Adresseregisteret, and each patient's GP with
Fastlegeregisteret.

For every HER-id we send to (Organization/PractitionerRole resources that came from AR, plus
each patient's GP according to FLR, plus HER-ids an operator names), AR is asked:

* a **Person** (a GP) becomes a PractitionerRole (HER-id) under its parent Organization (the
  practice), with the Practitioner (HPR number) and an EDI 2.0 Endpoint;
* an **Organization** or a level-2 **Service** becomes an Organization (a service ``partOf`` its
  parent) with an EDI 2.0 Endpoint;
* a HER-id AR no longer knows (or whose ``validTo`` has passed) makes its Endpoint ``off``, with
  the reason on it; messages queued to that Endpoint are dead-lettered with that reason, and new
  ones cannot be routed to it (the reason is given).

Everything written is tagged as coming from AR (``meta.tag``) with the time of the sync
(extension :data:`SYNCED_AT`). Patients' GPs from FLR are tagged likewise on the reference.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update

from interop.fhir.dates import format_instant, now_utc
from interop.fhir.outcome import FhirError
from interop.identifiers import HERID_OID, HPR_OID, ORGNR_OID
from interop.messaging.addressbook import (
    DNR_OID,
    FNR_OID,
    INACTIVE_REASON,
    TRANSPORT_SYSTEM,
    find_by_her_id,
    own_her_ids,
    resource_json,
)
from interop.national.ar import ArClient, ArError, Party
from interop.national.flr import FlrClient, FlrError
from interop.routing import gp_change
from interop.store.context import WriteContext
from interop.store.schema import outbox_table, reference_table, resource_table, token_table

log = logging.getLogger("interop.national")

SOURCE_SYSTEM = "https://dho-interop.no/fhir/CodeSystem/record-source"
AR_TAG = {"system": SOURCE_SYSTEM, "code": "adresseregisteret", "display": "Adresseregisteret"}
FLR_SOURCE = "fastlegeregisteret"
SYNCED_AT = "https://dho-interop.no/fhir/StructureDefinition/register-synced-at"
SOURCE_EXT = "https://dho-interop.no/fhir/StructureDefinition/register-source"
AR_ENDPOINT_ID = "https://dho-interop.no/fhir/NamingSystem/ar-edi2-endpoint"


@dataclass
class SyncReport:
    updated: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    dead_lettered: int = 0
    gp_changed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        return {
            "created": len(self.created),
            "updated": len(self.updated),
            "gone": len(self.gone),
            "dead-lettered": self.dead_lettered,
            "gp-changed": len(self.gp_changed),
            "errors": len(self.errors),
        }


def _tagged(resource: dict[str, Any], now: str) -> dict[str, Any]:
    meta = resource.setdefault("meta", {})
    tags = [t for t in meta.get("tag", []) if t.get("system") != SOURCE_SYSTEM]
    meta["tag"] = [*tags, AR_TAG]
    resource["extension"] = [
        e for e in resource.get("extension", []) if e.get("url") != SYNCED_AT
    ] + [{"url": SYNCED_AT, "valueDateTime": now}]
    return resource


def _from_ar(resource: dict[str, Any]) -> bool:
    return any(
        t.get("system") == SOURCE_SYSTEM and t.get("code") == "adresseregisteret"
        for t in (resource.get("meta") or {}).get("tag", [])
    )


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    skip = {"meta", "extension", "id"}
    return {k: v for k, v in a.items() if k not in skip} == {
        k: v for k, v in b.items() if k not in skip
    }


class AddressBookSync:
    def __init__(
        self,
        services: Any,
        ar: ArClient,
        *,
        edi2_address: str,
        flr: FlrClient | None = None,
    ) -> None:
        self.services = services
        self.store = services.store
        self.ar = ar
        self.flr = flr
        self.edi2_address = edi2_address
        self.now = format_instant(now_utc())

    # ---- what to sync ---------------------------------------------------------------------
    def known_her_ids(self) -> list[str]:
        """HER-ids of AR-sourced Organizations and PractitionerRoles (not our own)."""
        with self.store.reader() as conn:
            rows = conn.execute(
                select(token_table.c.res_type, token_table.c.res_id, token_table.c.code).where(
                    token_table.c.res_type.in_(("Organization", "PractitionerRole")),
                    token_table.c.param == "identifier",
                    token_table.c.system == HERID_OID,
                )
            ).all()
            ours = own_her_ids(conn, [h for h in (self.services.settings.our_herid,) if h])
            out = set()
            for rtype, rid, her in rows:
                res = resource_json(self.store, conn, f"{rtype}/{rid}")
                if res is not None and _from_ar(res) and her not in ours:
                    out.add(str(her))
        return sorted(out)

    def run(self, her_ids: list[str] | None = None, *, patients: bool = True) -> SyncReport:
        report = SyncReport()
        wanted = set(her_ids or [])
        gps: dict[str, str] = {}
        if patients and self.flr is not None:
            gps = self._gps_from_flr(report)
            wanted |= set(gps.values())
        wanted |= set(self.known_her_ids())
        for her in sorted(wanted):
            try:
                self.sync_her_id(her, report)
            except FhirError as exc:  # AR data our store refuses (say, a bad org.nr): kept out
                report.errors.append(f"HER-id {her}: AR data refused: {exc}")
                log.warning("address book sync of HER-id %s: %s", her, exc)
            except ArError as exc:
                report.errors.append(f"HER-id {her}: {exc}")
                log.warning("address book sync of HER-id %s: %s", her, exc)
        for patient_id, her in gps.items():
            self._set_gp(patient_id, her, report)
        return report

    # ---- one HER-id -----------------------------------------------------------------------
    def sync_her_id(self, her: str, report: SyncReport) -> None:
        party = self.ar.party(her)
        if party is None or not party.active:
            why = (
                f"HER-id {her} is no longer in Adresseregisteret (sync {self.now})"
                if party is None
                else f"HER-id {her} is no longer valid in Adresseregisteret (validTo "
                f"{party.valid_to})"
            )
            self._gone(her, why, report)
            return
        with self.store.write(WriteContext.service()) as tx:
            conn = tx.conn
            if party.type == "Person":
                org_ref = self._organisation(
                    tx,
                    conn,
                    party.parent_her_id,
                    party.parent_name,
                    party.parent_organization_number,
                    None,
                    report,
                )
                self._role(tx, conn, party, org_ref, report)
            else:
                parent_ref = None
                if party.type == "Service" and party.parent_her_id:
                    parent_ref = self._organisation(
                        tx,
                        conn,
                        party.parent_her_id,
                        party.parent_name,
                        party.parent_organization_number,
                        None,
                        report,
                    )
                org_ref = self._organisation(
                    tx,
                    conn,
                    party.her_id,
                    party.name,
                    party.organization_number,
                    parent_ref,
                    report,
                )
                if org_ref:
                    self._endpoint_on(tx, conn, org_ref, party.her_id, report)

    def _upsert(
        self, tx: Any, existing: dict[str, Any] | None, new: dict[str, Any], report: SyncReport
    ) -> str:
        if existing is None:
            stored = tx.create(_tagged(new, self.now))
            report.created.append(stored.reference)
            return str(stored.reference)
        merged = {**existing, **new, "id": existing["id"]}
        if _same(existing, merged) and _from_ar(existing):
            return f"{existing['resourceType']}/{existing['id']}"
        tx.update(existing["resourceType"], existing["id"], _tagged(merged, self.now))
        ref = f"{existing['resourceType']}/{existing['id']}"
        report.updated.append(ref)
        return ref

    def _by_identifier(
        self, conn: Any, rtype: str, system: str, value: str
    ) -> dict[str, Any] | None:
        row = conn.execute(
            select(token_table.c.res_id).where(
                token_table.c.res_type == rtype,
                token_table.c.param == "identifier",
                token_table.c.system == system,
                token_table.c.code == value,
            )
        ).first()
        return resource_json(self.store, conn, f"{rtype}/{row[0]}") if row else None

    def _holder(self, conn: Any, her: str, rtype: str) -> dict[str, Any] | None:
        for ref in find_by_her_id(conn, her):
            if ref.startswith(rtype + "/"):
                return resource_json(self.store, conn, ref)
        return None

    def _organisation(
        self,
        tx: Any,
        conn: Any,
        her: str | None,
        name: str | None,
        orgnr: str | None,
        part_of: str | None,
        report: SyncReport,
    ) -> str | None:
        if not her:
            return None
        existing = self._holder(conn, her, "Organization")
        idents = [{"system": HERID_OID, "value": her}]
        if orgnr:
            idents.insert(0, {"system": ORGNR_OID, "value": orgnr})
        new: dict[str, Any] = {
            "resourceType": "Organization",
            "active": True,
            "identifier": idents,
            "name": name or f"HER-id {her}",
        }
        if existing is not None:
            others = [
                i
                for i in existing.get("identifier", [])
                if i.get("system") not in (HERID_OID, ORGNR_OID)
            ]
            new["identifier"] = idents + others
        if part_of:
            new["partOf"] = {"reference": part_of}
        return self._upsert(tx, existing, new, report)

    def _endpoint(
        self, tx: Any, conn: Any, her: str, org_ref: str | None, report: SyncReport
    ) -> str:
        existing = self._ar_endpoint(conn, her)
        new: dict[str, Any] = {
            "resourceType": "Endpoint",
            "identifier": [{"system": AR_ENDPOINT_ID, "value": her}],
            "status": "active",
            "connectionType": {"system": TRANSPORT_SYSTEM, "code": "edi2"},
            "name": f"EDI 2.0 til HER-id {her}",
            "payloadType": [{"text": "KITH XML (MsgHead)"}],
            "address": self.edi2_address,
        }
        if org_ref:
            new["managingOrganization"] = {"reference": org_ref}
        if existing is not None:
            existing = {k: v for k, v in existing.items() if k != "extension"} | {
                "extension": [
                    e for e in existing.get("extension", []) if e.get("url") != INACTIVE_REASON
                ]
            }
        return self._upsert(tx, existing, new, report)

    def _ar_endpoint(self, conn: Any, her: str) -> dict[str, Any] | None:
        return self._by_identifier(conn, "Endpoint", AR_ENDPOINT_ID, her)

    def _endpoint_on(
        self, tx: Any, conn: Any, holder_ref: str, her: str, report: SyncReport
    ) -> None:
        holder = resource_json(self.store, conn, holder_ref)
        assert holder is not None
        org_ref = (
            holder_ref
            if holder["resourceType"] == "Organization"
            else (holder.get("organization") or {}).get("reference")
        )
        ep_ref = self._endpoint(tx, conn, her, org_ref, report)
        refs = [e.get("reference") for e in holder.get("endpoint", [])]
        if ep_ref not in refs:
            holder["endpoint"] = [*holder.get("endpoint", []), {"reference": ep_ref}]
            tx.update(holder["resourceType"], holder["id"], holder)

    def _role(
        self, tx: Any, conn: Any, party: Party, org_ref: str | None, report: SyncReport
    ) -> None:
        practitioner_ref = None
        if party.hpr_number:
            existing_p = self._by_identifier(conn, "Practitioner", HPR_OID, party.hpr_number)
            practitioner: dict[str, Any] = {
                "resourceType": "Practitioner",
                "identifier": [{"system": HPR_OID, "value": party.hpr_number}],
                "name": [{"text": party.name}],
            }
            practitioner_ref = self._upsert(tx, existing_p, practitioner, report)
        existing = self._holder(conn, party.her_id, "PractitionerRole")
        role: dict[str, Any] = {
            "resourceType": "PractitionerRole",
            "active": True,
            "identifier": [{"system": HERID_OID, "value": party.her_id}],
        }
        if org_ref:
            role["organization"] = {"reference": org_ref}
        if practitioner_ref:
            role["practitioner"] = {"reference": practitioner_ref}
        if existing is not None and existing.get("endpoint"):
            role["endpoint"] = existing["endpoint"]
        role_ref = self._upsert(tx, existing, role, report)
        self._endpoint_on(tx, conn, role_ref, party.her_id, report)

    # ---- gone from AR ---------------------------------------------------------------------
    def _gone(self, her: str, why: str, report: SyncReport) -> None:
        with self.store.write(WriteContext.service()) as tx:
            ep = self._ar_endpoint(tx.conn, her)
            if ep is None:
                return
            if ep.get("status") != "off":
                ep["status"] = "off"
                ep["extension"] = [
                    e for e in ep.get("extension", []) if e.get("url") != INACTIVE_REASON
                ] + [{"url": INACTIVE_REASON, "valueString": why}]
                tx.update("Endpoint", ep["id"], _tagged(ep, self.now))
                report.gone.append(f"Endpoint/{ep['id']}")
            result = tx.conn.execute(
                update(outbox_table)
                .where(
                    outbox_table.c.destination == f"Endpoint/{ep['id']}",
                    outbox_table.c.status == "queued",
                )
                .values(status="dead", last_error=why)
            )
            report.dead_lettered += int(result.rowcount or 0)

    # ---- Fastlegeregisteret ---------------------------------------------------------------
    def _gps_from_flr(self, report: SyncReport) -> dict[str, str]:
        """Patient id → GP HER-id per FLR (patients FLR says have no GP map to "")."""
        assert self.flr is not None
        with self.store.reader() as conn:
            rows = conn.execute(
                select(token_table.c.res_id, token_table.c.code).where(
                    token_table.c.res_type == "Patient",
                    token_table.c.param == "identifier",
                    token_table.c.system.in_((FNR_OID, DNR_OID)),
                )
            ).all()
        out: dict[str, str] = {}
        for pid, nin in rows:
            try:
                gp = self.flr.patient_gp(str(nin))
            except FlrError as exc:
                report.errors.append(f"Patient/{pid}: {exc}")
                continue
            if gp is not None:
                out[str(pid)] = gp.gp_her_id
        return out

    def patients_without_gp(self) -> list[str]:
        with self.store.reader() as conn:
            with_gp = select(reference_table.c.res_id).where(
                reference_table.c.res_type == "Patient",
                reference_table.c.param == "general-practitioner",
            )
            rows = conn.execute(
                select(resource_table.c.res_id).where(
                    resource_table.c.res_type == "Patient",
                    resource_table.c.deleted.is_(False),
                    resource_table.c.res_id.not_in(with_gp),
                )
            ).all()
        return [str(r[0]) for r in rows]

    def first_contact(self) -> SyncReport:
        """Patients with no GP yet (new ones): FLR → AR → ``generalPractitioner``. The worker
        runs this often; the full sync (:meth:`run`) keeps everyone current."""
        report = SyncReport()
        for pid in self.patients_without_gp():
            try:
                report_one = self.refresh_patient(pid)
            except (FlrError, ArError, FhirError) as exc:
                report.errors.append(f"Patient/{pid}: {exc}")
                continue
            report.created += report_one.created
            report.gp_changed += report_one.gp_changed
            report.errors += report_one.errors
        return report

    def refresh_patient(self, patient_id: str) -> SyncReport:
        """First contact: FLR → AR → Patient.generalPractitioner for one patient."""
        report = SyncReport()
        if self.flr is None:
            return report
        with self.store.reader() as conn:
            patient = resource_json(self.store, conn, f"Patient/{patient_id}")
        if patient is None:
            return report
        nin = next(
            (
                i["value"]
                for i in patient.get("identifier", [])
                if i.get("system") in (FNR_OID, DNR_OID)
            ),
            None,
        )
        if not nin:
            return report
        gp = self.flr.patient_gp(nin)
        if gp is None:
            return report
        self.sync_her_id(gp.gp_her_id, report)
        self._set_gp(patient_id, gp.gp_her_id, report)
        return report

    def _set_gp(self, patient_id: str, her: str, report: SyncReport) -> None:
        with self.store.write(WriteContext.service()) as tx:
            role = self._holder(tx.conn, her, "PractitionerRole")
            if role is None:
                report.errors.append(
                    f"Patient/{patient_id}: GP HER-id {her} not in the address book"
                )
                return
            patient = resource_json(self.store, tx.conn, f"Patient/{patient_id}")
            if patient is None:
                return
            ref = f"PractitionerRole/{role['id']}"
            current = [g.get("reference") for g in patient.get("generalPractitioner", [])]
            if current == [ref]:
                return
            # the write hook holds what is queued for the former GP (interop.routing.gp_change)
            tx.context[gp_change.SOURCE_KEY] = "per Fastlegeregisteret"
            patient["generalPractitioner"] = [
                {
                    "reference": ref,
                    "extension": [
                        {"url": SOURCE_EXT, "valueCode": FLR_SOURCE},
                        {"url": SYNCED_AT, "valueDateTime": self.now},
                    ],
                }
            ]
            tx.update("Patient", patient_id, patient)
            report.dead_lettered += int(tx.context.pop(gp_change.HELD_KEY, 0) or 0)
            report.gp_changed.append(f"Patient/{patient_id}")
            log.info("Patient/%s: GP is now HER-id %s per Fastlegeregisteret", patient_id, her)


def inactive_reason(endpoint: dict[str, Any]) -> str | None:
    for e in endpoint.get("extension", []):
        if e.get("url") == INACTIVE_REASON:
            return str(e.get("valueString"))
    return None
