"""calls, turns, turn_events, instances

Revision ID: 0001
Revises:
Create Date: 2024-06-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "calls",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("call_sid", sa.String(64), nullable=False),
        sa.Column("stream_sid", sa.String(64), nullable=False),
        sa.Column("from_masked", sa.String(64), nullable=False),
        sa.Column("to_masked", sa.String(64), nullable=False),
        sa.Column("started_at", _TS, nullable=False),
        sa.Column("ended_at", _TS, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("end_reason", sa.String(32), nullable=True),
        sa.Column("providers", _JSON, nullable=False),
        sa.Column("turn_count", sa.Integer(), nullable=False),
        sa.Column("recording_path", sa.String(1024), nullable=True),
        sa.Column("instance_id", sa.String(128), nullable=True),
        sa.UniqueConstraint("call_sid", name="uq_calls_call_sid"),
    )
    op.create_index("ix_calls_started_at", "calls", ["started_at"])
    op.create_index("ix_calls_status_started_at", "calls", ["status", "started_at"])

    op.create_table(
        "turns",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("call_id", sa.Integer(), sa.ForeignKey("calls.id", ondelete="CASCADE"), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("started_at", _TS, nullable=False),
        sa.Column("ended_at", _TS, nullable=False),
        sa.Column("heard_text", sa.Text(), nullable=False),
        sa.Column("generated_text", sa.Text(), nullable=False),
        sa.Column("spoken_text", sa.Text(), nullable=False),
        sa.Column("barge_in", sa.Boolean(), nullable=False),
        sa.Column("dtmf", sa.String(64), nullable=False),
        sa.Column("first_audio_s", sa.Float(), nullable=True),
        sa.Column("voice_to_voice_s", sa.Float(), nullable=True),
        sa.Column("total_s", sa.Float(), nullable=True),
        sa.Column("metrics", _JSON, nullable=False),
        sa.UniqueConstraint("call_id", "index", name="uq_turns_call_id_index"),
    )
    op.create_index("ix_turns_started_at", "turns", ["started_at"])

    op.create_table(
        "turn_events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("turn_id", sa.Integer(), sa.ForeignKey("turns.id", ondelete="CASCADE"), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("t", sa.Float(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("sentence_index", sa.Integer(), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("audio_s", sa.Float(), nullable=True),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.UniqueConstraint("turn_id", "seq", name="uq_turn_events_turn_id_seq"),
    )

    op.create_table(
        "instances",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", _TS, nullable=False),
        sa.Column("seen_at", _TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("instances")
    op.drop_table("turn_events")
    op.drop_index("ix_turns_started_at", table_name="turns")
    op.drop_table("turns")
    op.drop_index("ix_calls_status_started_at", table_name="calls")
    op.drop_index("ix_calls_started_at", table_name="calls")
    op.drop_table("calls")
