"""The API reference page: Swagger UI from the farm itself, under the site's CSP, in a real Chromium."""

from __future__ import annotations

import pytest

from api import CONTENT_SECURITY_POLICY
from api.routes import A1111_ROUTES, API_ROUTES
from tests.gallery.browser import CHROMIUM_ARGS, WATCH_CSP, chromium_binary, serve


def test_docs_page_and_its_files_are_served_without_a_key_under_the_csp(tmp_path, redis_server, models_dir):
    from api import create_app
    from sdfarm.migrate import upgrade
    from tests.conftest import make_settings

    url = f"sqlite:///{tmp_path / 'sdfarm.db'}"
    upgrade(url)
    client = create_app(make_settings(tmp_path, url, redis_server.url, models_dir, auth="on")).test_client()
    page = client.get("/api/docs")
    assert page.status_code == 200 and page.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    html = page.get_data(as_text=True)
    assert "<script>" not in html and "https://" not in html  # no inline script, nothing from a CDN
    for asset, media in (("swagger-ui-bundle.js", "javascript"), ("swagger-ui.css", "text/css")):
        response = client.get(f"/api/docs/{asset}")
        assert response.status_code == 200 and media in response.headers["Content-Type"]
        assert len(response.data) > 10_000
    assert client.get("/api/docs/index.html").status_code == 404
    assert client.get("/api/docs/swagger-ui-bundle.js.map").status_code == 404
    assert client.get("/api/docs/..%2F..%2Fsetup.py").status_code != 200
    assert client.get("/api/v1/jobs").status_code == 401  # the rest still needs a key


def test_the_openapi_document_comes_from_the_route_table(client):
    document = client.get("/api/v1/openapi.json").json
    documented = {(method, path) for path, operations in document["paths"].items() for method in operations}
    expected = set()
    for route in API_ROUTES + A1111_ROUTES:
        if route.in_openapi:
            path = route.rule.replace("<id:", "{").replace(">", "}")
            expected |= {(method.lower(), path) for method in route.methods}
    assert documented == expected
    jobs = document["paths"]["/api/v1/jobs"]
    assert [p["name"] for p in jobs["get"]["parameters"]] == ["limit", "cursor"]
    # Query parameters belong to the operation, not the path: POST has only its header.
    assert [(p["name"], p["in"]) for p in jobs["post"]["parameters"]] == [("Idempotency-Key", "header")]
    assert "multipart/form-data" in jobs["post"]["requestBody"]["content"]
    assert document["paths"]["/healthz"]["get"]["security"] == []
    assert document["paths"]["/sdapi/v1/txt2img"]["post"]["parameters"][0]["name"] == "Idempotency-Key"


def test_the_a1111_api_can_be_turned_off(tmp_path, redis_server, models_dir):
    from api import create_app
    from sdfarm.migrate import upgrade
    from tests.conftest import make_settings

    url = f"sqlite:///{tmp_path / 'sdfarm.db'}"
    upgrade(url)
    client = create_app(make_settings(tmp_path, url, redis_server.url, models_dir, a1111_api=False)).test_client()
    assert client.get("/sdapi/v1/sd-models").status_code == 404
    assert not [path for path in client.get("/api/v1/openapi.json").json["paths"] if path.startswith("/sdapi")]


@pytest.mark.browser
def test_swagger_ui_renders_every_operation_in_chromium(app):
    binary = chromium_binary()
    if not binary:
        pytest.skip("no Chromium binary: install chromium or set SDFARM_TEST_CHROMIUM")
    sync_api = pytest.importorskip("playwright.sync_api")
    operations = sum(len(route.methods) for route in API_ROUTES + A1111_ROUTES if route.in_openapi)
    with serve(app) as base_url, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=binary, args=CHROMIUM_ARGS)
        context = browser.new_context(base_url=base_url)
        context.add_init_script(WATCH_CSP)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        requests_seen: list[str] = []
        page.on("request", lambda request: requests_seen.append(request.url))
        page.goto("/api/docs")
        page.wait_for_selector(".opblock", timeout=30_000)
        assert page.locator(".opblock").count() == operations
        assert "sdfarm" in page.locator(".info .title").inner_text()
        violations = page.evaluate("() => window.__cspViolations")
        browser.close()
    assert violations == [] and errors == []
    assert all(url.startswith(base_url) or url.startswith("data:") for url in requests_seen), requests_seen
