"""The CapabilityStatement, generated from what is actually implemented.

Resource types come from :data:`SUPPORTED_TYPES`, search parameters from
``fhir_profiles/search-parameters.yaml``; operations are registered by the modules that
implement them, so the statement cannot claim more than the server does.
"""

from __future__ import annotations

from typing import Any

from interop import __version__
from interop.fhir.searchparams import definitions, param_targets
from interop.fhir.validation import SUPPORTED_TYPES
from interop.store.repository import IMMUTABLE_TYPES, UNDELETABLE_TYPES
from interop.store.search_values import INDEXED

TYPE_OPERATIONS: dict[str, list[dict[str, str]]] = {}
"""resource type → [{"name": "lastn", "definition": canonical}], filled by operation modules."""
INSTANCE_OPERATIONS: dict[str, list[dict[str, str]]] = {}
SYSTEM_OPERATIONS: list[dict[str, str]] = []
"""[{"name": "meta", "definition": canonical}]: operations on the whole server (``/fhir/$meta``)."""


def register_operation(
    resource_type: str, name: str, definition: str, *, instance: bool = False
) -> None:
    target = INSTANCE_OPERATIONS if instance else TYPE_OPERATIONS
    ops = target.setdefault(resource_type, [])
    if not any(o["name"] == name for o in ops):
        ops.append({"name": name, "definition": definition})


def register_system_operation(name: str, definition: str) -> None:
    if not any(o["name"] == name for o in SYSTEM_OPERATIONS):
        SYSTEM_OPERATIONS.append({"name": name, "definition": definition})


COMMON_SEARCH = [
    {"name": "_id", "type": "token"},
    {"name": "_lastUpdated", "type": "date"},
]


NO_INCLUDES = frozenset({"AuditEvent"})
"""Searched in the audit chain's own columns, which answer no ``_include``/``_revinclude``
(and are never revincluded: ``store.search_breadth.AUDIT_ONLY_AT``)."""


def reference_params_targets() -> dict[str, list[str]]:
    """target type → the ``Source:param`` a ``_revinclude`` on a search of it may name: each
    reference parameter of each type for every type it may point to: its one target, or what
    R4 names for it (an Observation's ``subject``: a Patient through the observation index,
    a Group, Device or Location through the generic one); ``store.search_breadth.revincludes``
    refuses the others."""
    out: dict[str, list[str]] = {}
    for src in SUPPORTED_TYPES:
        if src in NO_INCLUDES:
            continue
        for name, p in definitions(src).items():
            if p.type != "reference":
                continue
            for t in param_targets(src, name):
                out.setdefault(t, []).append(f"{src}:{name}")
    return {t: sorted(v) for t, v in out.items()}


def capability_statement(
    base_url: str, date: str, security: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The CapabilityStatement; ``security`` is ``rest.security`` as the deployment has it
    (CORS, SMART on FHIR: :func:`interop.api.smart.capability_security`)."""
    resources = []
    revincludes = reference_params_targets()
    for rtype in SUPPORTED_TYPES:
        interactions = [
            "read",
            "vread",
            "search-type",
            "history-instance",
            "history-type",
            "create",
        ]
        if rtype not in IMMUTABLE_TYPES:
            interactions += ["update", "patch"]
        if rtype not in UNDELETABLE_TYPES:
            interactions.append("delete")
        params = list(COMMON_SEARCH)
        for name, p in definitions(rtype).items():
            if p.type in INDEXED or (p.type == "composite" and p.index in ("generic", "evaluated")):
                # the types the engine searches: no other is claimed
                param = {"name": name, "type": "uri" if p.uri else p.type}
                if p.documentation:
                    param["documentation"] = p.documentation
                params.append(param)
        if rtype == "Observation":
            from interop.store.search_breadth import OBSERVATION_EXTRA

            params += [{"name": n, "type": t} for n, t in OBSERVATION_EXTRA.items()]
        entry: dict[str, Any] = {
            "type": rtype,
            "interaction": [{"code": c} for c in interactions],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": rtype not in IMMUTABLE_TYPES,
            "conditionalCreate": True,
            "conditionalRead": "full-support",
            "conditionalUpdate": True,
            "conditionalDelete": "single",
            "searchInclude": []
            if rtype in NO_INCLUDES
            else sorted(
                [f"{rtype}:{n}" for n, p in definitions(rtype).items() if p.type == "reference"]
            )
            + [f"{rtype}:*"],
            "searchRevInclude": [] if rtype in NO_INCLUDES else revincludes.get(rtype, []),
            "searchParam": params,
        }
        ops: list[dict[str, str]] = []
        for op in TYPE_OPERATIONS.get(rtype, []) + INSTANCE_OPERATIONS.get(rtype, []):
            if op not in ops:  # an operation served on the type and its instances: listed once
                ops.append(op)
        if ops:
            entry["operation"] = ops
        resources.append(entry)
    return {
        "resourceType": "CapabilityStatement",
        "id": "dho-interop",
        "url": f"{base_url}/fhir/metadata",
        "name": "DHOInterop",
        "title": "DHO Interop FHIR server",
        "status": "active",
        "date": date,
        "publisher": "DHO Interop",
        "kind": "instance",
        "software": {"name": "DHO Interop", "version": __version__},
        "implementation": {"description": "DHO Interop", "url": f"{base_url}/fhir"},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json", "application/fhir+xml", "xml"],
        "rest": [
            {
                "mode": "server",
                "security": security
                or {
                    "cors": False,
                    "description": "Authorization: Bearer <API key or signed JWT>",
                },
                "resource": resources,
                "interaction": [
                    {"code": "transaction"},
                    {"code": "batch"},
                    {"code": "search-system"},
                    {"code": "history-system"},
                ],
                **({"operation": list(SYSTEM_OPERATIONS)} if SYSTEM_OPERATIONS else {}),
            }
        ],
    }
