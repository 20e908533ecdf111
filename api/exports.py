"""`/api/v1/exports`: ask for a dataset export, follow it, download its files.

The request only records what to export; a background runner on the worker side makes it
(worker/exporter.py), so a 100,000-image export never runs inside an HTTP request.
"""

from __future__ import annotations

from flask import Response, jsonify
from sqlalchemy import select

from api.auth import owner_id, owner_scope
from api.curation import find_board
from api.errors import ApiError
from api.farm import db
from api.objects import send_object
from api.request_body import parse_body
from api.schemas import ExportFileOut, ExportIn, ExportList, ExportOut
from api.visibility import hide_paths
from models import export as exports
from models.export import Export
from models.image_selection import ImageSelection


def selection_of(request: ExportIn) -> ImageSelection:
    """The stored selection a request describes; 422 naming a board the caller does not have."""
    if request.board_id is not None:
        find_board(request.board_id, "board_id")  # the caller's own board, else 422 naming board_id
    width = height = None
    if request.size:
        width, height = (int(side) for side in request.size.split("x"))
    return ImageSelection(
        image_ids=tuple(request.image_ids or ()),
        job_id=request.job_id,
        board_id=request.board_id,
        q=(request.q or "").strip(),
        model=(request.model or "").strip(),
        width=width,
        height=height,
        seed=request.seed,
        rating=request.rating,
        date_from=request.date_from,
        date_to=request.date_to,
    )


def find_export(export_id: int) -> Export:
    """The export if the caller may see it, else 404 (others' ids are not confirmed)."""
    export = db().get(Export, export_id)
    scope = owner_scope()
    if export is None or (scope is not None and export.owner_key_id != scope):
        raise ApiError(404, f"no export with id {export_id}")
    return export


def export_out(export: Export) -> ExportOut:
    """The API view of an export; download URLs only once it succeeded."""
    done = export.status == exports.ExportStatus.SUCCEEDED
    files = [
        ExportFileOut(
            name=item["name"],
            url=f"/api/v1/exports/{export.id}/files/{number}",
            bytes=item["bytes"],
            images=item["images"],
        )
        for number, item in enumerate(export.files or [], start=1)
        if done
    ]
    return ExportOut(
        id=export.id,
        format=export.format,
        status=export.status,
        progress=min(1.0, export.progress),
        images=export.images,
        done=export.done,
        files=files,
        error=hide_paths(export.error),
        selection=export.selection,
        shard_size=export.shard_size,
        attempts=export.attempts,
        created_at=export.created_at,
        started_at=export.started_at,
        finished_at=export.finished_at,
        url=f"/api/v1/exports/{export.id}",
    )


def create_export() -> tuple[Response, int, dict]:
    """POST /api/v1/exports: record the export; 202 with it and its Location. A worker makes it."""
    request = parse_body(ExportIn)
    selection = selection_of(request)
    session = db()
    export = exports.create(
        session,
        owner_key_id=owner_id(),
        scope_key_id=owner_scope(),
        format=request.format,
        selection=selection.to_json(),
        shard_size=request.shard_size,
    )
    session.commit()
    return jsonify(export_out(export).model_dump(mode="json")), 202, {"Location": f"/api/v1/exports/{export.id}"}


def get_export(export_id: int) -> Response:
    """GET /api/v1/exports/<id>: status, progress, images and (once made) the download URLs."""
    return jsonify(export_out(find_export(export_id)).model_dump(mode="json"))


def list_exports() -> Response:
    """GET /api/v1/exports: the caller's 50 newest exports."""
    query = select(Export).order_by(Export.id.desc()).limit(50)
    scope = owner_scope()
    if scope is not None:
        query = query.where(Export.owner_key_id == scope)
    return jsonify(ExportList(exports=[export_out(export) for export in db().scalars(query)]).model_dump(mode="json"))


def export_file(export_id: int, number: int) -> Response:
    """GET /api/v1/exports/<id>/files/<n>: the n-th file (1-based), streamed from the object store."""
    export = find_export(export_id)
    if export.status != exports.ExportStatus.SUCCEEDED:
        raise ApiError(404, f"export {export_id} is {export.status}; its files are ready once it has succeeded")
    files = export.files or []
    if number > len(files):
        raise ApiError(404, f"export {export_id} has {len(files)} files; there is no file {number}")
    item = files[number - 1]
    mimetype = "application/x-tar" if item["name"].endswith(".tar") else "application/zip"
    download_name = f"sdfarm-export-{export.id}-{item['name']}"
    missing = f"file {number} of export {export_id} is missing from the object store"
    return send_object(item["key"], mimetype, download_name, as_attachment=True, missing=missing)
