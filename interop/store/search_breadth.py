"""Search features beyond the plain parameters: chains (one level, with a type modifier),
reverse chains (``_has``), ``:missing``, ``_revinclude``, ``_include:iterate`` (bounded),
``_sort`` on any date, string or token parameter, quantity searches (the generic
``search_quantity`` rows and the Observation index) and composite searches on the
Observation index (``value-quantity`` with prefixes and UCUM units converted through
``mappings/units.yaml``, ``code-value-quantity``, ``component-code-value-quantity``).

Each function builds a condition on ``resource.res_id`` (or rows to add to a page) for
:class:`interop.store.search.SearchEngine`; an unknown parameter, type or modifier is refused
with 400 naming it, never ignored, so a search is never silently widened.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from sqlalchemy import ColumnElement, and_, false, func, literal, or_, select, true

from interop.fhir.outcome import FhirError, Issue, error
from interop.fhir.searchparams import (
    SearchParam,
    composite_key,
    definitions,
    index_value,
    param_targets,
    reference_target,
)
from interop.store.audit_rows import AUDIT_EVENT
from interop.store.readable import Readable
from interop.store.schema import (
    date_table,
    observation_table,
    quantity_table,
    reference_table,
    resource_table,
    string_table,
    token_table,
)
from interop.store.search_values import INDEXED, MODIFIERS, any_of, code_sets_holding, token_parts

if TYPE_CHECKING:
    from interop.store.repository import FhirStore


class SearchEngine(Protocol):
    """What these conditions ask of the search they are part of
    (:class:`interop.store.search.SearchEngine`)."""

    store: FhirStore

    def row_condition(
        self, param: SearchParam, cols: Any, value: str, name: str
    ) -> ColumnElement[bool]: ...

    def generic_condition(
        self,
        res_type: str,
        name: str,
        modifier: str | None,
        param: SearchParam,
        values: list[str],
        narrow: bool = False,
    ) -> ColumnElement[bool]: ...

    def observation_conditions(
        self, obs_params: list[tuple[str, str | None, list[str]]]
    ) -> tuple[list[ColumnElement[bool]], bool]: ...


MAX_CHAIN_TYPES = 12
"""A chain without a type modifier over a parameter that can point at more types than this
is refused (name the type: ``subject:Patient.name``)."""
MAX_ITERATE = 3
"""``_include:iterate`` follows references at most this many rounds."""
MAX_REVINCLUDE = 1000
"""At most this many resources are added by each ``_revinclude`` to one page (a round of
``:iterate``); when more refer to it, the Bundle's OperationOutcome says so (a warning
naming the spec), never a silent cut."""
OBS_QUANTITY = {
    "value-quantity": (True, False),
    "component-value-quantity": (False, True),
    "combo-value-quantity": (True, True),
}
"""Observation quantity parameters → (primary row, component rows) of the index."""
OBS_COMPOSITE = {
    "code-value-quantity": (True, False),
    "component-code-value-quantity": (False, True),
    "combo-code-value-quantity": (True, True),
}
OBSERVATION_EXTRA = {
    **{k: "quantity" for k in OBS_QUANTITY},
    **{k: "composite" for k in OBS_COMPOSITE},
}
"""Parameters Observation has besides ``search-parameters.yaml`` (served here)."""
SORT_TABLES = {"date": date_table, "string": string_table, "token": token_table}


AUDIT_ONLY_AT = (
    "audit events are not among the searchable resources; search them at /fhir/AuditEvent "
    "(patient, entity, altid, action, outcome, date)"
)
"""AuditEvents are stored lean (``store.audit_rows``): reverse chains and ``_revinclude``
cannot reach them, and are refused rather than answered empty."""


def _concat(store_is_pg: bool, prefix: str, column: Any) -> Any:
    return func.concat(literal(prefix), column) if store_is_pg else (literal(prefix) + column)


# ---- chains ------------------------------------------------------------------------------


def split_chain(name: str, modifier: str | None) -> tuple[str, str | None, str] | None:
    """(reference parameter, type named by the modifier, chained parameter) of a chained key
    (``subject.name``, ``subject:Patient.name``), or None."""
    if modifier and "." in modifier:
        rtype, _, chained = modifier.partition(".")
        return name, rtype, chained
    if "." in name and not modifier:
        ref, _, chained = name.partition(".")
        return ref, None, chained
    if "." in name and modifier:
        ref, _, chained = name.partition(".")
        return ref, None, f"{chained}:{modifier}"
    return None


def _targets(
    engine: SearchEngine, res_type: str, param: SearchParam, rtype: str | None, chained: str
) -> list[str]:
    from interop.fhir.validation import SUPPORTED_TYPES

    if rtype is not None:
        if rtype not in SUPPORTED_TYPES:
            raise error(400, "not-supported", f"{param.name}:{rtype}: unknown resource type")
        if param.target and param.target != rtype:
            raise error(400, "invalid", f"{param.name} never points at a {rtype}")
        return [rtype]
    if param.target:
        return [param.target]
    base = chained.partition(":")[0]
    candidates = [
        t for t in SUPPORTED_TYPES if base in definitions(t) or base in ("_id", "_lastUpdated")
    ]
    if len(candidates) > MAX_CHAIN_TYPES:
        raise error(
            400,
            "too-costly",
            f"the chain {param.name}.{chained} can point at {len(candidates)} resource types; "
            f"name one ({param.name}:Patient.{chained})",
        )
    return candidates


def _ids_matching(engine: SearchEngine, rtype: str, chained: str, values: list[str]) -> Any:
    """``select res_id from resource`` of ``rtype`` matching ``chained=values``."""
    name, _, modifier_raw = chained.partition(":")
    modifier = modifier_raw or None
    r = resource_table.c
    base = [r.res_type == rtype, r.deleted == false()]
    if name == "_id" and modifier is None:
        return select(r.res_id).where(*base, r.res_id.in_(values)).correlate(None)
    param = definitions(rtype).get(name)
    if param is None or "." in name:
        raise error(
            400, "not-supported", f"chained parameter {chained!r} is not supported for {rtype}"
        )
    if param.index == "observation" and param.type != "reference":
        raise error(400, "not-supported", f"chaining into Observation {name} is not supported")

    if (param.type not in INDEXED and param.type != "composite") or (
        modifier is not None and modifier not in MODIFIERS.get(param.type, ())
    ):
        raise error(
            400, "not-supported", f"chained parameter {chained!r} is not supported for {rtype}"
        )
    cond = engine.generic_condition(rtype, name, modifier, param, values)
    # not correlated: the inner ``resource`` is its own (the conditions name its res_id)
    return select(r.res_id).where(*base, cond).correlate(None)


def chain_condition(
    engine: SearchEngine,
    res_type: str,
    ref: str,
    rtype: str | None,
    chained: str,
    values: list[str],
    readable: Readable | None = None,
) -> ColumnElement[bool]:
    """``subject:Patient.birthdate=…``: resources whose ``ref`` points at a resource matching
    the chained parameter, among those the actor may read (``readable``; None: all)."""
    param = definitions(res_type).get(ref)
    if param is None or param.type != "reference":
        raise error(400, "not-supported", f"{ref} is not a reference parameter of {res_type}")
    r = resource_table.c
    pg = engine.store.is_postgres
    ors: list[ColumnElement[bool]] = []
    for t in _targets(engine, res_type, param, rtype, chained):
        try:
            ids = _ids_matching(engine, t, chained, values)
        except FhirError:
            if rtype is None and not param.target:
                continue  # a candidate type without this parameter
            raise
        if readable is not None:
            ids = readable.narrow(engine, t, ids)
        if param.index == "observation" and t == "Patient":
            # Observation's Patient references live in the compartment column
            x = resource_table.alias("x").c
            ors.append(
                r.res_id.in_(select(x.res_id).where(x.res_type == res_type, x.patient_id.in_(ids)))
            )
            continue
        sq = ids.subquery()
        targets = select(_concat(pg, f"{t}/", sq.c.res_id))
        ors.append(
            r.res_id.in_(
                select(reference_table.c.res_id).where(
                    reference_table.c.res_type == res_type,
                    reference_table.c.param == ref,
                    reference_table.c.target.in_(targets),
                )
            )
        )
    if not ors:
        raise error(400, "not-supported", f"no resource type has the chained parameter {chained!r}")
    return or_(*ors)


# ---- _has ----------------------------------------------------------------------------------


def has_condition(
    engine: SearchEngine,
    res_type: str,
    key: str,
    values: list[str],
    readable: Readable | None = None,
) -> ColumnElement[bool]:
    """``_has:Observation:patient:code=1234-5``: resources some Observation with that code
    refers to through ``patient``, of the Observations the actor may read (``readable``;
    None: all)."""
    from interop.fhir.validation import SUPPORTED_TYPES

    parts = key.split(":")
    if len(parts) != 4 or parts[0] != "_has":
        raise error(
            400, "not-supported", f"{key!r}: _has takes _has:Type:reference:parameter (one level)"
        )
    _has, inner_type, ref, inner = parts
    if inner_type not in SUPPORTED_TYPES:
        raise error(400, "not-supported", f"{key!r}: unknown resource type {inner_type}")
    if inner_type == AUDIT_EVENT:
        raise error(400, "not-supported", f"{key!r}: {AUDIT_ONLY_AT}")
    rparam = definitions(inner_type).get(ref)
    if rparam is None or rparam.type != "reference":
        raise error(
            400, "not-supported", f"{key!r}: {ref} is not a reference parameter of {inner_type}"
        )
    r = resource_table.c
    inner_ids = _inner_ids(engine, inner_type, inner, values)
    if readable is not None:
        inner_ids = readable.narrow(engine, inner_type, inner_ids)
    if rparam.index == "observation" and res_type == "Patient":
        x = resource_table.alias("x").c
        return r.res_id.in_(
            select(x.patient_id).where(x.res_type == inner_type, x.res_id.in_(inner_ids))
        )
    pg = engine.store.is_postgres
    return _concat(pg, f"{res_type}/", r.res_id).in_(
        select(reference_table.c.target).where(
            reference_table.c.res_type == inner_type,
            reference_table.c.param == ref,
            reference_table.c.res_id.in_(inner_ids),
        )
    )


def _inner_ids(engine: SearchEngine, inner_type: str, inner: str, values: list[str]) -> Any:
    name = inner.partition(":")[0]
    param = definitions(inner_type).get(name)
    if inner_type == "Observation" and param is not None and param.index == "observation":
        conds, _has_code = engine.observation_conditions([(name, None, values)])
        return select(observation_table.c.res_id).where(*conds)
    if inner_type == "Observation" and name in OBSERVATION_EXTRA:
        return (
            select(resource_table.c.res_id)
            .where(
                resource_table.c.res_type == "Observation",
                observation_value_condition(name, values),
            )
            .correlate(None)
        )
    return _ids_matching(engine, inner_type, inner, values)


# ---- :missing ------------------------------------------------------------------------------


# ---- quantity and composite on the Observation index ------------------------------------------


@lru_cache(maxsize=1)
def _conversions() -> dict[str, list[tuple[str, Decimal, Decimal]]]:
    """UCUM unit → [(canonical unit, factor, offset)] from ``mappings/units.yaml`` (only the
    conversions valid for every concept)."""
    from interop.mapping.tables import load_tables

    out: dict[str, list[tuple[str, Decimal, Decimal]]] = {}
    for (src, dst), conv in load_tables().conversions.items():
        if conv.concepts is None:
            out.setdefault(src, []).append((dst, conv.factor, conv.offset))
    return out


def _number_range(text: str, name: str) -> tuple[Decimal, Decimal, Decimal]:
    """(value, low, high) of a search number: the range its precision implies."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise error(
            400, "invalid", f"{name}: {text!r} is not a number", expression=[name]
        ) from None
    exponent = value.as_tuple().exponent
    half = Decimal(5).scaleb(int(exponent) - 1) if isinstance(exponent, int) else Decimal(0)
    return value, value - half, value + half


