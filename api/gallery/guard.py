"""Cross-site request forgery guard for the gallery's form posts.

The JSON API is safe from forged forms because it only accepts `application/json`, which a
page on another site cannot send without a CORS preflight this app never answers. The gallery's
forms are plain form posts, so they check the browser's own statement of where a request came
from: `Sec-Fetch-Site` where the browser sends it, else `Origin`. No token or session is needed,
which keeps the pages working with several API processes and with auth off.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import request

from api.errors import ApiError

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def require_same_origin() -> None:
    """before_request: refuse a state-changing request another site's page made the browser send."""
    if request.method in SAFE_METHODS:
        return
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        # "none" is the user's own action (typed URL, bookmark); "same-origin" is this app's page.
        if fetch_site not in {"same-origin", "none"}:
            raise ApiError(403, "this form was sent from another site; submit it from the farm's own pages")
        return
    origin = request.headers.get("Origin")
    if origin is not None and (origin == "null" or urlsplit(origin).netloc != request.host):
        raise ApiError(403, "this form was sent from another site; submit it from the farm's own pages")
