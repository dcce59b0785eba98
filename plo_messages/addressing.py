"""Whether a message is ours to answer, and in whose name (the receive checklist's addressing).

A MsgHead names its receiver on two levels: the organisation (level 1, e.g. the municipality)
and, below it, a service (level 2, e.g. *Hjemmesykepleien*), sometimes down to a person. A
receiver is

* ``ours`` when the most specific level it names is one of our HER-ids;
* ``unknown-service`` when the organisation is ours but the service it names is not (an
  unknown HER-id, or a service identified only by a local id): *Avvist* E21, answered in the
  name of our organisation — never in the name of the unknown service;
* ``foreign`` when no level is ours: nobody here may answer it, least of all in another
  organisation's name.

The primary receiver answers with role *primary*, a copy receiver (``OtherReceiver``) with role
*copy* (AppRec role COP, *Kopimottaker*).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

from plo_messages.model import Organisation

Match = Literal["ours", "unknown-service", "foreign"]
Role = Literal["primary", "copy"]


def normalise_her_id(value: str) -> str:
    """HER-ids are written with thousands separators in some real messages ("258.521")."""
    return value.replace(".", "").replace(" ", "").strip()


def _org_path(org: Organisation) -> list[Organisation]:
    path = [org]
    while path[-1].unit is not None:
        path.append(path[-1].unit)
    return path


def match(org: Organisation, own: Collection[str]) -> Match:
    """How a receiver as addressed relates to our HER-ids ``own``."""
    path = _org_path(org)
    deepest = path[-1]
    addressed = org.addressed_her_id
    level2_without_her = len(path) > 1 and deepest.her_id is None
    if addressed and normalise_her_id(addressed) in own and not level2_without_her:
        return "ours"
    if any(normalise_her_id(h) in own for h in org.her_ids()):
        return "unknown-service"
    return "foreign"


def ours_only(org: Organisation, own: Collection[str]) -> Organisation:
    """The receiver cut below its deepest level that is ours: the name we may answer in."""
    path = _org_path(org)
    keep = 0
    for i, node in enumerate(path):
        if node.her_id and normalise_her_id(node.her_id) in own:
            keep = i
    head = Organisation(path[0].name, list(path[0].idents))
    node = head
    for nxt in path[1 : keep + 1]:
        node.unit = Organisation(nxt.name, list(nxt.idents))
        node = node.unit
    return head


@dataclass(frozen=True, slots=True)
class Addressing:
    """Who answers a message here: ``answerers`` (organisation as addressed, role); when none
    of the receivers is ours but our organisation is named with an unknown service,
    ``unknown_service`` is the organisation to answer E21 from."""

    answerers: tuple[tuple[Organisation, Role], ...]
    unknown_service: Organisation | None

    @property
    def for_us(self) -> bool:
        return bool(self.answerers) or self.unknown_service is not None


def address(receiver: Organisation, copies: list[Organisation], own: Collection[str]) -> Addressing:
    answerers: list[tuple[Organisation, Role]] = []
    primary = match(receiver, own)
    if primary == "ours":
        answerers.append((receiver, "primary"))
    for copy in copies:
        if match(copy, own) == "ours":
            answerers.append((copy, "copy"))
    unknown = None
    if not answerers:
        for org in (receiver, *copies):
            if match(org, own) == "unknown-service":
                unknown = ours_only(org, own)
                break
    return Addressing(tuple(answerers), unknown)