def quantity_condition(
    value_text: str,
    name: str,
    low_col: Any,
    high_col: Any,
    unit_col: Any,
    system_col: Any = None,
) -> ColumnElement[bool]:
    """A ``[prefix]number[|system|code]`` search on indexed values that are ranges
    ``[low, high]`` (a single value has ``low`` = ``high``), with the R4 meaning of each
    prefix on ranges; a UCUM code is also looked for in the units ``mappings/units.yaml``
    converts it to."""
    prefix = "eq"
    if len(value_text) > 2 and value_text[:2] in (
        "eq",
        "ne",
        "gt",
        "lt",
        "ge",
        "le",
        "sa",
        "eb",
        "ap",
    ):
        prefix, value_text = value_text[:2], value_text[2:]
    number, _, rest = value_text.partition("|")
    system, _, code = rest.partition("|")
    if rest and not code:
        code, system = system, ""
    if rest and unit_col is None:
        raise error(
            400, "invalid", f"{name}: {value_text!r} is a number, without units", expression=[name]
        )
    value, low, high = _number_range(number, name)
    alternatives: list[tuple[str | None, Decimal, Decimal, Decimal]] = [
        (code or None, value, low, high)
    ]
    if code:
        for dst, factor, offset in _conversions().get(code, []):
            alternatives.append(
                (dst, value * factor + offset, low * factor + offset, high * factor + offset)
            )
    ors = []
    for unit, v, lo, hi in alternatives:
        vf, lof, hif = float(v), float(lo), float(hi)
        cmp = {
            "eq": and_(low_col >= lof, high_col < hif),
            "ne": or_(low_col < lof, high_col >= hif),
            "gt": high_col > vf,
            "lt": low_col < vf,
            "ge": high_col >= vf,
            "le": low_col <= vf,
            "sa": low_col > vf,
            "eb": high_col < vf,
            "ap": and_(
                low_col <= vf * 1.1 if vf >= 0 else low_col <= vf * 0.9,
                high_col >= (vf * 0.9 if vf >= 0 else vf * 1.1),
            ),
        }[prefix]
        if unit is not None:
            cmp = and_(cmp, unit_col == unit)
            if system and system_col is not None and unit == code:
                cmp = and_(cmp, system_col == system)
        ors.append(cmp)
    return or_(*ors)


