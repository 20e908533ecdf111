"""Objects of the image store answered over HTTP: redirected to the store, sent from disk, or streamed."""

from __future__ import annotations

from flask import Response, redirect, request, send_file
from werkzeug.wsgi import wrap_file

from api.errors import ApiError
from api.farm import farm


def send_object(key: str, mimetype: str, download_name: str, as_attachment: bool, missing: str) -> Response:
    """Answer an object of the store: a presigned redirect when set, else the file or a stream of it."""
    store, settings = farm().store, farm().settings
    if settings.object_redirects:
        # The browser fetches the bytes from the store itself; the API only signs a short-lived URL.
        seconds = settings.object_redirect_seconds
        url = store.presigned_url(key, seconds, mimetype, download_name if as_attachment else None)
        if url is not None:
            response = redirect(url, code=302)
            # Half the URL's life, so a cached redirect never points at an expired signature.
            response.headers["Cache-Control"] = f"private, max-age={seconds // 2}"
            return response
    path = store.local_path(key)
    if path is not None:
        response = send_file(
            path, mimetype=mimetype, download_name=download_name, as_attachment=as_attachment, max_age=86400
        )
    else:
        try:
            stream, size = store.open(key)
        except FileNotFoundError:
            raise ApiError(404, missing) from None
        # Streamed in chunks as the store sends them: the API never holds a whole file.
        response = Response(wrap_file(request.environ, stream), mimetype=mimetype, direct_passthrough=True)
        response.content_length = size
        disposition = "attachment" if as_attachment else "inline"
        response.headers.set("Content-Disposition", disposition, filename=download_name)
    # Files never change once written (a new attempt gets a new key), so caches may keep them.
    response.headers["Cache-Control"] = "private, max-age=86400, immutable"
    return response
