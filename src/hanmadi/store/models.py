"""SQLAlchemy tables: calls → turns → turn_events, plus the servers writing them (``instances``).

The schema itself is owned by the Alembic migrations in ``migrations/versions``; these models must match them
(a test compares the two).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite stores naive UTC; naive input is taken as UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    """Declarative base of the store's tables."""


class Call(Base):
    """One phone call, from answer to end."""

    __tablename__ = "calls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_sid: Mapped[str] = mapped_column(String(64))
    stream_sid: Mapped[str] = mapped_column(String(64))
    from_masked: Mapped[str] = mapped_column(String(64))
    to_masked: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16))
    end_reason: Mapped[str | None] = mapped_column(String(32))
    providers: Mapped[dict[str, Any]] = mapped_column(JSONType)
    turn_count: Mapped[int] = mapped_column(Integer, default=0)
    recording_path: Mapped[str | None] = mapped_column(String(1024))
    instance_id: Mapped[str | None] = mapped_column(String(128))
    direction: Mapped[str] = mapped_column(String(16), default="inbound", server_default="inbound")
    answered_by: Mapped[str | None] = mapped_column(String(32))  # outbound: Twilio's AMD answer
    transfer_to: Mapped[str | None] = mapped_column(String(64))  # masked number the agent transferred to

    __table_args__ = (
        UniqueConstraint("call_sid", name="uq_calls_call_sid"),
        Index("ix_calls_started_at", "started_at"),
        Index("ix_calls_status_started_at", "status", "started_at"),
    )


class Turn(Base):
    """One turn of a call: what the caller said and what the agent answered."""

    __tablename__ = "turns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime] = mapped_column(UTCDateTime())
    heard_text: Mapped[str] = mapped_column(Text)
    generated_text: Mapped[str] = mapped_column(Text)
    spoken_text: Mapped[str] = mapped_column(Text)
    barge_in: Mapped[bool] = mapped_column(Boolean)
    dtmf: Mapped[str] = mapped_column(String(64))
    first_audio_s: Mapped[float | None] = mapped_column(Float)
    voice_to_voice_s: Mapped[float | None] = mapped_column(Float)
    total_s: Mapped[float | None] = mapped_column(Float)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONType)
    tool_calls: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType)

    __table_args__ = (
        UniqueConstraint("call_id", "index", name="uq_turns_call_id_index"),
        Index("ix_turns_started_at", "started_at"),
    )


class TurnEventRow(Base):
    """One timeline event of a turn (sentence generated, TTS start/done, sent, skipped, cancelled…)."""

    __tablename__ = "turn_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    turn_id: Mapped[int] = mapped_column(ForeignKey("turns.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    t: Mapped[float] = mapped_column(Float)
    kind: Mapped[str] = mapped_column(String(32))
    sentence_index: Mapped[int | None] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    duration_s: Mapped[float | None] = mapped_column(Float)
    audio_s: Mapped[float | None] = mapped_column(Float)
    reason: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (UniqueConstraint("turn_id", "seq", name="uq_turn_events_turn_id_seq"),)


class Instance(Base):
    """A running server process that writes calls; its heartbeat tells live calls from a crashed server's."""

    __tablename__ = "instances"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime())


class WebhookOutboxRow(Base):
    """One call webhook to deliver (at least once): written in the transaction of the record it reports."""

    __tablename__ = "webhook_outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    delivery_id: Mapped[str] = mapped_column(String(64))
    event: Mapped[str] = mapped_column(String(32))
    call_sid: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(16))  # pending, delivered, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(String(300))

    __table_args__ = (
        UniqueConstraint("delivery_id", name="uq_webhook_outbox_delivery_id"),
        Index("ix_webhook_outbox_status_next", "status", "next_attempt_at"),
    )


class RedeemedStreamToken(Base):
    """A one-time stream token that opened a stream: the unique nonce makes a second use fail, in every process."""

    __tablename__ = "stream_tokens"

    nonce: Mapped[str] = mapped_column(String(32), primary_key=True)
    call_sid: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
