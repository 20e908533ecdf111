"""`/api/v1/boards`: named collections of images, per API key (tenant)."""

from __future__ import annotations

from flask import Response, jsonify
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from api.auth import owner_id
from api.curation import find_board, selection_from
from api.errors import ApiError
from api.farm import db
from api.request_body import parse_body
from api.schemas import BoardIn, BoardList, BoardOut, BulkActionOut, ImageSelectionIn
from models import curation
from models.board import MAX_BOARDS_PER_TENANT, Board, tenant_of


def board_out(board: Board, images: int) -> BoardOut:
    """The API view of a board."""
    return BoardOut(
        id=board.id,
        name=board.name,
        created_at=board.created_at,
        images=images,
        images_url=f"/api/v1/images?board_id={board.id}",
    )


def tenant_boards() -> list[Board]:
    """The caller's boards, by name."""
    tenant = tenant_of(owner_id())
    query = select(Board).where(Board.owner_key_id == tenant).order_by(Board.name, Board.id)
    return list(db().scalars(query.limit(MAX_BOARDS_PER_TENANT)))


def list_boards() -> Response:
    """GET /api/v1/boards."""
    boards = tenant_boards()
    counts = curation.board_counts(db(), [board.id for board in boards])
    body = BoardList(boards=[board_out(board, counts[board.id]) for board in boards])
    return jsonify(body.model_dump(mode="json"))


def create_board() -> tuple[Response, int, dict[str, str]]:
    """POST /api/v1/boards: 201 with the board; 409 when the caller has one of that name."""
    body = parse_body(BoardIn)
    session = db()
    tenant = tenant_of(owner_id())
    if session.scalar(select(func.count()).select_from(Board).where(Board.owner_key_id == tenant)) >= (
        MAX_BOARDS_PER_TENANT
    ):
        raise ApiError(422, "too many boards", [{"field": "name", "reason": f"at most {MAX_BOARDS_PER_TENANT} boards"}])
    board = Board(owner_key_id=tenant, name=body.name)
    session.add(board)
    try:
        session.commit()
    except IntegrityError:  # the unique constraint decides between two creates racing
        session.rollback()
        raise ApiError(409, "a board of this name exists", [{"field": "name", "reason": "already taken"}]) from None
    return jsonify(board_out(board, 0).model_dump(mode="json")), 201, {"Location": f"/api/v1/boards/{board.id}"}


def get_board(board_id: int) -> Response:
    """GET /api/v1/boards/<id>."""
    board = find_board(board_id)
    return jsonify(board_out(board, curation.board_counts(db(), [board.id])[board.id]).model_dump(mode="json"))


def rename_board(board_id: int) -> Response:
    """PATCH /api/v1/boards/<id> with {"name"}: the board renamed; 409 when the caller has one of that name."""
    board = find_board(board_id)
    board.name = parse_body(BoardIn).name
    session = db()
    try:
        session.commit()
    except IntegrityError:  # the same unique constraint as a create's
        session.rollback()
        raise ApiError(409, "a board of this name exists", [{"field": "name", "reason": "already taken"}]) from None
    return jsonify(board_out(board, curation.board_counts(session, [board.id])[board.id]).model_dump(mode="json"))


def delete_board(board_id: int) -> Response:
    """DELETE /api/v1/boards/<id>: the board goes, its images stay; answers the board as it was."""
    board = find_board(board_id)
    body = board_out(board, curation.board_counts(db(), [board.id])[board.id])
    db().delete(board)
    db().commit()
    return jsonify(body.model_dump(mode="json"))


def add_board_images(board_id: int) -> Response:
    """POST /api/v1/boards/<id>/images: put images (ids or a query) on the board."""
    board = find_board(board_id)
    selection = selection_from(parse_body(ImageSelectionIn))
    count = curation.add_to_board(db(), selection, board.id)
    return jsonify(BulkActionOut(action="add_to_board", matched=count).model_dump(mode="json"))


def remove_board_images(board_id: int) -> Response:
    """DELETE /api/v1/boards/<id>/images: take images (ids or a query) off the board."""
    board = find_board(board_id)
    selection = selection_from(parse_body(ImageSelectionIn))
    count = curation.remove_from_board(db(), selection, board.id)
    return jsonify(BulkActionOut(action="remove_from_board", matched=count).model_dump(mode="json"))
