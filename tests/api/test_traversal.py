"""No path from a request reaches the file system: traversal attempts on every file route get 404."""

from __future__ import annotations

import pytest

from models.image_store import InvalidKeyError, LocalImageStore

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

ATTEMPTS = [
    "../../../../etc/passwd",
    "..%2f..%2f..%2fetc%2fpasswd",
    "%2e%2e/%2e%2e/etc/passwd",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/etc/passwd",
    "%2fetc%2fpasswd",
    "1%00.png",
    "1/../../sdfarm.db",
    "..\\..\\sdfarm.db",
    "%252e%252e%252fetc%252fpasswd",
]


@SQLITE_ONLY
@pytest.mark.parametrize("attempt", ATTEMPTS)
@pytest.mark.parametrize(
    "route", ["/api/v1/images/{}/file", "/api/v1/images/{}/thumbnail", "/api/v1/images/{}", "/images/{}", "/static/{}"]
)
def test_traversal_gets_404(client, route, attempt):
    # Werkzeug may first answer 308 to merge slashes ("/static//etc" -> "/static/etc"); follow it.
    response = client.get(route.format(attempt), follow_redirects=True)
    assert response.status_code == 404, (route, attempt, response.status_code)
    assert b"root:" not in response.data and b"SQLite format" not in response.data


def test_store_refuses_keys_that_leave_its_root(tmp_path):
    store = LocalImageStore(tmp_path / "objects")
    (tmp_path / "secret").write_text("x")
    for key in ("../secret", "/etc/passwd", "a/../../secret", "a\x00b", "A/B.png", "", "a//b", ".hidden"):
        with pytest.raises(InvalidKeyError):
            store.read(key)
    store.put("jobs/00000001/000000-abcdef12.png", b"png")
    assert store.read("jobs/00000001/000000-abcdef12.png") == b"png"
