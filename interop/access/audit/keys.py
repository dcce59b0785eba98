"""The audit chain's HMAC keys: kept outside the database, identified by a key id per link.

A key is 32 random bytes written as 64 hex digits in a file (``interop audit keygen``). The
current key (``INTEROP_AUDIT_KEY_FILE`` or ``INTEROP_AUDIT_KEY``) signs new links; earlier keys
(``*.key`` files in ``INTEROP_AUDIT_KEY_DIR``) only verify the links they signed. A link
records the *key id* (a one-way fingerprint of its key), never the key.

Without a configured key (a developer's ``make run``) one is generated into ``var/audit.key``
and a warning is logged once per process: such a chain only protects as well as that file.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path

from interop.config import Settings, get_settings

log = logging.getLogger("interop.audit")

KEY_BYTES = 32
_KEY_ID_LABEL = b"dho-interop audit key id"


class AuditKeyError(Exception):
    """A key file or setting is missing or unusable (the message names it)."""


def key_id(key: bytes) -> str:
    """A key's id: 16 hex digits of an HMAC under the key itself (reveals nothing of it)."""
    return hmac.new(key, _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:16]


def parse_key(text: str, where: str) -> bytes:
    """A key from its text form: hex digits, blank lines and ``#`` comments ignored."""
    digits = "".join(
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )
    try:
        key = bytes.fromhex(digits)
    except ValueError:
        raise AuditKeyError(f"{where}: an audit key is hex digits (interop audit keygen)") from None
    if len(key) < KEY_BYTES:
        raise AuditKeyError(
            f"{where}: an audit key needs at least {KEY_BYTES} bytes ({2 * KEY_BYTES} hex digits)"
        )
    return key


def read_key_file(path: Path) -> bytes:
    try:
        text = path.read_text(encoding="ascii")
    except OSError as exc:
        raise AuditKeyError(f"audit key file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise AuditKeyError(f"audit key file {path}: not a text file of hex digits") from None
    return parse_key(text, f"audit key file {path}")


def write_new_key(path: Path) -> bytes:
    """Generate a key into a new file readable by its owner only (never overwrites). The file
    appears whole or not at all, so a process starting beside this one never reads half a key."""
    key = secrets.token_bytes(KEY_BYTES)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        raise AuditKeyError(f"{path} exists already; a key file is never overwritten")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(f"# DHO Interop audit chain key, id {key_id(key)}\n{key.hex()}\n")
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)  # fails when the name exists: never replaces a key
    except FileExistsError:
        raise AuditKeyError(f"{path} exists already; a key file is never overwritten") from None
    finally:
        tmp.unlink(missing_ok=True)
    return key


@dataclass(frozen=True)
class Keyring:
    """The key that signs new links and every key that may verify old ones (by key id)."""

    current: bytes
    keys: dict[str, bytes] = field(default_factory=dict)

    @property
    def current_id(self) -> str:
        return key_id(self.current)

    def get(self, kid: str) -> bytes | None:
        return self.keys.get(kid)

    @classmethod
    def of(cls, current: bytes, *older: bytes) -> Keyring:
        return cls(current, {key_id(k): k for k in (*older, current)})


def dev_key_path() -> Path:
    return Path("var").absolute() / "audit.key"


_warned = False
_warn_lock = threading.Lock()


def _dev_key() -> bytes:
    global _warned
    path = dev_key_path()
    if path.exists():
        key = read_key_file(path)
    else:
        try:
            key = write_new_key(path)
        except AuditKeyError:  # another process made it just now
            key = read_key_file(path)
    with _warn_lock:
        if not _warned:
            _warned = True
            log.warning(
                "no audit key configured (INTEROP_AUDIT_KEY_FILE): using the development key "
                "%s (id %s). In production make a key with `interop audit keygen --out FILE` "
                "and keep it away from the database",
                path,
                key_id(key),
            )
    return key


def keyring_from(settings: Settings) -> Keyring:
    """The keyring the settings describe (a development key when none is configured)."""
    if settings.audit_key is not None:
        current = parse_key(settings.audit_key.get_secret_value(), "INTEROP_AUDIT_KEY")
    elif settings.audit_key_file is not None:
        current = read_key_file(settings.audit_key_file)
    else:
        current = _dev_key()
    older: list[bytes] = []
    folder = settings.audit_key_dir
    if folder is not None:
        if not folder.is_dir():
            raise AuditKeyError(f"INTEROP_AUDIT_KEY_DIR {folder} is not a folder")
        older = [read_key_file(p) for p in sorted(folder.glob("*.key"))]
    return Keyring.of(current, *older)


_cached: Keyring | None = None
_cache_lock = threading.Lock()


def default_keyring() -> Keyring:
    """The process's keyring, from the environment's settings (read once)."""
    global _cached
    with _cache_lock:
        if _cached is None:
            _cached = keyring_from(get_settings())
        return _cached


def reset_keyring_cache() -> None:
    """Read the keys again on next use (after the settings changed: tests, rotation)."""
    global _cached
    with _cache_lock:
        _cached = None
