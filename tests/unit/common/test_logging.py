"""Logging: one JSON object per line on stderr, with the caller's extra fields."""

from __future__ import annotations

import logging

import orjson
import pytest

from libs.common.logging import configure_logging
from libs.common.settings import Settings

pytestmark = pytest.mark.usefixtures("restore_logging")


def _only_line(text: str) -> dict[str, object]:
    [line] = text.splitlines()
    parsed: dict[str, object] = orjson.loads(line)
    return parsed


def test_log_line_is_json_with_extra_fields(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(Settings(service_name="profile", log_json=True, log_level="INFO"))

    logging.getLogger("libs.common.bus").info(
        "Handled %d events", 3, extra={"event_id": "evt-1", "topic": "closeloop.ingest.v1"}
    )

    entry = _only_line(capsys.readouterr().err)
    assert entry.pop("time")
    assert entry == {
        "level": "INFO",
        "logger": "libs.common.bus",
        "message": "Handled 3 events",
        "service": "profile",
        "event_id": "evt-1",
        "topic": "closeloop.ingest.v1",
    }


def test_exception_is_logged_as_text_inside_the_json(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(Settings(service_name="profile", log_json=True))

    try:
        raise ValueError("bad payload")
    except ValueError:
        logging.getLogger("test").exception("Decoding failed", extra={"group": "profile"})

    entry = _only_line(capsys.readouterr().err)
    assert entry["group"] == "profile"
    assert isinstance(entry["exception"], str)
    assert "Traceback" in entry["exception"]
    assert "ValueError: bad payload" in entry["exception"]


def test_uvicorn_logs_go_through_the_json_handler(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(Settings(service_name="segment", log_json=True))

    logging.getLogger("uvicorn.error").info("Started server process")

    entry = _only_line(capsys.readouterr().err)
    assert entry["logger"] == "uvicorn.error"
    assert entry["service"] == "segment"


def test_configuring_twice_writes_each_line_once(capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(service_name="segment", log_json=True)
    configure_logging(settings)
    configure_logging(settings)

    logging.getLogger("test").warning("once")

    assert len(capsys.readouterr().err.splitlines()) == 1


def test_level_below_the_configured_one_is_dropped(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(Settings(service_name="segment", log_level="WARNING"))

    logging.getLogger("test").info("chatter")

    assert capsys.readouterr().err == ""


def test_access_log_is_off_unless_debugging() -> None:
    configure_logging(Settings(service_name="segment", log_level="INFO"))

    assert not logging.getLogger("uvicorn.access").hasHandlers()


def test_access_log_is_json_when_debugging(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(Settings(service_name="segment", log_level="DEBUG"))

    logging.getLogger("uvicorn.access").info('127.0.0.1 - "GET /healthz HTTP/1.1" 200')

    assert _only_line(capsys.readouterr().err)["logger"] == "uvicorn.access"
