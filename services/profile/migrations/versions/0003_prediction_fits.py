"""Fits of the purchase models behind the predictive scores, and how far their re-score got.

Revision ID: 0003
Revises: 0002
"""

from alembic import op
from sqlalchemy import BigInteger, Column, DateTime, Double, Identity, Integer, Text, text

from libs.common.migrations import service_schema

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "prediction_fits",
        Column("id", BigInteger, Identity(always=False), primary_key=True),
        Column("fitted_at", DateTime(timezone=True), nullable=False),
        Column("profiles", Integer, nullable=False),
        Column("repeat_buyers", Integer, nullable=False),
        # Why the fit failed (too few purchase histories); the parameters are then null.
        Column("error", Text),
        # BG/NBD: purchase rates Gamma(r, alpha) per day, dropout Beta(a, b).
        Column("r", Double),
        Column("alpha", Double),
        Column("a", Double),
        Column("b", Double),
        # Gamma-Gamma: p, q, v; null with value_fallback_mean set when there were too few
        # repeat buyers to fit it.
        Column("p", Double),
        Column("q", Double),
        Column("v", Double),
        Column("value_fallback_mean", Double),
        # The re-score of every profile after the fit: the last profile id done, how many were
        # scored and announced, and when it finished (null while under way).
        Column("rescored_through", Text),
        Column("rescored", Integer, nullable=False, server_default=text("0")),
        Column("announced", Integer, nullable=False, server_default=text("0")),
        Column("rescored_at", DateTime(timezone=True)),
        schema=service_schema(),
    )


def downgrade() -> None:
    op.drop_table("prediction_fits", schema=service_schema())
