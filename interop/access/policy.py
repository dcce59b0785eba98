"""Access policy: what an actor may read and write.

:class:`AccessPolicy` is the seam every API route calls. The base policy lets the admin do
everything and refuses every other role; the per-actor policy (GP, hospital, EPJ, follow-up
centre, vendor, Consent) replaces it without touching the routes.
"""

from __future__ import annotations

from typing import Any

from interop.access.actor import Actor
from interop.fhir.outcome import error
from interop.store.repository import StoredResource
from interop.store.search import SearchResult


class AccessPolicy:
    def _require_admin(self, actor: Actor, what: str) -> None:
        if not actor.is_admin:
            raise error(403, "forbidden", f"role {actor.role!r} may not {what}")

    def check_read(self, actor: Actor, stored: StoredResource) -> None:
        self._require_admin(actor, f"read {stored.res_type}")

    def check_write(self, actor: Actor, resource: dict[str, Any]) -> None:
        self._require_admin(actor, f"write {resource.get('resourceType')}")

    def check_delete(self, actor: Actor, stored: StoredResource) -> None:
        self._require_admin(actor, f"delete {stored.res_type}")

    def check_bundle(self, actor: Actor, bundle: Any) -> None:
        self._require_admin(actor, "post Bundles")

    def filter_search(
        self, actor: Actor, res_type: str, params: list[tuple[str, str]]
    ) -> list[tuple[str, str]]:
        self._require_admin(actor, f"search {res_type}")
        return params

    def filter_result(self, actor: Actor, res_type: str, result: SearchResult) -> SearchResult:
        return result
