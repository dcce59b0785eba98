"""The care core: self-management plans, triage of measurements against them, and the
deviations (Tasks and Flags) it opens — DESIGN §6."""
