"""Boards: named collections of images, per tenant (API key); an image may be on any number of them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, RowId, UTCDateTime, utcnow

MAX_BOARD_NAME_CHARS = 100
MAX_BOARDS_PER_TENANT = 1000


class Board(Base):
    """A named collection; `owner_key_id` 0 is the tenant of callers without an API key."""

    __tablename__ = "boards"
    # Names are unique per tenant; the constraint, not a read, settles two creates racing.
    __table_args__ = (UniqueConstraint("owner_key_id", "name"),)

    id: Mapped[int] = mapped_column(RowId, primary_key=True)
    owner_key_id: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(MAX_BOARD_NAME_CHARS))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class BoardImage(Base):
    """An image on a board. The primary key (board, image) also pages a board's images newest first."""

    __tablename__ = "board_images"
    # The other direction: which boards an image is on (image page, purge).
    __table_args__ = (Index("ix_board_images_image_id", "image_id"),)

    board_id: Mapped[int] = mapped_column(RowId, ForeignKey("boards.id", ondelete="CASCADE"), primary_key=True)
    image_id: Mapped[int] = mapped_column(RowId, ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def tenant_of(owner_key_id: int | None) -> int:
    """The board tenant of a caller: its key id, or 0 without a key (auth off)."""
    return owner_key_id or 0
