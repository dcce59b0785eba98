"""MLLP listener for HL7 v2 (``interop serve --mllp-port N``).

For each framed message: read the MSH cheaply, store the raw bytes durably (one
:class:`interop.ingest.inbox.GroupAcceptor` thread for all connections: the messages that arrive
while a transaction is being written share the next commit), and only once that transaction
has committed answer ``AA``. Unusable messages get ``AR`` (not HL7, no MSH-10, not a message
type we take, a sender not listed in the MLLP senders file for the connection's address: see
:mod:`interop.ingest.mllp_senders`) with ERR segments, and a message that could not be stored ``AE``
(resend; also while the senders file is unreadable). A message is named by its full MSH-3 and
MSH-4 (every component) and MSH-10: a re-send (the same content, see
:func:`adapters.hl7v2.message_digest`) is acknowledged again with the first ACK without being
processed twice; another message reusing the name is answered ``AE`` with an ERR segment
(205, duplicate key) and kept with status ``conflict`` for an operator, never processed (see
:mod:`interop.resend`). Parsing the OBX groups, mapping and storing
Observations happen afterwards, in the inbox processor, off the acknowledgement path; in this
process its writes yield to the listener's on SQLite (:mod:`interop.store.write_lock`).

Limits: a connection that sends nothing for ``mllp_idle_timeout_seconds`` is closed; a frame
over ``mllp_max_frame_size`` is read past without being kept and answered ``AR`` (the
connection stays usable for the next message).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

from adapters.hl7v2 import build_ack, split_message_header
from adapters.mllp import MllpDecoder, OversizedFrame, mllp_frame
from interop.ingest.inbox import GroupAcceptor, InboxProcessor, Incoming
from interop.ingest.mllp_senders import SendersFileError, load_senders
from interop.resend import HL7_DUPLICATE_KEY, conflict_message
from interop.services import Services

log = logging.getLogger("interop.ingest.mllp")

ACCEPTED_TYPES = frozenset({"ORU^R01"})


class MllpServer:
    def __init__(self, services: Services, processor: InboxProcessor | None = None) -> None:
        self.services = services
        self.processor = processor
        self.server: asyncio.base_events.Server | None = None
        # one writer thread stores for all connections (a group commit when several send)
        self.acceptor = GroupAcceptor(services)
        self.on_stored: Callable[[], None] | None = (
            processor.wake.set if processor is not None else None
        )

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        settings = self.services.settings
        decoder = MllpDecoder(max_message=int(settings.mllp_max_frame_size))
        idle = settings.mllp_idle_timeout_seconds or None
        peer = writer.get_extra_info("peername")
        try:
            while True:
                try:
                    chunk = await asyncio.wait_for(reader.read(65536), idle)
                except TimeoutError:
                    log.info("MLLP connection from %s idle for %s s; closed", peer, idle)
                    break
                if not chunk:
                    break
                for frame in decoder.feed_frames(chunk):
                    if isinstance(frame, OversizedFrame):
                        ack = self.refuse_oversized(frame, decoder.max_message)
                    else:
                        ack = await self.acknowledge(frame, peer[0] if peer else None)
                    writer.write(mllp_frame(ack))
                    await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:  # noqa: BLE001 - one bad connection must not stop the listener
            log.exception("MLLP connection from %s failed", peer)
        finally:
            writer.close()

    @staticmethod
    def refuse_oversized(frame: OversizedFrame, limit: int) -> bytes:
        """``AR`` for a message over the size limit (its MSH read from the frame's head)."""
        text = f"message of {frame.size} bytes is larger than the limit of {limit} bytes"
        try:
            msh = split_message_header(frame.head)
        except ValueError:
            msh = None
        return build_ack(msh, "AR", text=text, errors=(("207", text),))

    async def acknowledge(self, message: bytes, peer: str | None = None) -> bytes:
        """The acknowledgement for one message from a connection from ``peer`` (its address)."""
        try:
            msh = split_message_header(message)
        except ValueError as exc:
            return build_ack(None, "AR", text=f"not an HL7 v2 message: {exc}")
        msg_type = msh.message_type
        if b"\x00" in message:
            return build_ack(msh, "AR", text="the message holds a NUL byte; HL7 v2 text cannot")
        if not msh.control_id:
            return build_ack(msh, "AR", text="MSH-10 (message control id) is empty")
        if msg_type not in ACCEPTED_TYPES:
            return build_ack(
                msh,
                "AR",
                text=f"message type {msg_type or '(none)'} is not accepted here; send ORU^R01",
            )
        sender = msh.sender or "unknown"
        try:
            refused = load_senders(self.services.settings).refusal(sender, peer)
        except SendersFileError as exc:
            log.error("MLLP senders file: %s", exc)
            return build_ack(msh, "AE", text="temporary configuration error; resend later")
        if refused is not None:
            log.warning("MLLP message %s from %s refused: %s", msh.control_id, peer, refused)
            return build_ack(msh, "AR", text=refused)
        # a message is named by the full sending application and facility and MSH-10; one
        # that reuses a name with other content is refused and kept (see interop.resend)
        sender = msh.sender_identity if msh.sender_identity != "|" else "unknown"
        ack = build_ack(msh, "AA")
        conflict_text = conflict_message(msh.control_id, sender)
        refusal = build_ack(
            msh, "AE", text=conflict_text, errors=((HL7_DUPLICATE_KEY, conflict_text),)
        )
        try:
            stored = await self.acceptor.accept(
                Incoming(
                    channel="mllp",
                    sender=sender,
                    message_id=msh.control_id,
                    adapter="hl7v2",
                    raw=message,
                    ack=ack,
                    conflict_ack=refusal,
                )
            )
        except Exception:  # noqa: BLE001 - tell the sender to retry: nothing was kept
            log.exception("storing MLLP message %s failed", msh.control_id)
            return build_ack(msh, "AE", text="temporary storage failure; resend later")
        if stored.conflict:
            return stored.previous_ack or refusal
        if stored.duplicate:
            return stored.previous_ack or build_ack(msh, "AA", text="duplicate; already received")
        if self.on_stored:
            self.on_stored()
        return ack

    async def start(self, host: str, port: int) -> None:
        self.server = await asyncio.start_server(self.handle, host, port)
        log.info("MLLP listening on %s:%s", host, port)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        await asyncio.to_thread(self.acceptor.close)


def start_processor_thread(processor: InboxProcessor) -> tuple[threading.Thread, threading.Event]:
    stop = threading.Event()
    processor.recover()
    thread = threading.Thread(target=processor.run_forever, args=(stop,), daemon=True, name="inbox")
    thread.start()
    return thread, stop
