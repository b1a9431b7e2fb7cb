"""Alembic environment of the console."""

from sqlalchemy import MetaData

from libs.common.migrations import run_service_migrations

run_service_migrations(MetaData())
