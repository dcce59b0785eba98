"""The official KITH/e-helse XML Schemas, compiled once and used to validate whole messages.

A Hodemelding's ``Content`` is an ``xs:any processContents="strict"`` wildcard, so validating a
MsgHead means validating it together with every payload schema it carries. :class:`SchemaSet`
builds, per set of payload namespaces, a small in-memory *driver* schema that imports MsgHead and
those payload schemas, compiles it once and caches it. The schema folder is a setting
(``INTEROP_KITH_SCHEMA_DIR``); its ``catalog.xml`` (OASIS XML catalog) maps the absolute import
URLs of two official schemas to local copies, so nothing is ever fetched from the network.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lxml import etree

from plo_messages.registry import MessageRegistry, load_registry

XS = "http://www.w3.org/2001/XMLSchema"
CATALOG_NS = "urn:oasis:names:tc:entity:xmlns:xml:catalog"


class SchemaConfigError(RuntimeError):
    """The schema folder is missing or does not hold a schema the registry names."""


@dataclass(frozen=True, slots=True)
class SchemaProblem:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class _CatalogResolver(etree.Resolver):
    """Resolves absolute schema URLs through the catalog; refuses any other remote URL."""

    def __init__(self, mapping: dict[str, Path]) -> None:
        super().__init__()
        self.mapping = mapping

    def resolve(self, system_url: str, public_id: str, context: Any) -> Any:  # type: ignore[override]
        local = self.mapping.get(system_url)
        if local is not None:
            return self.resolve_filename(str(local), context)  # type: ignore[attr-defined]
        if system_url.startswith(("http://", "https://", "ftp://")):
            raise SchemaConfigError(
                f"schema import {system_url} is not in catalog.xml; refusing to fetch it"
            )
        return None


def read_catalog(schema_dir: Path) -> dict[str, Path]:
    """``system``/``uri`` entries of ``catalog.xml`` (paths relative to the catalog)."""
    path = schema_dir / "catalog.xml"
    if not path.is_file():
        return {}
    root = etree.parse(
        str(path), etree.XMLParser(resolve_entities=False, no_network=True)
    ).getroot()
    out: dict[str, Path] = {}
    for el in root.iter(f"{{{CATALOG_NS}}}system", f"{{{CATALOG_NS}}}uri"):
        key = el.get("systemId") or el.get("name")
        target = el.get("uri")
        if key and target:
            out[key] = (path.parent / target).resolve()
    return out


class SchemaSet:
    """Compiled validators for MsgHead + payloads and for stand-alone AppRecs."""

    def __init__(self, schema_dir: Path, registry: MessageRegistry | None = None) -> None:
        self.schema_dir = Path(schema_dir).resolve()
        if not self.schema_dir.is_dir():
            raise SchemaConfigError(f"KITH schema folder {self.schema_dir} does not exist")
        self.registry = registry or load_registry()
        self.catalog = read_catalog(self.schema_dir)
        self._cache: dict[frozenset[str], tuple[etree.XMLSchema, threading.Lock]] = {}
        self._lock = threading.Lock()
        for ns, rel in self.registry.schema_files.items():
            if not (self.schema_dir / rel).is_file():
                raise SchemaConfigError(f"schema for {ns} not found: {self.schema_dir / rel}")

    def knows(self, namespace: str) -> bool:
        return namespace in self.registry.schema_files

    def _compile(self, namespaces: frozenset[str]) -> etree.XMLSchema:
        imports = "".join(
            f'<xs:import namespace="{ns}" schemaLocation="{(self.schema_dir / self.registry.schema_files[ns]).as_uri()}"/>'
            for ns in sorted(namespaces)
        )
        driver = f'<xs:schema xmlns:xs="{XS}" elementFormDefault="qualified">{imports}</xs:schema>'
        parser = etree.XMLParser(resolve_entities=False, no_network=True)
        parser.resolvers.add(_CatalogResolver(self.catalog))
        doc = etree.fromstring(driver.encode(), parser, base_url=self.schema_dir.as_uri() + "/")
        try:
            return etree.XMLSchema(doc)
        except etree.XMLSchemaParseError as exc:
            raise SchemaConfigError(f"cannot compile schemas {sorted(namespaces)}: {exc}") from exc

    def validator(self, namespaces: Iterable[str]) -> tuple[etree.XMLSchema, threading.Lock]:
        """The compiled schema for these namespaces and the lock that guards its use (an lxml
        ``XMLSchema`` keeps its error log on the object, so one thread validates at a time)."""
        key = frozenset(namespaces)
        unknown = [ns for ns in key if ns not in self.registry.schema_files]
        if unknown:
            raise KeyError(", ".join(sorted(unknown)))
        entry = self._cache.get(key)
        if entry is None:
            with self._lock:
                entry = self._cache.get(key)
                if entry is None:
                    entry = (self._compile(key), threading.Lock())
                    self._cache[key] = entry
        return entry

    def validate(self, root: etree._Element) -> list[SchemaProblem]:
        """Validate a whole message (the root and every namespace used inside it).

        Raises ``KeyError`` naming a namespace there is no schema for."""
        namespaces = {etree.QName(root).namespace or ""}
        for el in root.iter("{*}Content"):
            for child in el:
                if isinstance(child.tag, str):
                    namespaces.add(etree.QName(child).namespace or "")
        schema, lock = self.validator(namespaces)
        with lock:
            if schema.validate(root):
                return []
            return [SchemaProblem(e.line, e.message) for e in schema.error_log]  # type: ignore[attr-defined]
