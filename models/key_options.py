"""Per-key preferences: the A1111 API's default model, and where and how a key's webhooks go."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Integer, String, Text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.base import Base, UTCDateTime, utcnow

# Callers without a key (a farm with auth off) share one row.
ANONYMOUS = 0


class KeyOptions(Base):
    """One row per API key that set a preference; `key_id` 0 stands for callers without a key."""

    __tablename__ = "key_options"

    key_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    sd_model: Mapped[str | None] = mapped_column(String(200))
    webhook_url: Mapped[str | None] = mapped_column(Text)
    # Standard Webhooks secret (`whsec_` + base64); None means the farm-wide SDFARM_WEBHOOK_SECRET.
    webhook_secret: Mapped[str | None] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def options_key(owner_key_id: int | None) -> int:
    """The row id for a caller: its key id, or ANONYMOUS."""
    return owner_key_id if owner_key_id is not None else ANONYMOUS


def read_options(session: Session, owner_key_id: int | None) -> KeyOptions | None:
    """The caller's preferences, if it set any."""
    return session.get(KeyOptions, options_key(owner_key_id))


def save_options(session: Session, owner_key_id: int | None, **values: Any) -> None:
    """Set some preferences in one statement (insert or update, safe against a concurrent first write)."""
    row = {"key_id": options_key(owner_key_id), "updated_at": utcnow(), **values}
    insert = pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
    statement = insert(KeyOptions).values(**row)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[KeyOptions.key_id], set_={k: statement.excluded[k] for k in row if k != "key_id"}
        )
    )
    session.commit()