def composite_parts(name: str, value: str, count: int) -> list[str]:
    """The component values of a composite search value (``code$value``; ``\\$`` is a ``$``
    inside a component), 400 unless there is one per component."""
    parts = [p.replace("\\$", "$") for p in re.split(r"(?<!\\)\$", value)]
    if len(parts) != count or not all(parts):
        shape = "$".join(["x"] * count)
        raise error(
            400,
            "invalid",
            f"{name}: {value!r} is not a composite of {count} values ({shape})",
            expression=[name],
        )
    return parts


INDEX_TABLES = {
    "token": token_table,
    "reference": reference_table,
    "date": date_table,
    "string": string_table,
    "quantity": quantity_table,
    "number": quantity_table,
}
"""The generic index table of each parameter type."""


def composite_condition(
    engine: SearchEngine, res_type: str, name: str, param: SearchParam, values: list[str]
) -> ColumnElement[bool]:
    """A composite of a generic type (``Group?characteristic-value=gender$male``,
    ``ValueSet?context-type-quantity=age$gt18``): each component matched in its own index
    table under the composite's key, all of them on rows of the same element (one ordinal,
    :func:`interop.fhir.searchparams.composite_key`)."""
    defs = definitions(res_type)
    comps = [defs[c] for c, _below in param.components]
    first_key = composite_key(name, 0)
    ors = []
    for v in values:
        parts = composite_parts(name, v, len(comps))
        tables = [INDEX_TABLES[c.type].alias(f"k{i}") for i, c in enumerate(comps)]
        first = tables[0].c
        conds: list[ColumnElement[bool]] = [
            first.res_type == res_type,
            first.param.startswith(first_key, autoescape=True),
            engine.row_condition(comps[0], first, parts[0], name),
        ]
        for i in range(1, len(comps)):
            c = tables[i].c
            conds += [
                c.res_type == res_type,
                c.res_id == first.res_id,
                c.param == func.replace(first.param, first_key, composite_key(name, i)),
                engine.row_condition(comps[i], c, parts[i], name),
            ]
        ors.append(resource_table.c.res_id.in_(select(first.res_id).where(*conds)))

    return any_of(ors)


