"""Every service's migrations, replayed from an empty schema, build each table its models
describe; a database made at any earlier revision, with a row in every table, upgrades to head
keeping its rows; and each downgrade puts back the schema its upgrade found.

The revisions are the ones alembic finds in each service's `migrations/versions`, so a new
revision is covered without touching this file. A schema is described from PostgreSQL's
catalog: relations, columns (type, nullability, default, identity, storage, collation),
constraints, indexes, and the sequences of serial and identity columns.

A service's `models.py` is not always its head: where later revisions write their changes out,
it keeps a table as an earlier revision left it (content's `variant_stats`, dropped by 0003;
journey's `runs` without 0002's columns; see each models.py). So each table the models describe,
and the inbox and outbox of `libs/common/bus/tables.py`, must be that table exactly as some
revision leaves it.
"""

from __future__ import annotations

import asyncio
import difflib
import importlib
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from alembic import command
from alembic.migration import MigrationContext
from alembic.operations import Operations
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

import services
from libs.common.bus.tables import create_bus_tables
from libs.common.db import alembic_config, create_engine
from libs.common.settings import Settings
from libs.devstack.pytest_plugin import SettingsFactory
from libs.devstack.stack import Stack

pytestmark = pytest.mark.integration

_SERVICES_DIR = Path(services.__file__).parent

# Ingest and the console consume nothing and write no outbox: their first revisions made no bus
# tables.
_WITHOUT_BUS = frozenset({"ingest", "console"})

# Tables a later revision drops: the table their rows move to, with the columns that find a
# row there, or None where the revision lets them go (its docstring says why).
_DROPPED: dict[tuple[str, str], tuple[str, tuple[str, ...]] | None] = {
    # 0003: the per-variant counts become the evidence of the context "unknown".
    ("content", "variant_stats"): ("variant_evidence", ("template_id", "variant_id")),
    # 0004: requests carry their profile's facts; those awaiting an address are given up.
    ("content", "profiles"): None,
    ("content", "awaiting_addresses"): None,
    # 0002: each message names its zone; sends not yet made take their profile's.
    ("dispatch", "timezones"): None,
}

_MAX_IDENTIFIER = 63


def _migrations(service: str) -> Path:
    return _SERVICES_DIR / service / "migrations"


def _revisions(service: str) -> list[str]:
    """The service's revisions, oldest first, as alembic finds them."""
    scripts = ScriptDirectory(str(_migrations(service)))
    heads = scripts.get_heads()
    assert len(heads) == 1, f"{service} has more than one head revision: {heads}"
    return [script.revision for script in reversed(list(scripts.walk_revisions()))]


SERVICES = sorted(path.parent.parent.name for path in _SERVICES_DIR.glob("*/migrations/env.py"))
REVISIONS = {service: _revisions(service) for service in SERVICES}
EARLIER = [(service, revision) for service in SERVICES for revision in REVISIONS[service][:-1]]


@pytest_asyncio.fixture(loop_scope="session")
async def engine(stack: Stack) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(Settings(database_url=stack.database_url, service_name="migrations"))
    try:
        yield engine
    finally:
        await engine.dispose()


def _fresh_schema(service: str, purpose: str, *, longest: bool = False) -> str:
    """A schema name of our own; `longest` makes it PostgreSQL's longest, so that a name
    derived from it (SQLAlchemy's `ix_<schema>_<table>_<column>`) is shortened as it would
    be for a long production schema."""
    name = f"{service}_{purpose}_{uuid.uuid4().hex}"
    if longest:
        name = (name + "_" + uuid.uuid4().hex * 2)[:_MAX_IDENTIFIER]
    return name[:_MAX_IDENTIFIER]


async def _alembic(settings: Settings, service: str, action: str, revision: str) -> None:
    """`alembic upgrade|downgrade|stamp <revision>` on the service's migrations, in the schema
    of `settings` (alembic's env runs its own event loop, so in a thread)."""
    config = alembic_config(settings, _migrations(service))
    await asyncio.to_thread(getattr(command, action), config, revision)


