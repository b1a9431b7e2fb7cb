"""Ingest: the Segment-compatible tracking API, bulk imports and the write keys that guard them."""