def union_condition(
    engine: SearchEngine, res_type: str, param: SearchParam, values: list[str]
) -> ColumnElement[bool]:
    """A parameter ``any_of`` others (``combo-code``: the Observation's code or a
    component's): what any of them matches (``:not`` is taken by the caller, on the union)."""
    try:
        return any_of(
            [
                resource_table.c.res_id.in_(_inner_ids(engine, res_type, n, values))
                for n in param.any_of
            ]
        )
    except FhirError as exc:
        raise _naming(param.name, exc) from None


def whole_composite_condition(
    engine: SearchEngine, res_type: str, name: str, param: SearchParam, values: list[str]
) -> ColumnElement[bool]:
    """A composite of the whole resource (``Observation?code-value-concept=<code>$<value>``):
    its element is the resource itself, so each component is matched in its own parameter's
    rows (the code in the observation index, the value in the generic tables) and all of them
    on the same resource; no rows of its own."""
    ors = []
    for v in values:
        parts = composite_parts(name, v, len(param.components))
        try:
            ors.append(
                and_(
                    *[
                        resource_table.c.res_id.in_(_inner_ids(engine, res_type, cname, [part]))
                        for (cname, _below), part in zip(param.components, parts, strict=True)
                    ]
                )
            )
        except FhirError as exc:
            raise _naming(name, exc) from None
    return any_of(ors)


