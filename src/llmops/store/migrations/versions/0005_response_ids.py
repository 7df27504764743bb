"""response ids in the request log: feedback may name an answer's own id on any gateway worker

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gateway_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("response_id", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_gateway_requests_response_id", ["response_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("gateway_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_gateway_requests_response_id")
        batch_op.drop_column("response_id")
