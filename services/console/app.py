"""The console's app: its pages and static files over its database, and the managed services'
APIs behind it."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from libs.common.api import database_state
from libs.common.app import create_app
from libs.common.db import create_engine
from libs.common.lifecycle import database_check
from libs.common.service import DatabaseEngine
from libs.common.settings import Settings
from services.console import (
    api,
    journey_pages,
    oidc_pages,
    profile_pages,
    report_pages,
    segment_pages,
    template_pages,
)
from services.console.access import SignInRequired, answer_sign_in_required
from services.console.oidc import OidcProvider
from services.console.settings import ConsoleSettings
from services.console.upstream import Upstream

STATIC_DIR = Path(__file__).parent / "static"


def create(settings: Settings) -> FastAPI:
    """The console consumes no events and writes no outbox: its parts are the engine and the
    clients of the services it manages."""
    assert isinstance(settings, ConsoleSettings)
    engine = create_engine(settings)
    upstream = Upstream(settings)
    oidc = OidcProvider(settings)
    app = create_app(
        settings,
        title="Closeloop console",
        description="Sign-in, roles and an audit log over the platform's management APIs.",
        routers=[
            api.router,
            segment_pages.router,
            journey_pages.router,
            template_pages.router,
            profile_pages.router,
            report_pages.router,
            oidc_pages.router,
        ],
        workers=[DatabaseEngine(engine), upstream, oidc],
        readiness_checks=[database_check(engine)],
        state={
            **database_state(engine, settings.schema_name),
            "upstream": upstream,
            "oidc": oidc,
        },
    )
    app.add_exception_handler(SignInRequired, answer_sign_in_required)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