def _naming(name: str, exc: FhirError) -> FhirError:
    """A refusal of a component's or an alternative's value, named as the parameter asked."""
    if exc.message.partition(":")[0] == name:
        return exc
    return error(exc.status, "invalid", f"{name}: {exc.message}", expression=[name])


def observation_value_condition(name: str, values: list[str]) -> ColumnElement[bool]:
    """``value-quantity`` and the composites, on the observation index rows."""

    o = observation_table.c
    rows: tuple[bool, bool] = OBS_QUANTITY.get(name) or OBS_COMPOSITE[name]
    kinds = []
    if rows[0]:
        kinds.append(o.is_primary.is_(True))
    if rows[1]:
        kinds.append(o.is_component.is_(True))
    ors = []
    for v in values:
        if name in OBS_COMPOSITE:
            code_text, qty = composite_parts(name, v, 2)
            system, code = token_parts(code_text)
            cond = and_(
                o.code_set.in_(code_sets_holding(system, code)),
                quantity_condition(qty, name, o.value, o.value, o.unit),
            )
        else:
            cond = quantity_condition(v, name, o.value, o.value, o.unit)
        ors.append(cond)
    return resource_table.c.res_id.in_(select(o.res_id).where(or_(*kinds), any_of(ors)))


# ---- _sort ----------------------------------------------------------------------------------


def sort_column(res_type: str, name: str, descending: bool) -> Any:
    """A sort key for any date, string or token parameter: the lowest (highest when
    descending) indexed value, resources without one last."""
    param = definitions(res_type).get(name)
    if param is None or param.type not in SORT_TABLES or param.index == "observation":
        raise error(
            400,
            "not-supported",
            f"_sort={name!r} is not supported for {res_type}; use a date, string or token parameter",
            expression=["_sort"],
        )
    table = SORT_TABLES[param.type]
    column = {
        "date": table.c.get("start"),
        "string": table.c.get("value"),
        "token": table.c.get("code"),
    }[param.type]
    agg = func.max(column) if descending else func.min(column)
    sub = (
        select(agg)
        .where(
            table.c.res_type == res_type,
            table.c.param == name,
            table.c.res_id == resource_table.c.res_id,
        )
        .scalar_subquery()
    )
    missing: Any = -(2**62) if param.type == "date" else ""
    if not descending:
        missing = 2**62 if param.type == "date" else "\U0010ffff"
    return func.coalesce(sub, literal(missing))


def later_sort_key(res_type: str, name: str, descending: bool) -> Any:
    """A second or further ``_sort`` key: the id, the last update, an Observation's date
    (from its own index) or any date, string or token parameter (:func:`sort_column`)."""
    r = resource_table.c
    if name == "_id":
        return r.res_id
    if name == "_lastUpdated":
        return r.last_updated
    if name == "date" and res_type == "Observation":
        o = observation_table.c
        agg = func.max(o.effective) if descending else func.min(o.effective)
        sub = select(agg).where(o.res_id == r.res_id, o.is_primary == true()).scalar_subquery()
        return func.coalesce(sub, literal(-(2**62) if descending else 2**62))
    return sort_column(res_type, name, descending)


# ---- _revinclude and _include:iterate ---------------------------------------------------------


