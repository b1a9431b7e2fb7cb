"""Settings of the counter test service."""

from __future__ import annotations

from libs.common.settings import Settings


class CounterSettings(Settings):
    service_name: str = "counter"
    http_port: int = 8199
    counter_topics: list[str] = ["closeloop.behavior.v1"]
    counter_handler_delay_ms: int = 0
    counter_reject_poison: bool = True
