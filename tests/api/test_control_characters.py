"""NUL, other control characters and unpaired surrogates are refused with 422 naming the field, on
both databases (issue #12: a NUL in a prompt, or `?model=%00`, gave 500 on PostgreSQL)."""

from __future__ import annotations

import json

from sqlalchemy import func, select

from models import Image, Job

JOB = {"prompts": ["a red circle"], "steps": 2}
BAD_JOBS = [
    ({**JOB, "prompts": ["a\u0000b"]}, "prompts.0"),
    ({**JOB, "negative_prompt": "\u0000"}, "negative_prompt"),
    ({"items": [{"prompt": "a", "negative_prompt": "b\u0000"}]}, "items.0.negative_prompt"),
    ({"items": [{"prompt": "a\u001bb"}]}, "items.0.prompt"),
    ({**JOB, "prompts": ["a\u0085b"]}, "prompts.0"),
    ({**JOB, "model": "tiny\u0000"}, "model"),
    ({**JOB, "scheduler": "euler\u0000"}, "scheduler"),
    ({**JOB, "webhook_url": "https://example.com/\u0000"}, "webhook_url"),
    ({**JOB, "loras": [{"name": "a\u0000"}]}, "loras.0.name"),  # its pattern refuses it
]


def _fields(response) -> dict[str, str]:
    return {entry["field"]: entry["reason"] for entry in response.json["error"]["fields"]}


def _count_jobs(app) -> int:
    with app.extensions["sdfarm"].sessions() as session:
        return session.scalar(select(func.count()).select_from(Job)) + session.scalar(
            select(func.count()).select_from(Image)
        )


def test_jobs_with_control_characters_are_refused_naming_the_field(app, client):
    for body, field in BAD_JOBS:
        response = client.post("/api/v1/jobs", json=body)
        assert response.status_code == 422, (field, response.status_code)
        reason = _fields(response).get(field, "")
        assert "control character" in reason or "pattern" in reason, (field, _fields(response))
    surrogate = json.dumps({**JOB, "prompts": ["a"], "negative_prompt": "x"}).replace('"x"', '"\\ud800"')
    response = client.post("/api/v1/jobs", data=surrogate, content_type="application/json")
    assert response.status_code == 422 and "unicode" in _fields(response)["negative_prompt"].lower()
    assert _count_jobs(app) == 0
    # Tabs and line breaks are text in a prompt, and stored as sent.
    accepted = client.post("/api/v1/jobs", json={**JOB, "prompts": ["a\tred\ncircle"], "negative_prompt": "b\r\nc"})
    assert accepted.status_code == 202, accepted.json
    image = client.get(f"/api/v1/images?job_id={accepted.json['id']}").json["images"][0]
    assert (image["prompt"], image["negative_prompt"]) == ("a\tred\ncircle", "b\r\nc")


def test_query_parameters_with_control_characters_are_refused(client):
    for url, field in (
        ("/api/v1/images?model=%00", "model"),
        ("/api/v1/images?status=%00", "status"),
        ("/api/v1/images?cursor=1%00", "cursor"),
        ("/api/v1/jobs?cursor=%0a", "cursor"),
        ("/api/v1/images?x%00=1", "x\\x00"),
        ("/?model=%00", "model"),
        ("/?q=a%00b", "q"),
        ("/?size=%00", "size"),
        ("/?before=1%00", "before"),
        ("/jobs?from_image=%00", "from_image"),
    ):
        response = client.get(url)
        assert response.status_code == 422, (url, response.status_code)
        if url.startswith("/api/"):
            assert "control character" in _fields(response)[field], (url, _fields(response))
        else:
            assert field in response.get_data(as_text=True) and "control character" in response.get_data(as_text=True)
    assert client.get("/api/v1/images?model=tiny").status_code == 200
    assert client.get("/?q=caf%C3%A9").status_code == 200


def test_other_names_and_a1111_fields_are_refused(client):
    response = client.put("/api/v1/webhook-settings", json={"url": "https://example.com/\u0000"})
    assert response.status_code == 422 and "control character" in _fields(response)["url"]
    response = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "tiny\u0000"})
    assert response.status_code == 422 and "control character" in _fields(response)["sd_model_checkpoint"]
    response = client.post("/sdapi/v1/txt2img", json={"prompt": "a\u0000", "steps": 2})
    assert response.status_code == 422 and "control character" in _fields(response)["prompt"]
    form = client.post("/jobs", data={"prompts": "a\u0000b"}, headers={"Sec-Fetch-Site": "same-origin"})
    assert form.status_code == 422 and "control character" in form.get_data(as_text=True)
