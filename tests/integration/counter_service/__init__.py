"""A test-only service on the real bus: counts `behavior.occurred` amounts and emits a result.

Its effect (adding each event's amount to a per-profile total) is deliberately not idempotent,
so a total that matches the input proves every event was applied exactly once.
"""