async def _drop(engine: AsyncEngine, schema: str) -> None:
    async with engine.begin() as connection:
        await connection.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))


# --- The schema as PostgreSQL holds it ------------------------------------------------------

# Each query's first column is the table a line describes ("char" columns cast, as asyncpg
# reads them as bytes).
_RELATIONS = """
SELECT c.relname, c.relkind::text, c.relpersistence::text,
       coalesce(c.reloptions::text, '-')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = :schema AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
"""

_COLUMNS = """
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       coalesce(pg_get_expr(d.adbin, d.adrelid), '-'), coalesce(nullif(a.attidentity, ''), '-'),
       coalesce(nullif(a.attgenerated, ''), '-'), a.attstorage::text, coalesce(co.collname, '-')
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
LEFT JOIN pg_collation co ON co.oid = a.attcollation
WHERE n.nspname = :schema AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
"""

_CONSTRAINTS = """
SELECT c.relname, con.conname, con.contype::text, pg_get_constraintdef(con.oid),
       con.condeferrable, con.condeferred
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = :schema
"""

_INDEXES = "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = :schema"

# A sequence goes with the table whose serial or identity column owns it.
_SEQUENCES = """
SELECT coalesce(owner.relname, s.sequencename), s.sequencename, s.data_type::text,
       s.start_value, s.min_value, s.max_value, s.increment_by, s.cycle, s.cache_size
FROM pg_sequences s
JOIN pg_namespace n ON n.nspname = s.schemaname
JOIN pg_class sc ON sc.relname = s.sequencename AND sc.relnamespace = n.oid
LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = sc.oid
    AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
LEFT JOIN pg_class owner ON owner.oid = d.refobjid
WHERE s.schemaname = :schema
"""

_LINES = {
    _RELATIONS: "relation {}: kind {}, persistence {}, options {}",
    _COLUMNS: "column {}.{}: {}, not null {}, default {}, identity {}, generated {}"
    ", storage {}, collation {}",
    _CONSTRAINTS: "constraint {}.{} ({}): {}, deferrable {}, initially deferred {}",
    _INDEXES: "index {}.{}: {}",
    _SEQUENCES: "sequence {}.{}: {} start {} min {} max {} increment {} cycle {} cache {}",
}

# Alembic's own bookkeeping, not the service's schema.
_ALEMBIC = "alembic_version"

# Each table of a schema (and any sequence no table owns), described in sorted lines.
Schema = dict[str, list[str]]


async def _describe(engine: AsyncEngine, schema: str) -> Schema:
    """The schema's tables as PostgreSQL's catalog has them."""
    described: Schema = {}
    async with engine.connect() as connection:
        for query, line in _LINES.items():
            for table, *values in await connection.execute(text(query), {"schema": schema}):
                if table != _ALEMBIC:
                    # Same-named schemas compare equal; the name is only noise in a diff.
                    shown = line.format(table, *values).replace(f"{schema}.", "")
                    described.setdefault(table, []).append(shown)
    return {table: sorted(lines) for table, lines in sorted(described.items())}


def _lines(schema: Schema) -> list[str]:
    return [line for lines in schema.values() for line in lines]


def _differences(expected: list[str], actual: list[str], expected_name: str, name: str) -> str:
    return "\n".join(difflib.unified_diff(expected, actual, expected_name, name, n=0, lineterm=""))


# Replaying a service's revisions is shared by the tests of models and of downgrades: made once
# per service, in one long schema name per service, which both rebuild their schemas under.
_REPLAYED: dict[str, tuple[str, dict[str, Schema]]] = {}


