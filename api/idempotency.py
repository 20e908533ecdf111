"""`Idempotency-Key` on job submits: a retried request gets the job its first try made, never a second one."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from typing import Any

from flask import request

from api.auth import owner_id
from api.errors import ApiError
from api.farm import db
from models.idempotency import HEADER, MAX_KEY_CHARS, find_previous, request_fingerprint
from models.job import Job

_KEY_FORM = re.compile(rf"^[\x21-\x7e]{{1,{MAX_KEY_CHARS}}}$")  # visible ASCII, as header values allow


def idempotency_key() -> str | None:
    """The request's Idempotency-Key, or None; 422 naming the header when it is malformed."""
    key = request.headers.get(HEADER)
    if key is None:
        return None
    key = key.strip()
    if not _KEY_FORM.match(key):
        reason = f"must be 1 to {MAX_KEY_CHARS} visible ASCII characters (a UUID is a good choice)"
        raise ApiError(422, f"invalid {HEADER}", [{"field": HEADER, "reason": reason}])
    return key


def body_fingerprint(route: str) -> str:
    """What makes two requests 'the same': the route and the JSON body, or the multipart parts' contents.

    Multipart boundaries differ on every try, so parts are compared by content, not bytes.
    """
    if request.mimetype == "multipart/form-data":
        document: Any = {
            "form": {name: request.form.getlist(name) for name in sorted(request.form)},
            "files": {
                name: hashlib.sha256(upload.stream.read()).hexdigest() for name, upload in sorted(request.files.items())
            },
        }
        for upload in request.files.values():
            upload.stream.seek(0)
    else:
        try:
            document = json.loads(request.get_data(cache=True) or b"null")
        except ValueError:
            document = request.get_data(cache=True).decode("utf-8", "replace")
    return request_fingerprint(route, document)


def replay_or_none(key: str | None, fingerprint: str) -> Job | None:
    """The job an earlier request with this key made (same body), None for a new key; 422 for another body."""
    if key is None:
        return None
    previous = find_previous(db(), owner_id(), key)
    if previous is None:
        return None
    if previous.request_hash != fingerprint:
        reason = (
            f"was used within 24 h for a different request (job {previous.job_id}); "
            "send a new key for a new job, or the same body to get that job again"
        )
        raise ApiError(422, f"{HEADER} reused with another body", [{"field": HEADER, "reason": reason}])
    return db().get(Job, previous.job_id)


def submit_once(route: str, submit: Callable[[tuple[str, str] | None], Job]) -> tuple[Job, bool]:
    """Run `submit` unless the key was seen; returns (job, replayed). A lost race replays the winner's job."""
    from api.submission import IdempotencyRace

    key = idempotency_key()
    fingerprint = body_fingerprint(route) if key is not None else ""
    job = replay_or_none(key, fingerprint)
    if job is not None:
        return job, True
    try:
        return submit((key, fingerprint) if key is not None else None), False
    except IdempotencyRace:
        job = replay_or_none(key, fingerprint)
        if job is None:  # the winner's job was deleted in between; a retry will make a new one
            raise ApiError(409, f"a request with this {HEADER} is being handled; retry") from None
        return job, True