def revincludes(
    engine: SearchEngine,
    conn: Any,
    res_type: str,
    specs: list[str],
    page: list[tuple[str, bytes]],
    iterating: frozenset[str] = frozenset(),
    warnings: list[Issue] | None = None,
    patients: list[str] | None = None,
) -> list[tuple[str, str, bytes]]:
    """``_revinclude=Observation:patient``: resources of that type referring to the page; a
    parameter that never points at the searched type is refused (400), never answered empty
    as if nothing referred to the page (``Organization?_revinclude=Observation:subject``),
    unless it is ``:iterate`` (``iterating``: it is for what the rounds include).

    ``patients`` (the access policy's: the patients the actor reaches) leaves out in the
    query the referrers in another patient's compartment, which the policy's filter of the
    answer would drop; ``warnings`` gets one per spec that found more than
    :data:`MAX_REVINCLUDE`."""
    parsed = []
    for spec in specs:
        src, pname, only = _revinclude_param(spec)
        targets = param_targets(src, pname)
        if (only is not None and only != res_type) or (targets and res_type not in targets):
            if spec in iterating:
                continue
            raise error(
                400,
                "not-supported",
                f"_revinclude={spec!r}: {src}.{pname} never points at a {res_type}",
                expression=[REVINCLUDE],
            )
        parsed.append(((src, pname, only), spec))
    if not page:
        return []
    ids = [rid for rid, _c in page]
    out: list[tuple[str, str, bytes]] = []
    canonicals = _canonicals(page) if parsed else []
    for found, spec in parsed:
        out += _capped(
            warnings, spec, _referring(conn, found, {res_type: ids}, canonicals, patients)
        )
    return out


def _capped(
    warnings: list[Issue] | None, spec: str, got: list[tuple[str, str, bytes]]
) -> list[tuple[str, str, bytes]]:
    """What ``_referring`` found, cut to its cap, with a warning when it found more (it reads
    one past the cap to know)."""
    if len(got) <= MAX_REVINCLUDE:
        return got
    if warnings is not None:
        _warn(warnings, spec)
    return got[:MAX_REVINCLUDE]


def _warn(warnings: list[Issue], spec: str) -> None:
    issue = Issue(
        "warning",
        "too-costly",
        f"_revinclude={spec}: more than {MAX_REVINCLUDE} resources refer to this page; "
        f"only the first {MAX_REVINCLUDE} are included (ask a smaller _count, or search "
        "the referring type itself)",
        (REVINCLUDE,),
    )
    if issue not in warnings:
        warnings.append(issue)


def _canonicals(page: list[tuple[str, bytes]]) -> list[str]:
    """``url`` and ``url|version`` of the page's resources that have a canonical url (a
    Questionnaire: what a QuestionnaireResponse's ``questionnaire`` refers to)."""
    out: list[str] = []
    for _rid, content in page:
        if b'"url"' not in content:
            continue
        resource = orjson.loads(content)
        url, version = resource.get("url"), resource.get("version")
        if isinstance(url, str) and url:
            out.append(index_value(url))
            if isinstance(version, str) and version:
                out.append(index_value(f"{url}|{version}"))
    return out


REVINCLUDE = "_revinclude"


def _revinclude_param(spec: str) -> tuple[str, str, str | None]:
    """(source type, reference parameter, target type or None) of ``Type:param[:Target]``,
    or 400 naming the spec (its ``expression`` names ``_revinclude``)."""
    from interop.fhir.validation import SUPPORTED_TYPES

    parts = spec.split(":")
    if len(parts) not in (2, 3) or parts[0] not in SUPPORTED_TYPES:
        raise error(
            400,
            "not-supported",
            f"_revinclude={spec!r}: use Type:parameter[:Target]",
            expression=[REVINCLUDE],
        )
    src, pname = parts[0], parts[1]
    if src == AUDIT_EVENT:
        raise error(
            400,
            "not-supported",
            f"_revinclude={spec!r}: {AUDIT_ONLY_AT}",
            expression=[REVINCLUDE],
        )
    param = definitions(src).get(pname)
    if param is None or param.type != "reference":
        raise error(
            400,
            "not-supported",
            f"_revinclude={spec!r}: {pname} is not a reference parameter of {src}",
            expression=[REVINCLUDE],
        )
    if len(parts) == 3 and parts[2] not in SUPPORTED_TYPES:
        raise error(
            400,
            "not-supported",
            f"_revinclude={spec!r}: unknown type {parts[2]!r}",
            expression=[REVINCLUDE],
        )
    return src, pname, parts[2] if len(parts) == 3 else None


