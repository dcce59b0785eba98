"""Who may send HL7 v2 over MLLP, and in whose name: the deployer's list in
``mllp-senders.yaml`` (setting ``INTEROP_MLLP_SENDERS``, else the file in the mappings folder).

MLLP has no bearer token, so a connection is tied to a writer by the list: a sender is its
MSH-3/MSH-4 (sending application and facility, first components) *and* the addresses it
connects from. The listener refuses (``AR``) a message from a sender not listed or from an
address not listed for it, before storing anything; the processor runs a stored message in
the listed sender's name (a vendor's limits, see :mod:`interop.access.vendor_writes`, or the
follow-up centre's none) and fails one whose sender is no longer listed. The file is read
again when it changes.
"""

from __future__ import annotations

import ipaddress
import threading
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from interop.access.vendor_writes import VendorWriter
from interop.config import Settings
from interop.identifiers import orgnr_problem

FILE_NAME = "mllp-senders.yaml"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class SenderNotListed(Exception):
    """A stored message whose sender is no longer listed: it is not processed."""


class SendersFileError(ValueError):
    """The senders file cannot be read or is not valid (nothing is taken until it is fixed)."""


class _Sender(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    application: str = Field(min_length=1)
    facility: str = ""
    peers: list[str] = Field(min_length=1)
    role: Literal["vendor", "followup"]
    orgnr: str | None = None
    patient_id_scopes: list[str] = Field(default_factory=list, alias="patientIdScopes")

    @field_validator("peers")
    @classmethod
    def _networks(cls, peers: list[str]) -> list[str]:
        for p in peers:
            ipaddress.ip_network(str(p), strict=False)  # ValueError names the bad one
        return [str(p) for p in peers]

    @field_validator("orgnr")
    @classmethod
    def _orgnr(cls, orgnr: str | None) -> str | None:
        if orgnr is not None and orgnr_problem(str(orgnr)):
            raise ValueError(f"{orgnr!r}: {orgnr_problem(str(orgnr))}")
        return None if orgnr is None else str(orgnr)


class _SendersFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    senders: list[_Sender] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class MllpSender:
    """A listed sender and the name it writes in."""

    application: str
    facility: str
    peers: tuple[Network, ...]
    role: Literal["vendor", "followup"]
    orgnr: str | None
    patient_id_scopes: tuple[str, ...]

    @property
    def key(self) -> str:
        """As the listener stores it (:attr:`adapters.hl7v2.MshInfo.sender`)."""
        return f"{self.application}|{self.facility}"

    @property
    def vendor(self) -> VendorWriter | None:
        """The vendor's limits (None for the follow-up centre's own engine)."""
        if self.role != "vendor" or self.orgnr is None:
            return None
        return VendorWriter(self.orgnr, self.patient_id_scopes)

    @property
    def source(self) -> str:
        """The ingest source: a vendor's org.nr (its message ids and user ids are its own, as
        over HTTP), else the sender as stored."""
        return self.orgnr if self.role == "vendor" and self.orgnr else self.key

    def admits(self, peer: str | None) -> bool:
        if not peer:
            return False
        try:
            address = ipaddress.ip_address(peer.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in net for net in self.peers)


@dataclass(frozen=True, slots=True)
class MllpSenders:
    by_key: dict[str, MllpSender]

    def get(self, key: str) -> MllpSender | None:
        return self.by_key.get(key)

    def refusal(self, key: str, peer: str | None) -> str | None:
        """Why a message from this sender over a connection from ``peer`` is not taken (None:
        it is). The text goes back to the sender in the ACK."""
        sender = self.by_key.get(key)
        if sender is None:
            return f"avsender {key} (MSH-3|MSH-4) er ikke registrert for MLLP her"
        if not sender.admits(peer):
            return f"avsender {key} er ikke registrert med adressen {peer or '(ukjent)'}"
        return None


def _parse(raw: bytes, where: str) -> MllpSenders:
    try:
        data: Any = yaml.safe_load(raw) or {}
    except yaml.YAMLError as exc:
        raise SendersFileError(f"{where}: not valid YAML: {exc}") from None
    try:
        parsed = _SendersFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(x) for x in first.get("loc", ()))
        raise SendersFileError(f"{where}: {loc}: {first.get('msg')}") from None
    out: dict[str, MllpSender] = {}
    for i, s in enumerate(parsed.senders):
        if s.role == "vendor" and not s.orgnr:
            raise SendersFileError(f"{where}: senders.{i}: a vendor needs its orgnr")
        sender = MllpSender(
            s.application,
            s.facility,
            tuple(ipaddress.ip_network(p, strict=False) for p in s.peers),
            s.role,
            s.orgnr,
            tuple(s.patient_id_scopes),
        )
        if sender.key in out:
            raise SendersFileError(f"{where}: senders.{i}: {sender.key} is listed twice")
        out[sender.key] = sender
    return MllpSenders(out)


_cache: dict[Path, tuple[tuple[int, int], MllpSenders]] = {}
_lock = threading.Lock()


def senders_file(settings: Settings) -> Path:
    if settings.mllp_senders is not None:
        return settings.mllp_senders
    if settings.mappings_dir is not None:
        return settings.mappings_dir / FILE_NAME
    return Path(str(files("mappings") / FILE_NAME))


def load_senders(settings: Settings) -> MllpSenders:
    """The senders list, read again when the file changed."""
    path = senders_file(settings)
    try:
        st = path.stat()
        stamp = (st.st_mtime_ns, st.st_size)
    except OSError as exc:
        raise SendersFileError(f"{path}: cannot read: {exc}") from None
    with _lock:
        hit = _cache.get(path)
        if hit is not None and hit[0] == stamp:
            return hit[1]
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SendersFileError(f"{path}: cannot read: {exc}") from None
    senders = _parse(raw, str(path))
    with _lock:
        _cache[path] = (stamp, senders)
    return senders
