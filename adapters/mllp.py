"""MLLP framing (Minimal Lower Layer Protocol): ``<VT> message <FS><CR>``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

VT = b"\x0b"
FS = b"\x1c"
CR = b"\x0d"
MAX_MESSAGE = 16 * 1024 * 1024
HEAD_KEPT = 4096
"""Of a frame over the limit, only this much is kept: enough for its MSH (to answer AR)."""


def mllp_frame(message: bytes) -> bytes:
    return VT + message + FS + CR


class MllpError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class OversizedFrame:
    """A frame larger than the decoder's limit, read past without being kept."""

    head: bytes
    """The frame's first bytes (its MSH segment, when it has one)."""
    size: int
    """How many bytes the frame carried."""


class MllpDecoder:
    """Incremental decoder: feed bytes as they arrive, get complete messages out.

    Handles frames split across reads and several frames in one read; bytes outside a frame
    (line noise before a VT) are skipped. A frame over ``max_message`` bytes is never held in
    memory: the decoder keeps its first :data:`HEAD_KEPT` bytes, reads past the rest to its
    end and reports it as an :class:`OversizedFrame`; the frames after it are decoded as usual.
    Each byte is searched once, however the frames are split into reads.
    """

    def __init__(self, max_message: int = MAX_MESSAGE) -> None:
        self.buffer = bytearray()
        self.max_message = max_message
        self._scanned = 1
        """Where the search for the frame end resumes (bytes before it hold no FS CR)."""
        self._oversized: bytearray | None = None
        self._oversized_size = 0

    def feed(self, data: bytes) -> Iterator[bytes]:
        """The complete messages in ``data``; :class:`MllpError` for a frame over the limit."""
        for frame in self.feed_frames(data):
            if isinstance(frame, OversizedFrame):
                raise MllpError(f"MLLP frame of {frame.size} bytes is larger than the limit")
            yield frame

    def feed_frames(self, data: bytes) -> Iterator[bytes | OversizedFrame]:
        """The complete messages in ``data``, and an :class:`OversizedFrame` for each frame
        over the limit (when its end has been read)."""
        self.buffer.extend(data)
        while True:
            if self._oversized is not None:
                end = self.buffer.find(FS + CR)
                # keep the last byte: it may be the FS of an FS CR split across reads
                done = end if end != -1 else len(self.buffer) - min(1, len(self.buffer))
                if len(self._oversized) < HEAD_KEPT:
                    self._oversized += self.buffer[: min(done, HEAD_KEPT - len(self._oversized))]
                self._oversized_size += done
                if end == -1:
                    del self.buffer[:done]
                    return
                del self.buffer[: end + 2]
                head, self._oversized = self._oversized, None
                yield OversizedFrame(bytes(head), self._oversized_size)
                continue
            start = self.buffer.find(VT)
            if start == -1:
                self.buffer.clear()
                self._scanned = 1
                return
            if start:
                del self.buffer[:start]
                self._scanned = 1
            end = self.buffer.find(FS + CR, self._scanned)
            if end == -1:
                if len(self.buffer) - 1 - (self.buffer[-1:] == FS) > self.max_message:
                    self._oversized = bytearray()
                    self._oversized_size = 0
                    del self.buffer[:1]  # the VT: what follows is the frame
                    self._scanned = 1
                else:
                    self._scanned = max(1, len(self.buffer) - 1)
                    return
                continue
            self._scanned = 1
            if end - 1 > self.max_message:
                yield OversizedFrame(bytes(self.buffer[1 : min(end, 1 + HEAD_KEPT)]), end - 1)
                del self.buffer[: end + 2]
                continue
            message = bytes(self.buffer[1:end])
            del self.buffer[: end + 2]
            yield message
