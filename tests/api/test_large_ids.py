"""Every route and query parameter that takes an id or a cursor answers 4xx (or an empty page), never
500, for ids at and past 32, 53, 63 and 64 bits, on SQLite and PostgreSQL (issue #12: 2^31 gave 500
on PostgreSQL everywhere, and init_image_id = 2^63 on SQLite too)."""

from __future__ import annotations

import re

import pytest

from models.base import MAX_ROW_ID
from models.spec import MAX_SEED

BIG = [2**31, 2**53, MAX_ROW_ID, 2**63, 2**64, 10**30]
# Paths: every URL rule with an <id:...> part, read from the app, so a new route is covered too.
EXTRA_PATHS = [("GET", "/jobs?from_image={n}")]
# Filters and cursors: a valid id that matches nothing is an empty page; one past the column is a 4xx.
QUERIES = [
    "/api/v1/jobs?cursor={n}",
    "/api/v1/images?cursor={n}",
    "/api/v1/images?job_id={n}",
    "/api/v1/images?seed={n}",
    "/?job={n}",
    "/?before={n}",
    "/?after={n}",
    "/jobs?before={n}",
    "/jobs?after={n}",
    "/jobs?submitted={n}",
]


@pytest.fixture
def one_job(client):
    response = client.post("/api/v1/jobs", json={"prompts": ["a red circle"], "steps": 2})
    assert response.status_code == 202
    return response.json["id"]


def _id_paths(app) -> list[tuple[str, str]]:
    paths = []
    for rule in app.url_map.iter_rules():
        if "<id:" not in rule.rule:
            continue
        template = re.sub(r"<id:\w+>", "{n}", rule.rule)
        paths += [(method, template) for method in sorted(rule.methods - {"HEAD", "OPTIONS"})]
    assert len(paths) >= 10, paths
    return paths + EXTRA_PATHS


@pytest.mark.parametrize("number", BIG, ids=lambda n: f"{n.bit_length()}bits")
def test_big_ids_are_never_a_server_error(app, client, one_job, number):
    headers = {"Sec-Fetch-Site": "same-origin"}
    for method, template in _id_paths(app):
        url = template.format(n=number)
        response = client.open(url, method=method, headers=headers)
        assert response.status_code == 404, (url, response.status_code)
    for template in QUERIES:
        url = template.format(n=number)
        response = client.get(url)
        assert response.status_code in (200, 400), (url, response.status_code)
        if number <= MAX_ROW_ID and template.startswith("/api/") and not (number > MAX_SEED and "seed=" in url):
            assert response.status_code == 200, url
    bodies = [("init_image_id", {"prompts": ["a"], "init_image_id": number, "strength": 0.5})]
    if number > MAX_SEED:
        bodies.append(("seed", {"prompts": ["a"], "seed": number}))
        bodies.append(("items.0.seed", {"items": [{"prompt": "a", "seed": number}]}))
    for field, body in bodies:
        response = client.post("/api/v1/jobs", json=body)
        assert response.status_code == 422, (field, response.status_code)
        assert field in {entry["field"] for entry in response.json["error"]["fields"]}
    assert client.get(f"/api/v1/jobs/{one_job}").status_code == 200


def test_unicode_digits_are_not_ids(client, one_job):
    for url in ("/api/v1/jobs?cursor=%C2%B2", "/api/v1/images?job_id=%C2%B2", "/api/v1/images?seed=%C2%B2"):
        assert client.get(url).status_code == 400, url
    assert client.get("/jobs?from_image=%C2%B2").status_code == 404
