"""Retention periods that would break deduplication are refused when settings are read."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from libs.common.settings import Settings
from services.content.settings import ContentSettings
from services.dispatch.settings import DispatchSettings


def test_inbox_that_forgets_before_the_topics_do_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"inbox_retention_hours .* topic_retention_hours"):
        Settings(topic_retention_hours=168, inbox_retention_hours=168)


def test_inbox_kept_longer_than_the_topics_is_accepted() -> None:
    settings = Settings(topic_retention_hours=0.01, inbox_retention_hours=0.02)
    assert settings.inbox_retention_hours > settings.topic_retention_hours


def test_default_inbox_outlives_the_default_topics() -> None:
    settings = Settings()
    assert settings.inbox_retention_hours > settings.topic_retention_hours


def test_send_ledger_that_forgets_before_the_topics_do_is_refused() -> None:
    with pytest.raises(ValidationError, match="DISPATCH_SEND_RETENTION_DAYS"):
        DispatchSettings(dispatch_send_retention_days=7)


def test_content_decisions_that_go_before_the_topics_do_are_refused() -> None:
    with pytest.raises(ValidationError, match="CONTENT_DECISION_RETENTION_DAYS"):
        ContentSettings(content_decision_retention_days=1)
