"""Bad input gets a 4xx naming the field and the reason, and nothing is stored or enqueued."""

from __future__ import annotations

import pytest
import redis
from sqlalchemy import func, select

from models import Image, Job
from models.queue import queue_name

VALID = {"prompts": ["a red circle on a blue background"], "steps": 4}

BAD_JOBS = [
    ({"prompts": []}, "prompts"),
    ({"prompts": [""]}, "prompts.0"),
    ({"prompts": ["   "]}, "prompts.0"),
    ({"prompts": ["x" * 2001]}, "prompts"),
    ({"prompts": ["ok"], "negative_prompt": "x" * 2001}, "negative_prompt"),
    ({"prompts": ["ok"], "width": 65}, "width"),
    ({"prompts": ["ok"], "height": 100}, "height"),
    ({"prompts": ["ok"], "width": 4096}, "width"),
    ({"prompts": ["ok"], "width": 32}, "width"),
    ({"prompts": ["ok"], "steps": 0}, "steps"),
    ({"prompts": ["ok"], "steps": 1000}, "steps"),
    ({"prompts": ["ok"], "guidance_scale": -1}, "guidance_scale"),
    ({"prompts": ["ok"], "guidance_scale": 100}, "guidance_scale"),
    ({"prompts": ["ok"], "scheduler": "warp drive"}, "scheduler"),
    ({"prompts": ["ok"], "model": "no-such-model"}, "model"),
    ({"prompts": ["ok"], "seed": -1}, "seed"),
    ({"prompts": ["ok"], "num_images": 0}, "num_images"),
    ({"prompts": ["ok"] * 10, "num_images": 1001}, "num_images"),
    ({"prompts": ["ok"] * 101, "num_images": 100}, "body"),
    ({"prompts": ["ok"], "surprise": True}, "surprise"),
    ({"prompts": ["ok"], "items": [{"prompt": "b"}]}, "body"),
    ({"items": [{"prompt": "b", "colour": "red"}]}, "items.0.colour"),
    ({"items": [{"negative_prompt": "b"}]}, "items.0.prompt"),
    ({"prompts": "not a list"}, "prompts"),
    ({"prompts": ["ok"], "priority": 10}, "priority"),
    ({"prompts": ["ok"], "strength": 0.5}, "strength"),
    ({"prompts": ["ok"], "init_image": "%%%not-base64"}, "init_image"),
    # issue #12: items' negative prompts had no limit (a 500 KB one was accepted)
    ({"items": [{"prompt": "a", "negative_prompt": "x" * 2001}]}, "items.0.negative_prompt"),
    ({"items": [{"prompt": "a", "negative_prompt": "x" * 500_000}]}, "items.0.negative_prompt"),
    ({"items": [{"prompt": "x" * 2001}]}, "items.0.prompt"),
    ({"prompts": ["ok"], "scheduler": "x" * 201}, "scheduler"),
    ({"prompts": ["ok"], "model": "x" * 201}, "model"),
    ({"prompts": ["ok"], "webhook_url": "https://example.com/" + "x" * 2000}, "webhook_url"),
    ({"prompts": ["ok"], "loras": [{"name": "x" * 101}]}, "loras.0.name"),
]


def _assert_nothing_stored(app, redis_url: str) -> None:
    with app.extensions["sdfarm"].sessions() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 0
        assert session.scalar(select(func.count()).select_from(Image)) == 0
    assert redis.Redis.from_url(redis_url).llen(queue_name("tiny")) == 0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("body", "field"), BAD_JOBS, ids=[f for _, f in BAD_JOBS])
