"""actions: call direction / answered_by / transfer target, turn tool calls, the webhook outbox

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("direction", sa.String(16), nullable=False, server_default="inbound"))
        batch.add_column(sa.Column("answered_by", sa.String(32), nullable=True))
        batch.add_column(sa.Column("transfer_to", sa.String(64), nullable=True))
    with op.batch_alter_table("turns") as batch:
        batch.add_column(sa.Column("tool_calls", _JSON, nullable=True))
    op.create_table(
        "webhook_outbox",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("delivery_id", sa.String(64), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("call_sid", sa.String(64), nullable=False),
        sa.Column("payload", _JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("next_attempt_at", _TS, nullable=False),
        sa.Column("delivered_at", _TS, nullable=True),
        sa.Column("last_error", sa.String(300), nullable=True),
        sa.UniqueConstraint("delivery_id", name="uq_webhook_outbox_delivery_id"),
    )
    op.create_index("ix_webhook_outbox_status_next", "webhook_outbox", ["status", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_outbox_status_next", table_name="webhook_outbox")
    op.drop_table("webhook_outbox")
    with op.batch_alter_table("turns") as batch:
        batch.drop_column("tool_calls")
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("transfer_to")
        batch.drop_column("answered_by")
        batch.drop_column("direction")
