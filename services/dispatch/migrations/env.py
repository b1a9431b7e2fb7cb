"""Alembic environment of the dispatch service."""

from sqlalchemy import MetaData

from libs.common.migrations import run_service_migrations

run_service_migrations(MetaData())