async def _replayed(
    engine: AsyncEngine, settings_factory: SettingsFactory, service: str
) -> tuple[Settings, dict[str, Schema]]:
    """Settings for the service's schema name, and the schema after each revision, upgraded
    one revision at a time from nothing (the schema dropped again)."""
    if service not in _REPLAYED:
        settings = settings_factory(service_name=_fresh_schema(service, "replay", longest=True))
        described: dict[str, Schema] = {}
        try:
            for revision in REVISIONS[service]:
                await _alembic(settings, service, "upgrade", revision)
                described[revision] = await _describe(engine, settings.schema_name)
        finally:
            await _drop(engine, settings.schema_name)
        _REPLAYED[service] = (settings.service_name, described)
    name, described = _REPLAYED[service]
    return settings_factory(service_name=name), described


# --- 1. Replaying the revisions builds what the models describe ----------------------------


def _model_tables(service: str, metadata: MetaData) -> None:
    """Every table the service's models.py has (each `<name>_table(metadata)` it defines or
    imports)."""
    module = importlib.import_module(f"services.{service}.models")
    for name, function in sorted(vars(module).items()):
        if name.endswith("_table") and callable(function):
            function(metadata)


def _create_from_models(connection: Connection, service: str, schema: str) -> None:
    """What a service's first revision did before revisions were written out: its bus tables
    through `create_bus_tables`, then `create_all` of its models' tables."""
    connection.execute(text(f"CREATE SCHEMA {schema}"))
    if service not in _WITHOUT_BUS:
        with Operations.context(MigrationContext.configure(connection)):
            create_bus_tables(schema)
    metadata = MetaData(schema=schema)
    _model_tables(service, metadata)
    metadata.create_all(connection)


async def _from_models(engine: AsyncEngine, service: str, schema: str) -> Schema:
    async with engine.begin() as connection:
        await connection.run_sync(_create_from_models, service, schema)
    return await _describe(engine, schema)


@pytest.mark.parametrize("service", SERVICES)
async def test_every_table_the_models_describe_is_as_a_revision_left_it(
    service: str, engine: AsyncEngine, settings_factory: SettingsFactory
) -> None:
    """A table in models.py (or the bus's tables.py) that no revision builds exactly: a
    revision forgot a column, an index, a default, a constraint, or got one wrong."""
    settings, replayed = await _replayed(engine, settings_factory, service)
    try:
        from_models = await _from_models(engine, service, settings.schema_name)
    finally:
        await _drop(engine, settings.schema_name)
    unbuilt: list[str] = []
    for table, lines in from_models.items():
        if any(described.get(table) == lines for described in replayed.values()):
            continue
        closest = min(
            replayed, key=lambda revision: len(set(replayed[revision].get(table, [])) ^ set(lines))
        )
        unbuilt.append(
            f"{table}: no revision builds it as the models do; after {closest}, the closest:\n"
            + _differences(lines, replayed[closest].get(table, []), "models", closest)
        )
    assert not unbuilt, "\n".join(unbuilt)


# --- 2. Rows made at an earlier revision outlive the upgrade to head -----------------------

_TABLE_COLUMNS = """
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attidentity::text,
       a.attgenerated::text, t.typtype::text, t.typname::text, e.typname::text AS element,
       (SELECT l.enumlabel::text FROM pg_enum l WHERE l.enumtypid = t.oid
        ORDER BY l.enumsortorder LIMIT 1) AS label
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t0 ON t0.oid = a.atttypid
JOIN pg_type t ON t.oid = CASE WHEN t0.typtype = 'd' THEN t0.typbasetype ELSE t0.oid END
LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A'
WHERE n.nspname = :schema AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY c.relname, a.attnum
"""

_KEYS = """
SELECT c.relname, con.contype::text, r.relname,
       ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(num, i)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num
             ORDER BY k.i)
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_class r ON r.oid = con.confrelid
WHERE n.nspname = :schema AND con.contype IN ('p', 'f')
"""

