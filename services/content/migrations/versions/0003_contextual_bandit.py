"""The contextual variant bandit: evidence per (template, context, variant) with its decay, the
context and propensity logged with each decision, each template's experiment, insights.

Revision ID: 0003
Revises: 0002

The per-variant counts of `variant_stats` carry over to the context of sends content logged no
context for (no stage, category or hour band: `experiments.unknown_context`), as of now.
"""

from alembic import op
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Double,
    ForeignKeyConstraint,
    Identity,
    PrimaryKeyConstraint,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from libs.common.migrations import service_schema

revision = "0003"
down_revision = "0002"

_NOW = text("now()")


def upgrade() -> None:
    schema = service_schema()
    _evidence(schema)
    _experiments(schema)
    _insights(schema)
    op.add_column("decisions", Column("context_key", Text), schema=schema)
    op.add_column("decisions", Column("propensity", Double), schema=schema)
    # Outcomes find the context their request's variant was chosen in by request id.
    op.create_index("decisions_request", "decisions", ["request_id"], schema=schema)
    # A conversion names its message, not its request: it counts in the context of its send.
    op.add_column("rewards", Column("context_key", Text), schema=schema)
    op.add_column("profiles", Column("top_category", Text), schema=schema)


def _evidence(schema: str) -> None:
    # Counts discounted to `updated_at` (half-life a setting): each update discounts the row to
    # its moment first, and a fit discounts every row from its `updated_at` to now.
    op.create_table(
        "variant_evidence",
        Column("template_id", Text, nullable=False),
        Column("context_key", Text, nullable=False),
        Column("variant_id", Text, nullable=False),
        Column("trials", Double, nullable=False),
        Column("clicks", Double, nullable=False),
        Column("conversions", Double, nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
        PrimaryKeyConstraint(
            "template_id", "context_key", "variant_id", name="variant_evidence_pkey"
        ),
        schema=schema,
    )
    # Channels are plain words, so the key needs none of `Context.key`'s percent-encoding.
    op.execute(
        f"INSERT INTO {schema}.variant_evidence (template_id, context_key, variant_id, trials, "
        "clicks, conversions, updated_at) SELECT s.template_id, "
        "'stage=|category=|channel=' || t.channel || '|band=', s.variant_id, s.trials, "
        f"s.clicks, s.conversions, now() FROM {schema}.variant_stats s "
        f"JOIN {schema}.templates t ON t.id = s.template_id"
    )
    op.drop_table("variant_stats", schema=schema)


def _experiments(schema: str) -> None:
    op.create_table(
        "experiments",
        Column("template_id", Text, nullable=False),
        Column("variants", JSONB, nullable=False),
        Column("promoted_at", DateTime(timezone=True)),
        Column("value_remaining", Double, nullable=False),
        Column("probability_optimal", Double, nullable=False),
        Column("probability_best", JSONB, nullable=False),
        Column("leaders", JSONB, nullable=False),
        Column("evaluated_at", DateTime(timezone=True), nullable=False),
        PrimaryKeyConstraint("template_id", name="experiments_pkey"),
        ForeignKeyConstraint(
            ["template_id"],
            [f"{schema}.templates.id"],
            name="experiments_template_id_fkey",
            ondelete="CASCADE",
        ),
        schema=schema,
    )


def _insights(schema: str) -> None:
    op.create_table(
        "insights",
        Column("id", BigInteger, Identity(always=True), nullable=False),
        Column("template_id", Text, nullable=False),
        Column("kind", Text, nullable=False),
        Column("message", Text, nullable=False),
        Column("evidence", JSONB, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=_NOW),
        PrimaryKeyConstraint("id", name="insights_pkey"),
        schema=schema,
    )
    op.create_index("insights_template", "insights", ["template_id", "id"], schema=schema)


def downgrade() -> None:
    schema = service_schema()
    op.drop_column("profiles", "top_category", schema=schema)
    op.drop_column("rewards", "context_key", schema=schema)
    op.drop_index("decisions_request", table_name="decisions", schema=schema)
    op.drop_column("decisions", "propensity", schema=schema)
    op.drop_column("decisions", "context_key", schema=schema)
    op.drop_table("insights", schema=schema)
    op.drop_table("experiments", schema=schema)
    op.create_table(
        "variant_stats",
        Column("template_id", Text, nullable=False),
        Column("variant_id", Text, nullable=False),
        Column("trials", BigInteger, nullable=False, server_default="0"),
        Column("clicks", BigInteger, nullable=False, server_default="0"),
        Column("conversions", Double, nullable=False, server_default="0"),
        PrimaryKeyConstraint("template_id", "variant_id", name="variant_stats_pkey"),
        schema=schema,
    )
    # Summed over contexts, as the counts stand discounted; the context-blind bandit counts
    # whole sends.
    op.execute(
        f"INSERT INTO {schema}.variant_stats (template_id, variant_id, trials, clicks, "
        "conversions) SELECT template_id, variant_id, round(sum(trials)), round(sum(clicks)), "
        f"sum(conversions) FROM {schema}.variant_evidence GROUP BY template_id, variant_id"
    )
    op.drop_table("variant_evidence", schema=schema)
