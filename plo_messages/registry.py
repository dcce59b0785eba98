"""The message types DHO Interop knows (``message-types.yaml``): payload namespaces, schemas,
MIG versions and which AppRec version answers which payload version."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml


@dataclass(frozen=True, slots=True)
class PayloadType:
    type: str
    """MsgHead ``MsgInfo/Type/@V`` (kodeverk 8279)."""
    display: str
    kind: str
    version: str
    namespace: str
    schema: str
    root: str
    apprec: str
    build: bool
    receive: bool


@dataclass(frozen=True, slots=True)
class AppRecVersion:
    version: str
    namespace: str
    schema: str
    mig_version: str
    sender_role: dict[str, str]
    receiver_role: dict[str, str]
    copy_role: dict[str, str]
    """The role of a copy receiver answering (``OtherReceiver``)."""


@dataclass(frozen=True, slots=True)
class MessageRegistry:
    msghead_namespace: str
    msghead_mig_version: str
    payloads: tuple[PayloadType, ...]
    apprecs: dict[str, AppRecVersion]
    schema_files: dict[str, str]
    """namespace → schema path relative to the schema folder"""
    envelopes: frozenset[str] = frozenset()
    """namespaces of wrappers whose inner MsgHead/AppRec is the message"""

    def payload(self, type_code: str, namespace: str) -> PayloadType | None:
        for p in self.payloads:
            if p.type == type_code and p.namespace == namespace:
                return p
        return None

    def by_namespace(self, namespace: str) -> list[PayloadType]:
        return [p for p in self.payloads if p.namespace == namespace]

    def for_building(self, type_code: str) -> PayloadType:
        for p in self.payloads:
            if p.type == type_code and p.build:
                return p
        raise KeyError(f"DHO Interop does not build {type_code}")

    def apprec_by_namespace(self, namespace: str) -> AppRecVersion | None:
        for a in self.apprecs.values():
            if a.namespace == namespace:
                return a
        return None


def _parse(data: dict[str, Any]) -> MessageRegistry:
    files: dict[str, str] = {data["msghead"]["namespace"]: data["msghead"]["schema"]}
    for c in data.get("components", []):
        files[c["namespace"]] = c["schema"]
    apprecs = {}
    for version, a in data["apprec"].items():
        apprecs[str(version)] = AppRecVersion(
            str(version),
            a["namespace"],
            a["schema"],
            a["mig_version"],
            dict(a["sender_role"]),
            dict(a["receiver_role"]),
            dict(a["copy_role"]),
        )
        files[a["namespace"]] = a["schema"]
    payloads = []
    for p in data["payloads"]:
        payloads.append(
            PayloadType(
                p["type"],
                p["display"],
                p["kind"],
                str(p["version"]),
                p["namespace"],
                p["schema"],
                p["root"],
                str(p["apprec"]),
                bool(p.get("build", False)),
                bool(p.get("receive", False)),
            )
        )
        files[p["namespace"]] = p["schema"]
    return MessageRegistry(
        data["msghead"]["namespace"],
        data["msghead"]["mig_version"],
        tuple(payloads),
        apprecs,
        files,
        frozenset(e["namespace"] for e in data.get("envelopes", [])),
    )


@cache
def load_registry() -> MessageRegistry:
    text = resources.files("plo_messages").joinpath("message-types.yaml").read_text("utf-8")
    return _parse(yaml.safe_load(text))
