"""How a GP is asked to approve a plan, how the answer is read, and what the care team is told
of it: data in ``mappings/plans/gp-approval.yaml`` that a domain expert can change."""

from __future__ import annotations

from importlib.resources import files
from typing import Any

import yaml


def gp_approval_rules() -> dict[str, Any]:
    """The rules, read from the mapping file (``request``, ``answers``, ``notice``)."""
    raw = (files("mappings") / "plans" / "gp-approval.yaml").read_text("utf-8")
    loaded: dict[str, Any] = yaml.safe_load(raw)
    return loaded
