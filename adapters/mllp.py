"""MLLP framing (Minimal Lower Layer Protocol): ``<VT> message <FS><CR>``."""

from __future__ import annotations

from collections.abc import Iterator

VT = b"\x0b"
FS = b"\x1c"
CR = b"\x0d"
MAX_MESSAGE = 16 * 1024 * 1024


def mllp_frame(message: bytes) -> bytes:
    return VT + message + FS + CR


class MllpError(ValueError):
    pass


class MllpDecoder:
    """Incremental decoder: feed bytes as they arrive, get complete messages out.

    Handles frames split across reads and several frames in one read; bytes outside a frame
    (line noise before a VT) are skipped.
    """

    def __init__(self, max_message: int = MAX_MESSAGE) -> None:
        self.buffer = bytearray()
        self.max_message = max_message

    def feed(self, data: bytes) -> Iterator[bytes]:
        self.buffer.extend(data)
        while True:
            start = self.buffer.find(VT)
            if start == -1:
                self.buffer.clear()
                return
            if start:
                del self.buffer[:start]
            end = self.buffer.find(FS + CR, 1)
            if end == -1:
                if len(self.buffer) > self.max_message:
                    self.buffer.clear()
                    raise MllpError("MLLP frame larger than the limit")
                return
            message = bytes(self.buffer[1:end])
            del self.buffer[: end + 2]
            yield message
