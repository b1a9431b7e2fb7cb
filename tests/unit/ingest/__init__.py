"""Unit tests of the ingest service's pure core."""
