"""A received HL7 v2 message checked against the standard's message structure (hl7apy's
model of the version the message names), for the operator's view of the inbox.

Off the acknowledgement path and never deciding what is stored: the adapter reads what it can
item by item (devices send messages that bend the standard, e.g. OBX-11 left empty), and this
says, for someone looking at one message, where it departs from the standard.
"""

from __future__ import annotations

import contextlib
import os
import tempfile

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message
from hl7apy.validation import Validator

MAX_BYTES = 1_000_000
"""Larger messages are not checked (the full model of a big message is slow to build)."""
MAX_PROBLEMS = 50


def structure_problems(raw: bytes) -> list[str]:
    """Where the message departs from its version's structure (``Error: …``/``Warning: …``),
    empty when it does not."""
    if len(raw) > MAX_BYTES:
        return [f"Warning: not checked (over {MAX_BYTES} bytes)"]
    text = raw.decode("utf-8", errors="replace").replace("\r\n", "\r").replace("\n", "\r")
    try:
        message = parse_message(
            text.strip("\r"), validation_level=VALIDATION_LEVEL.STRICT, find_groups=True
        )
    except Exception as exc:  # noqa: BLE001 - hl7apy raises many kinds; each is an answer here
        return [f"Error: the message cannot be read against its structure: {exc}"]
    with tempfile.TemporaryDirectory() as folder:
        report = os.path.join(folder, "report.txt")
        # it raises the first problem; the report file lists every one
        with contextlib.suppress(Exception):
            Validator.validate(message, report_file=report)
        try:
            with open(report, encoding="utf-8") as f:
                lines = [line.strip() for line in f if line.strip()]
        except OSError:
            lines = []
    return lines[:MAX_PROBLEMS]
