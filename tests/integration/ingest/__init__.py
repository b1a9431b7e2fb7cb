"""Integration tests of the ingest service over the real broker and database."""
