"""MLLP listener for HL7 v2 (``interop serve --mllp-port N``).

For each framed message: read the MSH cheaply, store the raw bytes durably (one
:class:`interop.inbox.GroupAcceptor` thread for all connections: the messages that arrive
while a transaction is being written share the next commit), and only once that transaction
has committed answer ``AA``. Unusable messages get ``AR`` (not HL7, no MSH-10, not a message
type we take) with ERR segments, and a message that could not be stored ``AE`` (resend); a
message whose MSH-10 was seen before from the same sender is acknowledged again (with the
first ACK) without being processed twice. Parsing the OBX groups, mapping and storing
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
from interop.inbox import GroupAcceptor, InboxProcessor, Incoming
from interop.services import Services

log = logging.getLogger("interop.mllp")

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
                        ack = await self.acknowledge(frame)
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

    async def acknowledge(self, message: bytes) -> bytes:
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
        ack = build_ack(msh, "AA")
        try:
            stored = await self.acceptor.accept(
                Incoming(
                    channel="mllp",
                    sender=sender,
                    message_id=msh.control_id,
                    adapter="hl7v2",
                    raw=message,
                    ack=ack,
                )
            )
        except Exception:  # noqa: BLE001 - tell the sender to retry: nothing was kept
            log.exception("storing MLLP message %s failed", msh.control_id)
            return build_ack(msh, "AE", text="temporary storage failure; resend later")
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
