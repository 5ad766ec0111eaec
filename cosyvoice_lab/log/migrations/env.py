"""Alembic's environment for the log: always run programmatically, on the connection (and inside
the transaction holding the write lock) that ``migrations.upgrade`` passes in ``config.attributes``."""

from alembic import context

from cosyvoice_lab.log.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata)
with context.begin_transaction():  # the caller's transaction: Alembic opens none of its own
    context.run_migrations()
