"""Norwegian health messages (KITH/e-helse XML): Hodemelding (MsgHead v1.2) with PLO
*Helseopplysninger til lege* or Dialogmelding content, and AppRec receipts.

:class:`KithMessages` is the entry point: it builds outgoing messages and validates every one
against the official schemas before it may leave, and reads incoming ones through the national
receive checklist (:func:`plo_messages.receive.receive`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from pathlib import Path

from lxml import etree

from plo_messages.apprec import AppRec, build_apprec
from plo_messages.model import Attachment, Header
from plo_messages.msghead import build_msghead
from plo_messages.receive import PatientCheck, Received, read, receive
from plo_messages.registry import MessageRegistry, load_registry
from plo_messages.schemas import SchemaConfigError, SchemaProblem, SchemaSet
from plo_messages.xmlsafe import DEFAULT_MAX_BYTES

__all__ = [
    "InvalidOutgoingMessage",
    "KithMessages",
    "Received",
    "SchemaConfigError",
]


class InvalidOutgoingMessage(ValueError):
    """A message we built does not validate: it must never leave."""

    def __init__(self, problems: list[SchemaProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems[:5]))


def serialize(root: etree._Element) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


class KithMessages:
    def __init__(
        self,
        schema_dir: Path,
        registry: MessageRegistry | None = None,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.registry = registry or load_registry()
        self.schemas = SchemaSet(schema_dir, self.registry)
        self.max_bytes = max_bytes
        """Largest message read; larger ones are refused unread (T99)."""

    def validated(self, root: etree._Element) -> bytes:
        problems = self.schemas.validate(root)
        if problems:
            raise InvalidOutgoingMessage(problems)
        return serialize(root)

    def build(
        self,
        header: Header,
        payload: etree._Element,
        attachments: Iterable[Attachment] = (),
    ) -> bytes:
        """A MsgHead around ``payload``: built, schema-validated, serialised (UTF-8)."""
        return self.validated(build_msghead(header, payload, attachments=attachments))

    def build_apprec(self, rec: AppRec, version: str) -> bytes:
        return self.validated(build_apprec(rec, self.registry.apprecs[version]))

    def receive(
        self,
        data: bytes,
        *,
        own_her_ids: Collection[str],
        seen: Callable[[str], bool] = lambda _msg_id: False,
        patient_check: PatientCheck | None = None,
        test_environment: bool = False,
    ) -> Received:
        """``test_environment``: accept person numbers of the national test environments."""
        return receive(
            data,
            schemas=self.schemas,
            own_her_ids=own_her_ids,
            seen=seen,
            patient_check=patient_check,
            max_bytes=self.max_bytes,
            test_environment=test_environment,
        )

    def read(self, data: bytes) -> Received:
        """What a message is and says, after the schema check, without the receiver's checks."""
        return read(data, schemas=self.schemas, max_bytes=self.max_bytes)
