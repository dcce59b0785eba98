"""FHIR search over the index tables: parameter parsing, SQL building, keyset paging.

Paging uses a cursor (the sort key and id of the last row served), not an offset, so the next
page stays correct while other clients write: nothing is served twice or skipped because rows
were inserted before the cursor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
)

from interop.fhir.outcome import FhirError, Issue, error
from interop.fhir.searchparams import (
    EXACT,
    INDEX_KEPT,
    SearchParam,
    definitions,
    fold,
    index_value,
    reference_target,
)
from interop.store import audit_rows, compartment
from interop.store import search_breadth as breadth
from interop.store.readable import READABLE, Readable, own_patients_condition
from interop.store.repository import FhirStore
from interop.store.schema import (
    observation_table,
    reference_table,
    resource_table,
    string_table,
    token_table,
)
from interop.store.search_values import (
    DATE_MODIFIERS,
    INDEXED,
    MAX_VALUES,
    MODIFIERS,
    any_of,
    code_sets_holding_any,
    date_condition,
    date_values,
    decode_cursor,
    encode_cursor,
    token_parts,
)

RESULT_PARAMS = frozenset(
    {
        "_count",
        "_sort",
        "_summary",
        "_include",
        "_total",
        "_cursor",
        "_format",
        "_pretty",
        "_elements",
        "_revinclude",
    }
)
CONTROL_PARAMS = frozenset({"_totalMethod", "_contained", "_containedType"})
"""Parameters clients send to shape the answer (not filters): never refused as unsupported."""
TOTAL_MODES = frozenset({"accurate", "estimate", "none"})
SUMMARY_MODES = frozenset({"true", "false", "text", "data", "count"})
"""``_summary`` values served (applied to the page by :mod:`interop.fhir.subset`)."""
OWN_PATIENTS = "\x00own-patients"
"""The key of the access policy's restriction to the patients whose compartment a resource
is in (``resource.patient_id``), for the types without a ``patient`` parameter: a NUL is in
no parameter a client sends (refused by :func:`check_search_values`)."""
REFERRER_PATIENTS = "\x00referrer-patients"
"""The key of the access policy's list of the patients an actor reaches, given with a
``_revinclude``: the referrers in another patient's compartment are left out in the query
(the policy's filter of the answer would drop them), so the cap on referrers
(``search_breadth.MAX_REVINCLUDE``) counts what the actor may see."""
OBS_INDEXED = frozenset({"code", "date", "patient", "subject", "component-code"})
SORTS = {"_id", "_lastUpdated", "date"}


def _narrowed(defs: dict[str, SearchParam], params: Sequence[tuple[str, str]]) -> bool:
    """Whether the search has a filter that picks few resources: ``_id``, or a plain
    reference parameter (a patient's data; the policy's restriction to an actor's patients)."""
    for key, raw in params:
        if not raw:
            continue
        name, _, modifier = key.partition(":")
        if name == "_id" and not modifier:
            return True
        param = defs.get(name)
        if (
            param is not None
            and param.type == "reference"
            and param.index == "generic"
            and (not modifier or modifier[:1].isupper())
        ):
            return True
    return False


def after_cursor(
    keys: list[tuple[Any, bool]], values: list[Any], res_id: Any, cid: str, id_descending: bool
) -> ColumnElement[bool]:
    """The rows after the cursor's row in the order of ``keys`` ((column, descending) each),
    ties in id order: the first key past its value, or equal and the next key past its, …,
    or every key equal and the id past the cursor's."""
    conds: list[ColumnElement[bool]] = []
    equal: list[ColumnElement[bool]] = []
    for (col, desc), value in zip(keys, values, strict=True):
        if col is res_id:  # the id orders completely: nothing after it
            conds.append(and_(*equal, col < cid if desc else col > cid))
            return or_(*conds)
        conds.append(and_(*equal, col < value if desc else col > value))
        equal.append(col == value)
    conds.append(and_(*equal, res_id < cid if id_descending else res_id > cid))
    return or_(*conds)


def _patient_identifier_chain(name: str, modifier: str | None) -> str | None:
    """The reference parameter of a chained search on a Patient's identifier
    (``subject:Patient.identifier``, ``patient.identifier``, ``patient:Patient.identifier``),
    or None."""
    if modifier == "Patient.identifier" and name in ("subject", "patient"):
        return name
    if modifier is None and name in ("patient.identifier", "subject.identifier"):
        return name.partition(".")[0]
    return None


@dataclass(slots=True)
class SearchRequest:
    res_type: str
    params: list[tuple[str, str]]
    """What the client asked."""
    strict: bool = False
    restriction: list[tuple[str, str]] = field(default_factory=list)
    """What the access policy added (the actor's patients and codes): searched like the
    client's parameters, but not counted against ``search_max_values``."""
    compartment: str | None = None
    """``Patient/{id}/{type}``: the Patient whose compartment is searched through every link
    (:func:`interop.store.compartment.condition`; :meth:`SearchEngine.compartment_link`
    first, for the common case)."""


@dataclass(slots=True)
class SearchResult:
    rows: list[tuple[str, bytes]]
    """(id, stored JSON bytes) of the matches on this page, in order."""
    included: list[tuple[str, str, bytes]] = field(default_factory=list)
    total: int | None = None
    next_cursor: str | None = None
    warnings: list[Issue] = field(default_factory=list)
    summary_count: bool = False
    counted: list[str] = field(default_factory=list)
    """The patients whose data an answer that is only a count (``_summary=count``,
    ``_count=0``) counted: the audit event names them as it names those a page returns."""
    ignored: list[tuple[str, str]] = field(default_factory=list)
    """The (key, value) pairs of the request that were not applied (blank, or unsupported and
    ignored on request): the self link leaves them out."""


def check_search_values(params: Sequence[tuple[str, str]], limit: int) -> None:
    """400 when the search carries more than ``limit`` values in all (each comma-separated
    value of each parameter counts; result parameters do not), naming the limit, or a NUL
    character (no stored text holds one; PostgreSQL refuses it in a query)."""
    n = 0
    for key, raw in params:
        if "\x00" in key or "\x00" in raw:
            raise error(400, "invalid", f"search parameter {key!r} holds a NUL character")
        if key.partition(":")[0] not in RESULT_PARAMS:
            n += raw.count(",") + 1
    if n > limit:
        raise error(
            400,
            "too-costly",
            f"the search carries {n} values; at most {limit} are allowed (search_max_values)",
        )


class SearchEngine:
    def __init__(
        self,
        store: FhirStore,
        *,
        default_count: int,
        max_count: int,
        total_limit: int,
        max_values: int = MAX_VALUES,
    ):
        self.store = store
        self.max_values = max_values
        self.default_count = default_count
        self.max_count = max_count
        self.total_limit = total_limit

    def compartment_link(self, res_type: str, pid: str) -> tuple[str, str] | None:
        """The parameter that is the patient's compartment of ``res_type`` when nothing
        refers to the patient through another link (:func:`compartment.own_link_alone`)."""
        with self.store.reader() as conn:
            return compartment.own_link_alone(conn, res_type, pid)

    # ---- parameter conditions on the resource table -------------------------------------
    def _patient_ids_for_identifier(self, value: str) -> Select[Any]:
        system, code = token_parts(value)
        cond = [
            token_table.c.res_type == "Patient",
            token_table.c.param == "identifier",
        ]
        if code is not None:
            cond.append(token_table.c.code == index_value(code))
        if system:
            cond.append(token_table.c.system == index_value(system))
        return select(token_table.c.res_id).where(*cond)

    def _reference_value(self, param: SearchParam, value: str) -> str:
        target = reference_target(value, self.store.base_url)
        if "/" not in target and ":" not in target and param.target:
            target = f"{param.target}/{target}"
        return index_value(target)

    def row_condition(
        self, param: SearchParam, cols: Any, value: str, name: str
    ) -> ColumnElement[bool]:
        """The condition one value puts on a row of the parameter's index table (``cols``:
        the columns of that table or of an alias of it), without modifiers."""
        if param.type == "token":
            system, code = token_parts(value)
            cond: list[ColumnElement[bool]] = []
            if code is not None:
                cond.append(cols.code == index_value(code))
            if system is not None:
                cond.append(cols.system == index_value(system))
            return and_(true(), *cond)
        if param.type == "reference":
            return cols.target == self._reference_value(param, value)
        if param.type == "date":
            return date_condition(cols.start, cols.end, value, self.store.zone, name)
        if param.type == "string":
            return cols.value.startswith(fold(value), autoescape=True)
        if param.type in ("quantity", "number"):
            unit_col = cols.code if param.type == "quantity" else None
            return breadth.quantity_condition(
                value, name, cols.low, cols.high, unit_col, cols.system
            )
        raise error(400, "not-supported", f"{name}: a {param.type} value cannot be searched here")

    def _rows_matching(
        self, res_type: str, name: str, param: SearchParam, values: list[str], narrow: bool
    ) -> ColumnElement[bool]:
        """Resources with a row of the parameter matching any of the values.

        Beside a filter that picks few resources (``narrow``: :func:`_narrowed`) each resource
        it picks is looked up in the parameter's rows (a correlated EXISTS through the
        table's ``(res_type, res_id)`` index): an ``IN (SELECT …)`` would first collect every
        resource with the value (half the Conditions are ``active``) for each statement."""
        t = breadth.INDEX_TABLES[param.type].c
        rid = resource_table.c.res_id
        if narrow:
            postgres = self.store.is_postgres
            # SQLite: ``param || ''`` keeps it on the (res_type, res_id) index: with the
            # parameter's name usable it preferred the lookup index (more equal columns) and
            # read every row of the value once per resource (a third of 17,600 Conditions
            # carry the bench's ``_tag``: 15 ms a search at 1M, against 0.1 ms).
            # PostgreSQL: ``OFFSET 0`` keeps the EXISTS a look-up per resource (a sub-plan by
            # the full key); made a join, the planner read every row of the type's value for
            # each resource when its statistics predate the type's rows (34 ms a Condition
            # search right after the bench's creates; 12.7 ms with fresh statistics as
            # ``IN``, 0.4 ms so)
            looked_up = select(literal(1)).where(
                t.res_type == res_type,
                t.res_id == rid,
                (t.param if postgres else t.param.concat("")) == name,
                any_of([self.row_condition(param, t, v, name) for v in values]),
            )
            return (looked_up.offset(0) if postgres else looked_up).exists()
        return any_of(
            [
                rid.in_(
                    select(t.res_id).where(
                        t.res_type == res_type,
                        t.param == name,
                        self.row_condition(param, t, v, name),
                    )
                )
                for v in values
            ]
        )

    def uri_condition(self, res_type: str, name: str, values: list[str]) -> ColumnElement[bool]:
        """A uri parameter (held as a token without a system): ``url`` matches the URI as
        written and the versioned canonicals of it (``url|1.0``); ``url|version`` (R4's
        versioned canonical) matches that one, and the resource whose own ``url`` is ``url``
        and whose ``version`` is ``version`` (``ValueSet?url=http://…|1.0``)."""
        t = token_table.c
        rid = resource_table.c.res_id
        has_version = name == "url" and "version" in definitions(res_type)
        ors: list[ColumnElement[bool]] = []
        for v in values:
            url, sep, version = v.partition("|")
            if not sep:
                match = or_(t.code == index_value(v), t.code.startswith(v + "|", autoescape=True))
                ors.append(
                    rid.in_(select(t.res_id).where(t.res_type == res_type, t.param == name, match))
                )
                continue
            if not url or not version:
                raise error(
                    400,
                    "invalid",
                    f"{name}={v!r}: a versioned canonical is url|version",
                    expression=[name],
                )
            ors.append(
                rid.in_(
                    select(t.res_id).where(
                        t.res_type == res_type, t.param == name, t.code == index_value(v)
                    )
                )
            )
            if has_version:
                ors.append(
                    and_(
                        rid.in_(
                            select(t.res_id).where(
                                t.res_type == res_type, t.param == name, t.code == index_value(url)
                            )
                        ),
                        rid.in_(
                            select(t.res_id).where(
                                t.res_type == res_type,
                                t.param == "version",
                                t.code == index_value(version),
                            )
                        ),
                    )
                )
        return any_of(ors)

    def generic_condition(
        self,
        res_type: str,
        name: str,
        modifier: str | None,
        param: SearchParam,
        values: list[str],
        narrow: bool = False,
    ) -> ColumnElement[bool]:
        rid = resource_table.c.res_id
        if param.any_of:
            union = breadth.union_condition(self, res_type, param, values)
            return not_(union) if modifier == "not" else union
        if param.type == "composite":
            if not param.paths:
                return breadth.whole_composite_condition(self, res_type, name, param, values)
            return breadth.composite_condition(self, res_type, name, param, values)
        if param.type == "token":
            if param.uri:
                expr = self.uri_condition(res_type, name, values)
            else:
                expr = self._rows_matching(res_type, name, param, values, narrow)
            return not_(expr) if modifier == "not" else expr
        if param.type == "reference":
            if modifier == "identifier":
                ors = []
                for v in values:
                    system, code = token_parts(v)
                    cond = [
                        token_table.c.res_type == res_type,
                        token_table.c.param == f"{name}:identifier",
                    ]
                    if code is not None:
                        cond.append(token_table.c.code == index_value(code))
                    if system:
                        cond.append(token_table.c.system == index_value(system))
                    ors.append(rid.in_(select(token_table.c.res_id).where(*cond)))
                    # the reference may be literal: resolve through the Patient's identifiers
                    targets = select(
                        func.concat(literal("Patient/"), token_table.c.res_id)
                        if self.store.is_postgres
                        else (literal("Patient/") + token_table.c.res_id)
                    ).where(
                        token_table.c.res_type == "Patient",
                        token_table.c.param == "identifier",
                        *([token_table.c.code == index_value(code)] if code is not None else []),
                        *([token_table.c.system == index_value(system)] if system else []),
                    )
                    ors.append(
                        rid.in_(
                            select(reference_table.c.res_id).where(
                                reference_table.c.res_type == res_type,
                                reference_table.c.param == name,
                                reference_table.c.target.in_(targets),
                            )
                        )
                    )
                return any_of(ors)
            targets_list = [self._reference_value(param, v) for v in values]
            target = reference_table.c.target
            matches = [target.in_(targets_list)]
            # a canonical without a version (``questionnaire=http://x``) matches every
            # version referred to (``http://x|1.0``); with one, only that one (a canonical
            # this long is indexed by :func:`index_value` and matched whole only)
            matches += [
                target.startswith(t + "|", autoescape=True)
                for t in targets_list
                if "|" not in t and (t.startswith("urn:") or "://" in t) and len(t) < INDEX_KEPT
            ]
            return rid.in_(
                select(reference_table.c.res_id).where(
                    reference_table.c.res_type == res_type,
                    reference_table.c.param == name,
                    or_(*matches),
                )
            )
        if param.type == "date":
            values = date_values(f"{name}:{modifier}", modifier, values)
            return self._rows_matching(res_type, name, param, values, narrow)
        if param.type == "string":
            ors = []
            for v in values:
                folded = fold(v)
                pname = name
                if modifier == "exact":  # case- and accent-sensitive: the rows kept as written
                    pname = name + EXACT
                    match: ColumnElement[bool] = string_table.c.value == v
                elif modifier == "contains":
                    match = string_table.c.value.contains(folded, autoescape=True)
                else:
                    match = self.row_condition(param, string_table.c, v, name)
                ors.append(
                    rid.in_(
                        select(string_table.c.res_id).where(
                            string_table.c.res_type == res_type,
                            string_table.c.param == pname,
                            match,
                        )
                    )
                )
            return any_of(ors)
        if param.type in ("quantity", "number"):
            return self._rows_matching(res_type, name, param, values, narrow)
        raise not_searched(res_type, name, param)

    # ---- the Observation index ----------------------------------------------------------
    def observation_conditions(
        self, obs_params: list[tuple[str, str | None, list[str]]]
    ) -> tuple[list[ColumnElement[bool]], bool]:
        """Conditions on observation_index rows; returns (conditions, has_code_filter)."""
        o = observation_table.c
        conds: list[ColumnElement[bool]] = []
        has_code = False
        row_kind: bool | None = None  # is_component of the rows a code condition is on
        for name, modifier, values in obs_params:
            if name in ("patient", "subject"):
                if modifier == "identifier":
                    ors = [o.patient_id.in_(self._patient_ids_for_identifier(v)) for v in values]
                    conds.append(any_of(ors))
                    continue
                # a Patient subject is indexed only as patient_id; any other subject (Device,
                # Group, another server's Patient) only in the generic reference table
                ids: list[str] = []
                others: list[str] = []
                for v in values:
                    target = reference_target(v, self.store.base_url)
                    if "/" in target:
                        rtype, _, rid = target.partition("/")
                        if rtype == "Patient":
                            ids.append(rid)
                        elif name == "subject":
                            others.append(target)
                    else:
                        ids.append(target)
                ors = []
                if ids:
                    ors.append(o.patient_id.in_(ids))
                if others:
                    ors.append(
                        o.res_id.in_(
                            select(reference_table.c.res_id).where(
                                reference_table.c.res_type == "Observation",
                                reference_table.c.param == "subject",
                                reference_table.c.target.in_(others),
                            )
                        )
                    )
                conds.append(or_(*ors) if ors else false())
            elif name in ("code", "component-code"):
                has_code = True
                component = name == "component-code"
                if modifier == "not":
                    # no code (or no component) of the Observation is one of the values
                    x = observation_table.alias("x").c
                    conds.append(
                        o.res_id.not_in(
                            select(x.res_id).where(
                                x.is_component == component,
                                x.code_set.in_(code_sets_holding_any(map(token_parts, values))),
                            )
                        )
                    )
                    continue
                sets = code_sets_holding_any(map(token_parts, values))
                if row_kind is None or (row_kind is False and not component):
                    # on the rows the search reads (an Observation has one primary row: every
                    # ``code`` is on it)
                    row_kind = component
                    conds.append(and_(o.is_component == component, o.code_set.in_(sets)))
                    continue
                # another kind of row, or another component (``code=…&component-code=…``, a
                # GP's view codes beside ``component-code``, two ``component-code``): any row
                # of the same Observation, never the row already matched
                x = observation_table.alias(f"k{len(conds)}").c
                conds.append(
                    o.res_id.in_(
                        select(x.res_id).where(x.is_component == component, x.code_set.in_(sets))
                    )
                )
            elif name == "date":
                values = date_values(f"{name}:{modifier}", modifier, values)
                conds.append(
                    any_of(
                        [
                            date_condition(o.effective, o.effective_end, v, self.store.zone, name)
                            for v in values
                        ]
                    )
                )
        return conds, has_code

    # ---- the whole search ---------------------------------------------------------------
    def search(self, req: SearchRequest) -> SearchResult:
        check_search_values(req.params, self.max_values)
        res_type = req.res_type
        generic: list[ColumnElement[bool]] = []
        # the policy's restriction to the actor's patients by their own compartment (a type
        # without a ``patient`` parameter): never a parameter a client can send
        own = [v for k, v in req.restriction if k == OWN_PATIENTS]
        if own:
            ids = [i for v in own for i in v.split(",")]
            generic.append(own_patients_condition(res_type, ids, resource_table))
        # what the actor may read of the resources the search only asks about (_has, chains)
        readable = Readable.from_restriction(req.restriction)
        referrer_patients: list[str] | None = None
        for k, v in req.restriction:
            if k == REFERRER_PATIENTS:
                referrer_patients = [*(referrer_patients or []), *v.split(",")]
        added: list[tuple[str, str]] = [
            (k, v)
            for k, v in req.restriction
            if k not in (OWN_PATIENTS, REFERRER_PATIENTS, READABLE)
        ]
        if req.compartment is not None:
            generic.append(compartment.condition(res_type, req.compartment))
        if added or req.restriction:
            req = SearchRequest(res_type, req.params + added, req.strict)
        if res_type == audit_rows.AUDIT_EVENT:
            return self._search_audit(req)
        defs = definitions(res_type)
        warnings: list[Issue] = []
        count = self.default_count
        sort = "_lastUpdated"
        descending = False
        summary_count = False
        includes: list[str] = []
        total_mode = "accurate"
        cursor: tuple[Any, str] | None = None
        obs_params: list[tuple[str, str | None, list[str]]] = []
        revinclude_specs: list[str] = []
        iterate_specs: list[str] = []
        rev_iterate_specs: list[str] = []
        sort_expr: Any = None
        more_sorts: list[tuple[Any, bool]] = []

        ignored: list[tuple[str, str]] = []
        # a filter on the compartment picks few too (one patient's, or the actor's patients')
        narrow = bool(generic) or _narrowed(defs, req.params)

        def ignore(key: str, raw: str, label: str) -> None:
            self._unsupported(req, warnings, label)
            ignored.append((key, raw))

        for key, raw in req.params:
            name, _, modifier_raw = key.partition(":")
            modifier = modifier_raw or None
            if name in RESULT_PARAMS:
                if name == "_count":
                    try:
                        count = max(0, min(int(raw), self.max_count))
                    except ValueError:
                        raise error(
                            400, "invalid", f"_count {raw!r} is not a number", expression=["_count"]
                        ) from None
                elif name == "_sort":
                    keys = [k.strip() for k in raw.split(",") if k.strip()]
                    s = keys[0] if keys else ""
                    descending = s.startswith("-")
                    sort = s.lstrip("-")
                    if sort not in SORTS or (sort == "date" and res_type != "Observation"):
                        # any date, string or token parameter (400 naming it otherwise)
                        sort_expr = breadth.sort_column(res_type, sort, descending)
                    # further keys order what the first leaves tied (then the id)
                    more_sorts = [
                        (
                            breadth.later_sort_key(res_type, k.lstrip("-"), k.startswith("-")),
                            k.startswith("-"),
                        )
                        for k in keys[1:]
                    ]
                elif name == "_summary":
                    if raw == "count":
                        summary_count = True
                    elif raw not in SUMMARY_MODES:
                        ignore(key, raw, f"_summary={raw}")
                elif name == "_include":
                    includes.extend(x for x in raw.split(",") if x)
                    if modifier == "iterate":
                        iterate_specs.extend(x for x in raw.split(",") if x)
                elif name == "_total":
                    if raw not in TOTAL_MODES:
                        raise error(
                            400,
                            "invalid",
                            f"_total={raw!r}: use one of {', '.join(sorted(TOTAL_MODES))}",
                            expression=["_total"],
                        )
                    total_mode = raw
                elif name == "_cursor":
                    cursor = decode_cursor(raw)
                elif name == "_revinclude":
                    if modifier not in (None, "iterate"):
                        raise error(
                            400,
                            "not-supported",
                            f"{key} is not supported: use _revinclude or _revinclude:iterate",
                            expression=[key],
                        )
                    revinclude_specs.extend(x for x in raw.split(",") if x)
                    if modifier == "iterate":
                        rev_iterate_specs.extend(x for x in raw.split(",") if x)
                continue
            values = [v for v in raw.split(",") if v != ""]
            if not values:
                ignored.append((key, raw))
                continue
            if name == "_id":
                if modifier not in (None, "not"):
                    ignore(key, raw, key)
                    continue
                ids = resource_table.c.res_id.in_(values)
                generic.append(not_(ids) if modifier == "not" else ids)
                continue
            if name == "_lastUpdated":
                if modifier not in (None, *DATE_MODIFIERS):
                    ignore(key, raw, key)
                    continue
                values = date_values(key, modifier, values)
                generic.append(
                    any_of(
                        [
                            date_condition(
                                resource_table.c.last_updated,
                                resource_table.c.last_updated,
                                v,
                                self.store.zone,
                                name,
                            )
                            for v in values
                        ]
                    )
                )
                continue
            if name == "_has":
                generic.append(breadth.has_condition(self, res_type, key, values, readable))
                continue
            if res_type == "Observation" and name in breadth.OBSERVATION_EXTRA and not modifier:
                generic.append(breadth.observation_value_condition(name, values))
                continue
            link = breadth.split_chain(name, modifier)
            if (
                link is not None
                and link[2] != "identifier"
                and _patient_identifier_chain(name, modifier) is None
            ):
                generic.append(breadth.chain_condition(self, res_type, *link, values, readable))
                continue
            chained = _patient_identifier_chain(name, modifier)
            if chained is not None and chained in defs:
                # ``subject:Patient.identifier=<system>|<value>`` (how a Norwegian patient's data
                # is usually asked for): the Patients with that identifier, then their data
                name, modifier = chained, None
                found = self._patients_with_identifiers(values)
                values = [f"Patient/{pid}" for pid in sorted(found)] or ["Patient/__none__"]
            chain = None
            if "." in name:
                name, _, chain = name.partition(".")
                if chain != "identifier":
                    ignore(key, raw, key)
                    continue
                modifier = "identifier"
            param = defs.get(name)
            if param is None:
                ignore(key, raw, key)
                continue
            if param.type == "reference" and modifier and modifier[:1].isupper():
                # a type modifier: ``subject:Patient=123`` is ``subject=Patient/123``
                values = [v if "/" in v else f"{modifier}/{v}" for v in values]
                modifier = None
            if modifier not in (None, "missing") and modifier not in MODIFIERS.get(param.type, ()):
                ignore(key, raw, key)
                continue
            if modifier == "missing":
                # the Observation index's parameters and logical references too (see _missing)
                generic.append(self._missing(res_type, name, param, values, key))
                continue
            if res_type == "Observation" and name in OBS_INDEXED:
                obs_params.append((name, modifier, values))
            else:
                generic.append(
                    self.generic_condition(res_type, name, modifier, param, values, narrow)
                )

        r = resource_table.c
        type_cond = r.res_type == res_type
        if self.store.is_postgres and (narrow or res_type != "Observation"):
            # the type as a one-time sub-query: statistics taken before a type's first
            # resources (a deployment's first Conditions, until autovacuum analyses tables
            # this large) estimate it at one row, and the planner then walked every resource of
            # the type testing each against the filters: against the patient's references (34
            # ms), or against every row of a ``_tag`` for each resource (430 ms the bench's
            # first page of a third of 4,400 Conditions). Without its value the type is
            # estimated as an average type, and the filters' own index rows lead. Observations
            # are there from a deployment's first day (and have an index of their own)
            type_cond = r.res_type == select(literal(res_type)).scalar_subquery()
        base_conds: list[ColumnElement[bool]] = [type_cond, r.deleted == false()]
        base_conds.extend(generic)

        later = [expr.label(f"sortkey{i}") for i, (expr, _d) in enumerate(more_sorts, 1)]
        if res_type == "Observation" and (obs_params or sort == "date"):
            o = observation_table.c
            oconds, has_code = self.observation_conditions(obs_params)
            if not has_code:
                oconds.append(o.is_primary == true())
            sub = (
                select(o.res_id.label("res_id"), o.effective.label("effective"))
                .where(*oconds)
                .distinct()
                .subquery("o")
            )
            sort_col: Any = (
                sort_expr
                if sort_expr is not None
                else {
                    "date": func.coalesce(sub.c.effective, -(2**62)),
                    "_lastUpdated": r.last_updated,
                    "_id": r.res_id,
                }[sort]
            )
            stmt = select(r.res_id, r.content, sort_col.label("sortkey"), *later).join(
                sub, sub.c.res_id == r.res_id
            )
            # The index holds the current versions of live Observations only (a delete or an
            # update clears a resource's rows), so without conditions on the resource row
            # the count needs no look-up of each match's resource (at 1M stored, 0.3 ms
            # against 1.2-1.8 ms for a patient's code).
            count_on_index = not generic
            count_base = (
                select(sub.c.res_id)
                if count_on_index
                else select(r.res_id).join(sub, sub.c.res_id == r.res_id)
            )
        else:
            count_on_index = False
            last_updated: Any = r.last_updated
            if narrow and not self.store.is_postgres:
                # SQLite would walk every resource of the type in ``last_updated`` order to
                # spare sorting the page, testing each against the filters: with a filter
                # that picks few (a patient's Conditions) that reads them all. Sorting what
                # the filters pick is then the cheap way (``+ 0`` keeps the index out).
                last_updated = r.last_updated + 0
            sort_col = (
                sort_expr
                if sort_expr is not None
                else {"_lastUpdated": last_updated, "_id": r.res_id}[sort]
            )
            stmt = select(r.res_id, r.content, sort_col.label("sortkey"), *later)
            count_base = select(r.res_id)
        stmt = stmt.where(*base_conds)
        if not count_on_index:
            count_base = count_base.where(*base_conds)

        total: int | None = None
        counted: list[str] = []
        with self.store.reader() as conn:
            if summary_count or (cursor is None and total_mode != "none"):
                # an explicit count may count further than the total that comes with a page
                limit = self.total_limit * 100 if summary_count else self.total_limit
                n = conn.execute(
                    select(func.count()).select_from(count_base.limit(limit + 1).subquery())
                ).scalar_one()
                total = n if n <= limit else None
                if summary_count or count == 0:
                    # an answer that is only a count tells of the patients counted: the audit
                    # event names them (:attr:`SearchResult.counted`)
                    x = resource_table.alias("counted")
                    counted = list(
                        conn.execute(
                            select(x.c.patient_id)
                            .distinct()
                            .where(
                                x.c.res_type == res_type,
                                x.c.patient_id.is_not(None),
                                x.c.res_id.in_(count_base.limit(limit + 1)),
                            )
                        ).scalars()
                    )
            if summary_count:
                return SearchResult(
                    [],
                    total=total,
                    warnings=warnings,
                    summary_count=True,
                    ignored=ignored,
                    counted=counted,
                )
            order_keys = [(sort_col, descending), *more_sorts]
            if cursor is not None:
                cvals, cid = cursor
                if len(order_keys) > 1:
                    if not isinstance(cvals, list) or len(cvals) != len(order_keys):
                        raise error(
                            400,
                            "invalid",
                            "the _cursor parameter is not valid (paging link damaged)",
                        )
                elif isinstance(cvals, list | dict):
                    raise error(
                        400, "invalid", "the _cursor parameter is not valid (paging link damaged)"
                    )
                else:
                    cvals = [cvals]
                stmt = stmt.where(after_cursor(order_keys, cvals, r.res_id, cid, descending))
            stmt = stmt.order_by(
                *[col.desc() if desc else col.asc() for col, desc in order_keys],
                r.res_id.desc() if descending else r.res_id.asc(),
            )
            stmt = stmt.limit(count + 1)
            rows = conn.execute(stmt).all() if count > 0 else []
            next_cursor = None
            if len(rows) > count:
                rows = rows[:count]
                last = rows[-1]
                next_cursor = encode_cursor(
                    [
                        last.sortkey,
                        *(getattr(last, f"sortkey{i}") for i in range(1, len(order_keys))),
                    ]
                    if len(order_keys) > 1
                    else last.sortkey,
                    last.res_id,
                )
            page = [(row.res_id, bytes(row.content)) for row in rows]
            included = self._includes(conn, res_type, includes, page, warnings, req)
            included += breadth.revincludes(
                self,
                conn,
                res_type,
                revinclude_specs,
                page,
                frozenset(rev_iterate_specs),
                warnings,
                referrer_patients,
            )
            included += breadth.iterate_includes(
                self,
                conn,
                iterate_specs,
                included,
                rev_iterate_specs,
                {(res_type, rid) for rid, _c in page},
                warnings,
                referrer_patients,
            )
        return SearchResult(
            page,
            included=included,
            total=total,
            next_cursor=next_cursor,
            warnings=warnings,
            ignored=ignored,
            counted=counted,
        )

    def _missing(
        self, res_type: str, name: str, param: SearchParam, values: list[str], key: str
    ) -> ColumnElement[bool]:
        """``name:missing=true``: resources without a value for the parameter; ``false``: with."""
        if values not in (["true"], ["false"]):
            raise error(400, "invalid", f"{key} must be true or false", expression=[key])
        if param.type not in INDEXED:
            raise not_searched(res_type, name, param)
        if param.any_of:  # a value of any of them
            defs = definitions(res_type)
            present = or_(
                *[self._missing(res_type, n, defs[n], ["false"], key) for n in param.any_of]
            )
            return not_(present) if values == ["true"] else present
        rid = resource_table.c.res_id
        has: list[ColumnElement[bool]] = []
        if res_type == "Observation" and name in OBS_INDEXED:
            o = observation_table.c
            if name == "date":
                has.append(
                    rid.in_(
                        select(o.res_id).where(o.is_primary == true(), o.effective.is_not(None))
                    )
                )
            elif name in ("patient", "subject"):
                has.append(
                    rid.in_(
                        select(o.res_id).where(o.is_primary == true(), o.patient_id.is_not(None))
                    )
                )
            elif name == "code":
                has.append(rid.in_(select(o.res_id).where(o.is_primary == true())))
            else:  # component-code
                has.append(rid.in_(select(o.res_id).where(o.is_component == true())))
        table = breadth.INDEX_TABLES[param.type]
        has.append(
            rid.in_(
                select(table.c.res_id).where(table.c.res_type == res_type, table.c.param == name)
            )
        )
        if param.type == "reference":  # logical references (identifier only) count as values
            has.append(
                rid.in_(
                    select(token_table.c.res_id).where(
                        token_table.c.res_type == res_type,
                        token_table.c.param == f"{name}:identifier",
                    )
                )
            )
        present = or_(*has)
        return not_(present) if values == ["true"] else present

    def _search_audit(self, req: SearchRequest) -> SearchResult:
        """AuditEvents are searched in the audit chain's own columns (``store.audit_rows``)."""
        with self.store.reader() as conn:
            found = audit_rows.search(
                conn,
                req.params,
                count=self.default_count,
                max_count=self.max_count,
                total_limit=self.total_limit,
                zone=self.store.zone,
                strict=req.strict,
            )
        return SearchResult(**found)

    def _patients_with_identifiers(self, values: list[str]) -> set[str]:
        """Ids of the Patients having any of the identifiers (``system|value`` or ``value``)."""
        t = token_table.c
        conds = []
        for v in values:
            system, sep, code = v.partition("|")
            conds.append(
                and_(t.system == index_value(system), t.code == index_value(code))
                if sep
                else t.code == index_value(system)
            )
        with self.store.reader() as conn:
            return {
                r[0]
                for r in conn.execute(
                    select(t.res_id).where(
                        t.res_type == "Patient", t.param == "identifier", or_(*conds)
                    )
                )
            }

    def _unsupported(self, req: SearchRequest, warnings: list[Issue], key: str) -> None:
        """Refuse (strict) or ignore with a warning a parameter the server does not support.
        A result or client-control parameter (``_summary=text``, ``_elements``, fhirpy's
        ``_totalMethod`` …) only shapes the answer, never widens the match, so it is ignored
        with a warning even in strict mode."""
        msg = f"search parameter {key!r} is not supported for {req.res_type}"
        base = key.partition("=")[0].partition(":")[0]
        if req.strict and base not in RESULT_PARAMS and base not in CONTROL_PARAMS:
            raise FhirError(400, [Issue("error", "not-supported", msg, (key,))])
        warnings.append(Issue("warning", "not-supported", msg + " and was ignored", (key,)))

    def _includes(
        self,
        conn: Any,
        res_type: str,
        includes: list[str],
        page: list[tuple[str, bytes]],
        warnings: list[Issue],
        req: SearchRequest,
    ) -> list[tuple[str, str, bytes]]:
        if not includes or not page:
            return []
        from interop.fhir.searchparams import values as param_values

        targets: set[str] = set()
        defs = definitions(res_type)
        for inc in includes:
            parts = inc.split(":")
            if len(parts) < 2 or parts[0] not in (res_type, "*"):
                self._unsupported(req, warnings, f"_include={inc}")
                continue
            names = list(defs) if parts[1] == "*" else [parts[1]]
            for pname in names:
                p = defs.get(pname)
                if p is None or p.type != "reference":
                    if parts[1] != "*":
                        self._unsupported(req, warnings, f"_include={inc}")
                    continue
                for _rid, content in page:
                    resource = orjson.loads(content)
                    for v in param_values(resource, p):
                        if isinstance(v, dict) and isinstance(v.get("reference"), str):
                            t = reference_target(v["reference"], self.store.base_url)
                            if (
                                t.count("/") == 1
                                and (len(parts) < 3 or t.startswith(parts[2]))
                                and (p.target is None or t.startswith(p.target + "/"))
                            ):
                                targets.add(t)
        out: list[tuple[str, str, bytes]] = []
        by_type: dict[str, list[str]] = {}
        for t in sorted(targets):
            rtype, _, rid = t.partition("/")
            by_type.setdefault(rtype, []).append(rid)
        r = resource_table.c
        for rtype, ids in by_type.items():
            for row in conn.execute(
                select(r.res_id, r.content).where(
                    r.res_type == rtype, r.res_id.in_(ids), r.deleted == false()
                )
            ):
                out.append((rtype, row.res_id, bytes(row.content)))
        return out


def not_searched(res_type: str, name: str, param: SearchParam) -> FhirError:
    """400 for an R4 parameter the server knows but does not index: refused, never ignored
    (ignoring it would widen the search)."""
    return error(
        400,
        "not-supported",
        f"search parameter {name} ({param.type}) of {res_type} is not supported by this server",
        expression=[name],
    )
