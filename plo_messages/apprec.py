"""Applikasjonskvittering (AppRec v1.0 and v1.1): the receiver's answer to every message.

Status (kodeverk 8258): 1 OK, 2 Avvist (rejected), 3 OK with errors in a part. Errors use
kodeverk 8221. The version answering a message follows the version of its payload
(``message-types.yaml``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import yaml
from lxml import etree

from plo_messages.model import Coded, Organisation
from plo_messages.msghead import XSI, coded, read_coded, sub, text_of
from plo_messages.registry import AppRecVersion


@cache
def _codes() -> dict[str, Any]:
    data = yaml.safe_load(
        resources.files("plo_messages").joinpath("apprec-codes.yaml").read_text("utf-8")
    )
    return {
        "status": {str(k): v for k, v in data["status"]["codes"].items()},
        "errors": {str(k): v for k, v in data["errors"]["codes"].items()},
        "status_oid": data["status"]["oid"],
        "errors_oid": data["errors"]["oid"],
    }


def error(code: str, detail: str | None = None) -> Coded:
    """An AppRec error (kodeverk 8221) with its official text; ``detail`` goes in ``OT``."""
    codes = _codes()
    if code not in codes["errors"]:
        raise KeyError(f"unknown AppRec error code {code}")
    return Coded(
        code, codes["errors"][code], codes["errors_oid"], detail[:1000] if detail else None
    )


@dataclass(slots=True)
class AppRec:
    version: str
    status: str
    """1 OK, 2 Avvist, 3 OK feil i delmelding"""
    original_msg_id: str
    original_type: Coded
    original_issue_date: str
    sender: Organisation
    receiver: Organisation
    id: str = ""
    gen_date: str = ""
    errors: list[Coded] = field(default_factory=list)
    sender_role: str = "primary"
    """``primary`` (the message's receiver answers) or ``copy`` (a copy receiver answers)."""

    @property
    def ok(self) -> bool:
        return self.status in ("1", "3")


def _inst(parent: etree._Element, ns: str, org: Organisation) -> None:
    hcp = sub(parent, ns, "HCP")
    inst = sub(hcp, ns, "Inst")
    sub(inst, ns, "Name", org.name)
    if org.her_id:
        sub(inst, ns, "Id", org.her_id)
        coded(inst, ns, "TypeId", Coded("HER", "HER-id"))
    unit = org.unit
    while unit is not None:
        dept = sub(inst, ns, "Dept")
        sub(dept, ns, "Name", unit.name)
        if unit.her_id:
            sub(dept, ns, "Id", unit.her_id)
            coded(dept, ns, "TypeId", Coded("HER", "HER-id"))
        if unit.person is not None:
            break
        unit = unit.unit
    person = org.person or (unit.person if unit is not None else None)
    if person is not None:
        p = sub(inst, ns, "HCPerson")
        sub(p, ns, "Name", person.name)
        her = person.ident("HER")
        if her:
            sub(p, ns, "Id", her)
            coded(p, ns, "TypeId", Coded("HER", "HER-id"))


def build_apprec(rec: AppRec, version: AppRecVersion) -> etree._Element:
    ns = version.namespace
    root = etree.Element(f"{{{ns}}}AppRec", nsmap={None: ns, "xsi": XSI})  # type: ignore[dict-item]
    coded(root, ns, "MsgType", Coded("APPREC"))
    sub(root, ns, "MIGversion", version.mig_version)
    sub(root, ns, "SoftwareName", "DHO Interop")
    sub(root, ns, "GenDate", rec.gen_date)
    sub(root, ns, "Id", rec.id)
    for tag, org, role in (
        (
            "Sender",
            rec.sender,
            version.copy_role if rec.sender_role == "copy" else version.sender_role,
        ),
        ("Receiver", rec.receiver, version.receiver_role),
    ):
        party = sub(root, ns, tag)
        coded(party, ns, "Role", Coded(role["V"], role.get("DN")))
        _inst(party, ns, org)
    codes = _codes()
    coded(root, ns, "Status", Coded(rec.status, codes["status"].get(rec.status)))
    for err in rec.errors:
        coded(root, ns, "Error", err)
    orig = sub(root, ns, "OriginalMsgId")
    coded(orig, ns, "MsgType", rec.original_type)
    sub(orig, ns, "IssueDate", rec.original_issue_date)
    sub(orig, ns, "Id", rec.original_msg_id)
    return root


def _read_party(el: etree._Element | None) -> Organisation:
    inst = el.find("{*}HCP/{*}Inst") if el is not None else None
    if inst is None:
        prof = el.find("{*}HCP/{*}HCProf") if el is not None else None
        return Organisation(name=text_of(prof, "{*}Name") or "")
    from plo_messages.model import HealthcareProfessional, Ident

    def idents(node: etree._Element) -> list[Ident]:
        value = text_of(node, "{*}Id")
        tid = node.find("{*}TypeId")
        if not value:
            return []
        return [Ident(value, (tid.get("V") if tid is not None else None) or "HER")]

    org = Organisation(name=text_of(inst, "{*}Name") or "", idents=idents(inst))
    depts = inst.findall("{*}Dept")
    node = org
    for d in depts:
        node.unit = Organisation(name=text_of(d, "{*}Name") or "", idents=idents(d))
        node = node.unit
    person = inst.find("{*}HCPerson")
    if person is not None:
        node.person = HealthcareProfessional(
            family_name=text_of(person, "{*}Name"), idents=idents(person)
        )
    return org


def parse_apprec(root: etree._Element, version: AppRecVersion) -> AppRec:
    orig = root.find("{*}OriginalMsgId")
    status = root.find("{*}Status")
    return AppRec(
        version=version.version,
        status=(status.get("V") if status is not None else None) or "",
        original_msg_id=text_of(orig, "{*}Id") or "",
        original_type=read_coded(orig.find("{*}MsgType") if orig is not None else None)
        or Coded(""),
        original_issue_date=text_of(orig, "{*}IssueDate") or "",
        sender=_read_party(root.find("{*}Sender")),
        receiver=_read_party(root.find("{*}Receiver")),
        id=text_of(root, "{*}Id") or "",
        gen_date=text_of(root, "{*}GenDate") or "",
        errors=[c for c in (read_coded(e) for e in root.findall("{*}Error")) if c is not None],
        sender_role="copy"
        if _role(root.find("{*}Sender")) == version.copy_role["V"]
        else "primary",
    )


def _role(party: etree._Element | None) -> str | None:
    role = party.find("{*}Role") if party is not None else None
    return role.get("V") if role is not None else None
