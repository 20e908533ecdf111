"""`/healthz`: 200 when the database and the broker answer, 503 naming the one that does not."""

from __future__ import annotations

from flask import Response, jsonify
from sqlalchemy import text

from api.farm import db, farm


def healthz() -> tuple[Response, int]:
    """Check the database and Redis."""
    result = {"status": "ok", "database": "ok", "broker": "ok"}
    try:
        db().execute(text("SELECT 1"))
    except Exception as error:
        result["database"] = f"unavailable: {type(error).__name__}"
    try:
        farm().queue.ping()
    except Exception as error:
        result["broker"] = f"unavailable: {type(error).__name__}"
    healthy = result["database"] == "ok" and result["broker"] == "ok"
    result["status"] = "ok" if healthy else "degraded"
    return jsonify(result), 200 if healthy else 503
