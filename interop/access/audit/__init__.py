"""The audit log (*Wire Tap*): an AuditEvent for every read and write by an actor, in a chain
keyed with an HMAC key kept outside the database, so that changing, removing or re-chaining
events is detectable (``interop audit verify``).

* :func:`build_event` — the event for one access: actor, action, what, every patient whose
  data was returned, outcome, emergency access (*nødrett*).
* :func:`audit_log` (store) → :class:`AuditLog`: ``await record(event)`` for request paths
  (group commit; returns once the event is committed), ``append(tx, event)`` inside a write
  transaction.
* :func:`write_hook` — the store hook auditing every write by an actor (the bootstrap admin
  key's too); the bootstrap key's reads are not audited.
* :mod:`.keys` (keys and rotation), :mod:`.heads` (head export), :mod:`.chain` (verification),
  :mod:`.accesses` (the patient's list of who has seen their record).
"""

from __future__ import annotations

from interop.access.audit.chain import (
    GENESIS,
    HASH_URL,
    KEY_URL,
    PREV_URL,
    Verification,
    canonical,
    verify,
)
from interop.access.audit.events import ACTION, EMERGENCY, build_event, is_emergency
from interop.access.audit.hooks import acting_actor, is_bootstrap, write_hook
from interop.access.audit.hooks import flush as flush_audit
from interop.access.audit.keys import Keyring, default_keyring
from interop.access.audit.log import AuditLog, audit_log

__all__ = [
    "ACTION",
    "EMERGENCY",
    "GENESIS",
    "HASH_URL",
    "KEY_URL",
    "PREV_URL",
    "AuditLog",
    "Keyring",
    "Verification",
    "acting_actor",
    "audit_log",
    "build_event",
    "canonical",
    "default_keyring",
    "flush_audit",
    "is_bootstrap",
    "is_emergency",
    "verify",
    "write_hook",
]