# One value per type, the same in every table: a foreign key then finds its row, and so does a
# revision that joins tables on columns no foreign key declares (content 0003 joins
# `variant_stats` to `templates` by template id).
_VALUES = {
    "text": "v",
    "varchar": "v",
    "bpchar": "v",
    "name": "v",
    "citext": "v",
    "int2": "1",
    "int4": "1",
    "int8": "1",
    "float4": "1.5",
    "float8": "1.5",
    "numeric": "1.5",
    "bool": "true",
    "timestamptz": "2026-01-02 03:04:05+00",
    "timestamp": "2026-01-02 03:04:05",
    "date": "2026-01-02",
    "time": "03:04:05",
    "timetz": "03:04:05+00",
    "interval": "1 hour",
    "json": "{}",
    "jsonb": "{}",
    "bytea": "\\x00",
    "uuid": "00000000-0000-4000-8000-000000000001",
    "inet": "127.0.0.1",
    "cidr": "127.0.0.0/8",
}

# Columns a CHECK constraint holds to values of its own: (table, column) -> a value it allows.
_CHECKED_VALUES = {("users", "role"): "admin"}


@dataclass
class _Column:
    name: str
    type: str
    identity: str
    generated: str
    typtype: str
    typname: str
    element: str | None
    label: str | None

    def value(self, table: str) -> str:
        """A literal of the column's type."""
        if (table, self.name) in _CHECKED_VALUES:
            return _CHECKED_VALUES[(table, self.name)]
        if self.typtype == "e" and self.label is not None:
            return self.label
        if self.element is not None:
            element = _VALUES.get(self.element)
            if element is not None:
                return '{"' + element.replace("\\", "\\\\").replace('"', '\\"') + '"}'
        elif self.typname in _VALUES:
            return _VALUES[self.typname]
        raise AssertionError(
            f"no test value for {table}.{self.name} of type {self.type}: add its type to _VALUES"
        )


@dataclass
class _Table:
    name: str
    columns: list[_Column]
    primary_key: list[str]
    references: set[str]


async def _tables(engine: AsyncEngine, schema: str) -> dict[str, _Table]:
    async with engine.connect() as connection:
        found: dict[str, _Table] = {}
        for row in await connection.execute(text(_TABLE_COLUMNS), {"schema": schema}):
            table = found.setdefault(row[0], _Table(row[0], [], [], set()))
            table.columns.append(_Column(*row[1:]))
        for table_name, kind, referenced, columns in await connection.execute(
            text(_KEYS), {"schema": schema}
        ):
            if kind == "p":
                found[table_name].primary_key = list(columns)
            elif referenced in found and referenced != table_name:
                found[table_name].references.add(referenced)
    found.pop(_ALEMBIC, None)
    return found


def _in_reference_order(tables: dict[str, _Table]) -> Iterator[_Table]:
    """Each table after the tables its foreign keys reference."""
    done: set[str] = set()
    while len(done) < len(tables):
        ready = [
            name
            for name, table in sorted(tables.items())
            if name not in done and table.references <= done
        ]
        assert ready, f"foreign keys go round in a circle among {sorted(set(tables) - done)}"
        for name in ready:
            done.add(name)
            yield tables[name]


