"""Ingest: vendor and device data in (HTTP, MLLP, folders) through adapters and mappings to
stored, triaged Observations."""
