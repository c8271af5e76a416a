"""Alembic environment: migrations run on a connection handed in by worpen_infra.sql.database."""

from __future__ import annotations

from alembic import context

from worpen_infra.sql.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise SystemExit("run migrations with `worpen migrate` (worpen_infra.sql.database.upgrade_database)")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
