"""Alembic's environment: runs on the connection `reportflow.migrations` hands it.

Run migrations with `reportflow db upgrade` (it opens the async engine of
DATABASE_URL and passes its connection in), not with the bare `alembic` command.
"""

from __future__ import annotations

from alembic import context

from reportflow.core.db import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "run migrations through `reportflow db upgrade` (it reads DATABASE_URL), "
        "not the bare alembic command"
    )

context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite cannot ALTER most things: later migrations copy-and-move in batches.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
