"""Curating images over the API: rate one image, or act on many at once (ids or a whole query)."""

from __future__ import annotations

from flask import Response, jsonify

from api.auth import owner_id, owner_scope
from api.errors import ApiError
from api.farm import db, farm
from api.images import find_image
from api.presenters import image_out
from api.request_body import parse_body
from api.schemas import BulkActionIn, BulkActionOut, ImagePatchIn, ImageSelectionIn
from models import curation
from models.board import Board, tenant_of
from models.curation import Selection
from models.image_query import PARAMETERS, ImageFilters


def patch_image(image_id: int) -> Response:
    """PATCH /api/v1/images/<id>: set its rating."""
    image = find_image(image_id)
    change = parse_body(ImagePatchIn)
    curation.rate(db(), Selection(scope=owner_scope(), image_ids=(image.id,)), change.rating)
    db().refresh(image)
    return jsonify(image_out(image).model_dump(mode="json"))


def selection_from(body: ImageSelectionIn) -> Selection:
    """The body's image_ids or query, within the caller's scope; 422 naming a bad filter as `query.<name>`."""
    if body.query is None:
        return Selection(scope=owner_scope(), image_ids=tuple(body.image_ids or ()))
    unknown = sorted(name for name in body.query if name not in PARAMETERS)
    fields = [
        {"field": f"query.{name}", "reason": f"unknown filter; one of {', '.join(PARAMETERS)}"} for name in unknown
    ]
    filters, errors = ImageFilters.from_args(body.query)
    fields += [{"field": f"query.{error.field}", "reason": error.reason} for error in errors]
    if fields:
        raise ApiError(422, "invalid query", fields)
    return Selection(scope=owner_scope(), filters=filters)


def find_board(board_id: int, field: str | None = None) -> Board:
    """The caller's board; 404 (or 422 naming `field`, for an id inside a body) when it has none of that id."""
    board = db().get(Board, board_id)
    if board is None or board.owner_key_id != tenant_of(owner_id()):
        if field is not None:
            raise ApiError(422, "invalid action", [{"field": field, "reason": f"no board with id {board_id}"}])
        raise ApiError(404, f"no board with id {board_id}")
    return board


def bulk_action() -> Response:
    """POST /api/v1/images/bulk: rate, add to or remove from a board, delete or restore many images."""
    body = parse_body(BulkActionIn)
    session = db()
    if body.action == "restore" and body.deletion_id is not None:
        count = curation.restore(session, Selection(scope=owner_scope()), deletion_id=body.deletion_id)
        return _done(body.action, count)
    selection = selection_from(body)
    if body.action == "rate":
        return _done(body.action, curation.rate(session, selection, body.rating))
    if body.action == "add_to_board":
        board = find_board(body.board_id, "board_id")
        return _done(body.action, curation.add_to_board(session, selection, board.id))
    if body.action == "remove_from_board":
        board = find_board(body.board_id, "board_id")
        return _done(body.action, curation.remove_from_board(session, selection, board.id))
    if body.action == "delete":
        count, deletion_id = curation.soft_delete(session, selection)
        out = BulkActionOut(
            action=body.action,
            matched=count,
            deletion_id=deletion_id,
            purge_after_seconds=farm().settings.delete_grace_seconds,
        )
        return jsonify(out.model_dump(mode="json"))
    return _done(body.action, curation.restore(session, selection))


def _done(action: str, count: int) -> Response:
    return jsonify(BulkActionOut(action=action, matched=count).model_dump(mode="json"))