def _quoted(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


async def _insert_a_row(engine: AsyncEngine, schema: str, table: _Table) -> dict[str, str | None]:
    """One row with every column set (but those PostgreSQL always fills): its columns as text."""
    given = [column for column in table.columns if column.identity != "a" and not column.generated]
    names = ", ".join(f'"{column.name}"' for column in given)
    values = ", ".join(f"{_quoted(column.value(table.name))}::{column.type}" for column in given)
    returning = ", ".join(f'"{column.name}"::text' for column in table.columns)
    async with engine.begin() as connection:
        row = (
            await connection.execute(
                text(
                    f'INSERT INTO {schema}."{table.name}" ({names}) VALUES ({values}) '
                    f"RETURNING {returning}"
                )
            )
        ).one()
    return {column.name: value for column, value in zip(table.columns, row, strict=True)}


async def _count(
    engine: AsyncEngine, schema: str, table: str, where: dict[str, str | None] | None = None
) -> int:
    """Rows of the table, or those whose columns (as text) are `where`'s values."""
    conditions = " AND ".join(
        f'"{column}"::text IS NOT DISTINCT FROM :v{number}'
        for number, column in enumerate(where or {})
    )
    parameters = {f"v{number}": value for number, value in enumerate((where or {}).values())}
    async with engine.connect() as connection:
        count = (
            await connection.execute(
                text(f'SELECT count(*) FROM {schema}."{table}" WHERE {conditions or "true"}'),
                parameters,
            )
        ).scalar_one()
    return int(count)


@pytest.mark.parametrize(("service", "revision"), EARLIER, ids=[f"{s}-{r}" for s, r in EARLIER])
async def test_rows_made_at_an_earlier_revision_outlive_the_upgrade_to_head(
    service: str, revision: str, engine: AsyncEngine, settings_factory: SettingsFactory
) -> None:
    settings = settings_factory(service_name=_fresh_schema(service, f"from_{revision}"))
    schema = settings.schema_name
    try:
        await _alembic(settings, service, "upgrade", revision)
        tables = await _tables(engine, schema)
        inserted = {
            table.name: (table, await _insert_a_row(engine, schema, table))
            for table in _in_reference_order(tables)
        }

        await _alembic(settings, service, "upgrade", "head")

        at_head = await _tables(engine, schema)
        lost: list[str] = []
        for name, (table, row) in sorted(inserted.items()):
            if name not in at_head:
                lost += await _dropped(engine, schema, service, name, row)
                continue
            # The row by its primary key (by all its columns in a table without one), as far
            # as those columns are still there.
            kept = {column.name for column in at_head[name].columns}
            key = table.primary_key or [column.name for column in table.columns]
            where = {column: row[column] for column in key if column in kept}
            if (count := await _count(engine, schema, name)) != 1:
                lost.append(f"{name}: {count} rows after the upgrade, 1 before")
            if await _count(engine, schema, name, where) != 1:
                lost.append(f"{name}: the row {where} is gone")
        assert not lost, f"upgrading {service} from {revision} to head lost rows:\n" + "\n".join(
            lost
        )
    finally:
        await _drop(engine, schema)


async def _dropped(
    engine: AsyncEngine, schema: str, service: str, table: str, row: dict[str, str | None]
) -> list[str]:
    """A table a later revision dropped: its row must be where that revision moved it."""
    if (service, table) not in _DROPPED:
        return [f"{table}: dropped by a later revision; say where its rows go in _DROPPED"]
    moved = _DROPPED[(service, table)]
    if moved is None:
        return []
    destination, columns = moved
    where = {column: row[column] for column in columns}
    if await _count(engine, schema, destination, where) < 1:
        return [f"{table}: its row {where} did not reach {destination}"]
    return []


# --- 3. Each downgrade puts back the schema its upgrade found ------------------------------


@pytest.mark.parametrize("service", SERVICES)
async def test_each_downgrade_restores_the_schema_its_upgrade_found(
    service: str, engine: AsyncEngine, settings_factory: SettingsFactory
) -> None:
    settings, replayed = await _replayed(engine, settings_factory, service)
    earlier: dict[str, Schema] = {"base": {}, **replayed}
    try:
        await _alembic(settings, service, "upgrade", "head")
        for revision in ["base", *REVISIONS[service][:-1]][::-1]:
            await _alembic(settings, service, "downgrade", revision)
            restored = await _describe(engine, settings.schema_name)
            assert restored == earlier[revision], (
                f"{service} downgraded to {revision} differs from its upgrade to it:\n"
                + _differences(
                    _lines(earlier[revision]), _lines(restored), "upgraded", "downgraded"
                )
            )
    finally:
        await _drop(engine, settings.schema_name)
