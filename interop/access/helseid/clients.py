"""Which HelseID clients and organisations we serve, and as which role: the deployer's mapping
file (``mappings/access/helseid-clients.yaml``, setting ``INTEROP_HELSEID_CLIENTS_FILE``).

Each entry names a HelseID client id and/or the organisation numbers the token must carry
(``orgnr_parent``: the legal entity; ``orgnr_child``: the sub-unit), and gives the role and,
optionally, a HER-id. All fields an entry names must match; the first matching entry in file
order wins. A token no entry matches is refused: there is no default role.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from interop.identifiers import validate_herid

HELSEID_ROLES = ("gp", "hospital", "epj", "followup")
"""Roles a HelseID token can be given (never ``admin`` or ``vendor``: those use API keys)."""

_ORGNR = re.compile(r"[0-9]{9}")
_MATCH = ("client_id", "orgnr_parent", "orgnr_child")
_FIELDS = frozenset({*_MATCH, "role", "herid", "name"})


@dataclass(frozen=True, slots=True)
class ClientEntry:
    role: str
    client_id: str | None = None
    orgnr_parent: str | None = None
    orgnr_child: str | None = None
    herid: str | None = None
    name: str | None = None

    def matches(self, client_id: str | None, parent: str | None, child: str | None) -> bool:
        return (
            (self.client_id is None or self.client_id == client_id)
            and (self.orgnr_parent is None or self.orgnr_parent == parent)
            and (self.orgnr_child is None or self.orgnr_child == child)
        )


class ClientMap:
    def __init__(self, entries: list[ClientEntry], source: str = "") -> None:
        self.entries = entries
        self.source = source

    def find(
        self, client_id: str | None, parent: str | None, child: str | None
    ) -> ClientEntry | None:
        for entry in self.entries:
            if entry.matches(client_id, parent, child):
                return entry
        return None

    @classmethod
    def parse(cls, data: Any, source: str) -> ClientMap:
        """Raises ValueError naming the file and entry for anything wrong."""
        if data is None:
            data = {}
        if not isinstance(data, dict) or not isinstance(data.get("clients", []), list):
            raise ValueError(f"{source}: expected a mapping with a 'clients' list")
        entries = []
        for n, raw in enumerate(data.get("clients") or [], start=1):
            where = f"{source}: clients entry {n}"
            if not isinstance(raw, dict):
                raise ValueError(f"{where}: expected a mapping")
            unknown = set(raw) - _FIELDS
            if unknown:
                raise ValueError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
            values = {k: None if v is None else str(v) for k, v in raw.items()}
            if not any(values.get(k) for k in _MATCH):
                raise ValueError(f"{where}: name a client_id, orgnr_parent or orgnr_child")
            role = values.get("role")
            if role not in HELSEID_ROLES:
                raise ValueError(
                    f"{where}: role {role!r} must be one of {', '.join(HELSEID_ROLES)}"
                )
            for k in ("orgnr_parent", "orgnr_child"):
                # nine digits; no mod-11 check: HelseID's test organisations do not all pass it
                if values.get(k) is not None and not _ORGNR.fullmatch(values[k] or ""):
                    raise ValueError(f"{where}: {k} {values[k]!r} is not a 9-digit org.nr")
            if values.get("herid") is not None and not validate_herid(values["herid"] or ""):
                raise ValueError(f"{where}: herid {values['herid']!r} is not a HER-id")
            entries.append(ClientEntry(**values))  # type: ignore[arg-type]
        return cls(entries, source)


def clients_file(configured: Path | None, mappings_dir: Path | None) -> Path | None:
    """The file to read: the setting, an edited mappings folder's copy, or None (packaged)."""
    if configured is not None:
        return configured
    if mappings_dir is not None and (mappings_dir / "access" / "helseid-clients.yaml").is_file():
        return mappings_dir / "access" / "helseid-clients.yaml"
    return None


def load_client_map(path: Path | None) -> ClientMap:
    if path is None:
        resource = files("mappings") / "access" / "helseid-clients.yaml"
        return ClientMap.parse(yaml.safe_load(resource.read_text("utf-8")), "helseid-clients.yaml")
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise ValueError(f"{path}: cannot be read ({exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({exc})") from None
    return ClientMap.parse(data, str(path))
