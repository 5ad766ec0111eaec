"""What the migrations share: the float type and PostgreSQL's ``rowid`` (frozen: never change)."""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import DOUBLE_PRECISION

FLOAT: sa.types.TypeEngine = sa.REAL().with_variant(DOUBLE_PRECISION(), "postgresql")


def rowid() -> list[sa.Column]:
    """SQLite's implicit rowid (write order) as a column on PostgreSQL; nothing on SQLite."""
    if op.get_bind().dialect.name != "postgresql":
        return []
    return [sa.Column("rowid", sa.BigInteger, sa.Identity(always=True), unique=True)]
