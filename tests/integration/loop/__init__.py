"""End-to-end tests of the loop: ingest, profile and segment as processes over the bus."""