def test_bad_job_is_rejected_with_the_field(app, client, settings, body, field):
    response = client.post("/api/v1/jobs", json=body)
    assert response.status_code == 422, response.json
    fields = {entry["field"]: entry["reason"] for entry in response.json["error"]["fields"]}
    assert any(name == field or name.startswith(field + ".") for name in fields), fields
    assert all(reason for reason in fields.values())
    _assert_nothing_stored(app, settings.redis_url)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_malformed_json_wrong_type_and_non_object(app, client, settings):
    response = client.post("/api/v1/jobs", data="{not json", content_type="application/json")
    assert response.status_code == 400
    assert "malformed JSON" in response.json["error"]["message"]
    response = client.post("/api/v1/jobs", data="prompts=a", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert "Content-Type: application/json" in response.json["error"]["message"]
    response = client.post("/api/v1/jobs", json=["a", "b"])
    assert response.status_code == 422
    deep = "[" * 5000 + "]" * 5000
    response = client.post("/api/v1/jobs", data=deep, content_type="application/json")
    assert response.status_code == 400
    _assert_nothing_stored(app, settings.redis_url)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_job_cap_is_configurable(app, client, settings):
    app.extensions["sdfarm"].settings.max_images_per_job = 5
    response = client.post("/api/v1/jobs", json={"prompts": ["a", "b", "c"], "num_images": 2})
    assert response.status_code == 422
    assert "limit per job is 5" in response.json["error"]["fields"][0]["reason"]
    _assert_nothing_stored(app, settings.redis_url)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_oversize_body_gets_413(app, client, settings):
    app.config["MAX_CONTENT_LENGTH"] = 10_000
    response = client.post("/api/v1/jobs", json={"prompts": ["x" * 1000] * 20})
    assert response.status_code == 413
    assert "too large" in response.json["error"]["message"]
    _assert_nothing_stored(app, settings.redis_url)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_unknown_ids_are_404(client):
    for url in ("/api/v1/jobs/999", "/api/v1/images/999", "/api/v1/images/999/file", "/api/v1/images/999/thumbnail"):
        response = client.get(url)
        assert response.status_code == 404, url
        assert response.json["error"]["status"] == 404
    assert client.post("/api/v1/jobs/999/cancel").status_code == 404


def _string_properties(schema: dict, components: dict, path: str = "", seen: frozenset = frozenset()):
    """Every string-typed property reachable from `schema`, with its dotted path."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name in seen:
            return
        yield from _string_properties(components[name], components, path, seen | {name})
        return
    for key in ("anyOf", "oneOf", "allOf"):
        for option in schema.get(key, []):
            yield from _string_properties(option, components, path, seen)
    if schema.get("type") == "string":
        yield path, schema
    if schema.get("type") == "array":
        yield from _string_properties(schema.get("items", {}), components, path + "[]", seen)
    for name, value in schema.get("properties", {}).items():
        yield from _string_properties(value, components, f"{path}.{name}".lstrip("."), seen)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_string_of_a_request_is_bounded_in_the_openapi_document(client):
    document = client.get("/api/v1/openapi.json").json
    components = document["components"]["schemas"]
    checked = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if content is None:
                continue
            for field, schema in _string_properties(content["schema"], components):
                bounded = "maxLength" in schema or "enum" in schema or "const" in schema
                bounded = bounded or schema.get("format") in {"date", "date-time"}  # parsed, never stored as text
                assert bounded, f"{method.upper()} {path}: {field} has no maxLength"
                checked.append(field)
    assert {"prompts[]", "items[].prompt", "items[].negative_prompt", "negative_prompt", "webhook_url"} <= set(checked)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_job_lists_return_summaries_and_one_job_its_spec(client):
    long_negative = "y" * 2000
    for _ in range(3):
        body = {"items": [{"prompt": "a red circle", "negative_prompt": long_negative}] * 40, "steps": 2}
        assert client.post("/api/v1/jobs", json=body).status_code == 202
    page = client.get("/api/v1/jobs?limit=50")
    assert page.status_code == 200
    assert len(page.data) < 5_000, len(page.data)  # the specs alone are 240 KB
    first = page.json["jobs"][0]
    assert "spec" not in first and "images" not in first
    assert first["first_prompt"] == "a red circle" and first["prompt_count"] == 40
    one = client.get(f"/api/v1/jobs/{first['id']}?images=0").json
    assert one["spec"]["items"][0]["negative_prompt"] == long_negative
