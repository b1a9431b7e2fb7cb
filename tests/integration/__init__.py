"""Tests over the real broker and database: the bus, the dev stack and each service."""