def _referring(
    conn: Any,
    spec: tuple[str, str, str | None],
    targets: dict[str, list[str]],
    canonicals: list[str] | None = None,
    patients: list[str] | None = None,
) -> list[tuple[str, str, bytes]]:
    """The resources of the spec's type whose parameter refers to one of ``targets`` (type →
    ids) or to one of the ``canonicals`` (``url`` and ``url|version`` of the targets), at
    most one more than :data:`MAX_REVINCLUDE` (:func:`_capped` cuts and warns), those in a patient's
    compartment only when the patient is one of ``patients`` (when given)."""
    src, pname, only = spec
    param = definitions(src)[pname]
    r = resource_table.c
    wanted = {t: ids for t, ids in targets.items() if ids and (only is None or t == only)}
    out: list[tuple[str, str, bytes]] = []
    for ttype, ids in sorted(wanted.items()):
        if param.index == "observation" and ttype == "Patient":
            stmt = select(r.res_id, r.content).where(
                r.res_type == src, r.patient_id.in_(ids), r.deleted == false()
            )
        else:
            stmt = select(r.res_id, r.content).where(
                r.res_type == src,
                r.deleted == false(),
                r.res_id.in_(
                    select(reference_table.c.res_id).where(
                        reference_table.c.res_type == src,
                        reference_table.c.param == pname,
                        reference_table.c.target.in_(
                            [f"{ttype}/{i}" for i in ids] + (canonicals or [])
                        ),
                    )
                ),
            )
        if patients is not None:
            stmt = stmt.where(or_(r.patient_id.is_(None), r.patient_id.in_(patients)))
        for row in conn.execute(stmt.order_by(r.res_id).limit(MAX_REVINCLUDE + 1 - len(out))):
            out.append((src, row.res_id, bytes(row.content)))
        if len(out) > MAX_REVINCLUDE:
            break
    return out


def iterate_includes(
    engine: SearchEngine,
    conn: Any,
    specs: list[str],
    found: list[tuple[str, str, bytes]],
    rev_specs: list[str] | None = None,
    matched: set[tuple[str, str]] | None = None,
    warnings: list[Issue] | None = None,
    patients: list[str] | None = None,
) -> list[tuple[str, str, bytes]]:
    """``_include:iterate=Type:param`` and ``_revinclude:iterate=Type:param``: follow the
    references of what was included (``specs``) and look for what refers to it
    (``rev_specs``), at most :data:`MAX_ITERATE` rounds (each reverse spec at most
    :data:`MAX_REVINCLUDE` resources a round); a resource already in the Bundle (``matched``:
    the page) is not added again."""
    rev = [_revinclude_param(x) for x in rev_specs or []]
    if not specs and not rev:
        return []
    seen = {(t, i) for t, i, _c in found} | (matched or set())
    frontier = list(found)
    out: list[tuple[str, str, bytes]] = []
    r = resource_table.c
    from interop.fhir.searchparams import values as param_values

    for _round in range(MAX_ITERATE):
        wanted: dict[str, set[str]] = {}
        for t, _i, content in frontier:
            resource = orjson.loads(content)
            for spec in specs:
                parts = spec.split(":")
                if len(parts) < 2 or parts[0] != t:
                    continue
                p = definitions(t).get(parts[1])
                if p is None or p.type != "reference":
                    continue
                for v in param_values(resource, p):
                    ref = v.get("reference") if isinstance(v, dict) else None
                    if isinstance(ref, str):
                        target = reference_target(ref, engine.store.base_url)
                        tt, _, ti = target.partition("/")
                        if (
                            ti
                            and "/" not in ti
                            and (tt, ti) not in seen
                            and (len(parts) < 3 or tt == parts[2])
                        ):
                            wanted.setdefault(tt, set()).add(ti)
        found_now: list[tuple[str, str, bytes]] = []
        for tt, tids in wanted.items():
            for row in conn.execute(
                select(r.res_id, r.content).where(
                    r.res_type == tt, r.res_id.in_(sorted(tids)), r.deleted == false()
                )
            ):
                found_now.append((tt, row.res_id, bytes(row.content)))
        if rev:
            by_type: dict[str, list[str]] = {}
            for t, i, _c in frontier:
                by_type.setdefault(t, []).append(i)
            for rev_spec, spec_text in zip(rev, rev_specs or [], strict=True):
                got = _referring(conn, rev_spec, by_type, None, patients)
                found_now += _capped(warnings, spec_text, got)
        frontier = []
        for item in found_now:
            if (item[0], item[1]) not in seen:
                seen.add((item[0], item[1]))
                frontier.append(item)
        out += frontier
        if not frontier:
            break
    return out
