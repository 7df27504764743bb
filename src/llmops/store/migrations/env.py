"""Alembic environment: runs migrations on the connection handed over by ``llmops.store.migrate``."""

from alembic import context

from llmops.store.schema import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
