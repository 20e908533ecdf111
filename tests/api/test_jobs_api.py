"""The jobs and images API on both databases (no worker: the queue side is checked in Redis)."""

from __future__ import annotations

import redis

from models.queue import queue_name


def test_submit_answers_202_with_location_and_enqueues(client, settings):
    response = client.post("/api/v1/jobs", json={"prompts": ["a cat", "a dog", "a tree"], "num_images": 4, "seed": 100})
    assert response.status_code == 202
    job = response.json
    assert response.headers["Location"] == f"/api/v1/jobs/{job['id']}"
    assert (job["status"], job["total"], job["queued"], job["progress"]) == ("queued", 12, 12, 0.0)
    assert job["waiting_for_worker"] is True
    # 12 images at max_batch 4: three "work for tiny" messages.
    assert redis.Redis.from_url(settings.redis_url).llen(queue_name("tiny")) == 3

    detail = client.get(job["id"] and f"/api/v1/jobs/{job['id']}").json
    images = detail["images"]
    assert [image["index"] for image in images] == list(range(12))
    assert [image["seed"] for image in images] == list(range(100, 112))
    assert [image["prompt"] for image in images[:5]] == ["a cat"] * 4 + ["a dog"]
    assert all(image["status"] == "queued" and image["url"] is None for image in images)
    assert images[0]["sampler"] == "euler_a" and images[0]["width"] == 64  # the tiny model's defaults


def test_items_with_own_seeds_and_negative_prompts(client):
    body = {
        "items": [{"prompt": "a", "seed": 7, "negative_prompt": "blurry"}, {"prompt": "b"}],
        "num_images": 2,
        "negative_prompt": "ugly",
        "seed": 50,
        "scheduler": "DPM++ 2M Karras",
        "steps": 5,
        "guidance_scale": 4.5,
        "width": 128,
        "height": 64,
    }
    job_id = client.post("/api/v1/jobs", json=body).json["id"]
    images = client.get(f"/api/v1/jobs/{job_id}").json["images"]
    assert [(i["prompt"], i["seed"], i["negative_prompt"]) for i in images] == [
        ("a", 7, "blurry"),
        ("a", 8, "blurry"),
        ("b", 52, "ugly"),
        ("b", 53, "ugly"),
    ]
    assert {(i["sampler"], i["steps"], i["guidance_scale"], i["width"], i["height"]) for i in images} == {
        ("DPM++ 2M Karras", 5, 4.5, 128, 64)
    }


def test_random_seed_is_recorded_and_consecutive(client):
    job_id = client.post("/api/v1/jobs", json={"prompts": ["a"], "num_images": 3}).json["id"]
    seeds = [image["seed"] for image in client.get(f"/api/v1/jobs/{job_id}").json["images"]]
    assert seeds == [seeds[0], seeds[0] + 1, seeds[0] + 2]


def test_job_list_is_newest_first_with_cursor(client):
    ids = [client.post("/api/v1/jobs", json={"prompts": [f"p{i}"]}).json["id"] for i in range(5)]
    first = client.get("/api/v1/jobs?limit=2").json
    assert [job["id"] for job in first["jobs"]] == ids[::-1][:2]
    second = client.get(f"/api/v1/jobs?limit=2&cursor={first['next_cursor']}").json
    assert [job["id"] for job in second["jobs"]] == ids[::-1][2:4]
    last = client.get(f"/api/v1/jobs?limit=2&cursor={second['next_cursor']}").json
    assert [job["id"] for job in last["jobs"]] == ids[:1] and last["next_cursor"] is None
    assert client.get("/api/v1/jobs?cursor=abc").status_code == 400
    assert client.get("/api/v1/jobs?limit=0").status_code == 400


def test_image_list_filters_by_job_with_cursor(client):
    first = client.post("/api/v1/jobs", json={"prompts": ["a"], "num_images": 3}).json["id"]
    client.post("/api/v1/jobs", json={"prompts": ["b"], "num_images": 2})
    page = client.get(f"/api/v1/images?job_id={first}&limit=2").json
    assert [image["job_id"] for image in page["images"]] == [first, first]
    rest = client.get(f"/api/v1/images?job_id={first}&limit=2&cursor={page['next_cursor']}").json
    assert len(rest["images"]) == 1 and rest["next_cursor"] is None
    assert len(client.get("/api/v1/images").json["images"]) == 5
    one = page["images"][0]
    assert client.get(f"/api/v1/images/{one['id']}").json == one
    assert client.get(f"/api/v1/images/{one['id']}/file").status_code == 404  # not rendered yet


def test_cancel_marks_queued_images_and_job(client):
    job_id = client.post("/api/v1/jobs", json={"prompts": ["a"], "num_images": 3}).json["id"]
    canceled = client.post(f"/api/v1/jobs/{job_id}/cancel").json
    assert (canceled["status"], canceled["canceled"], canceled["queued"]) == ("canceled", 3, 0)
    assert {image["status"] for image in client.get(f"/api/v1/jobs/{job_id}").json["images"]} == {"canceled"}


def test_openapi_healthz_models_samplers(client):
    document = client.get("/api/v1/openapi.json").json
    assert document["openapi"].startswith("3.1")
    assert {"/api/v1/jobs", "/api/v1/jobs/{job_id}", "/api/v1/images/{image_id}/file", "/healthz"} <= set(
        document["paths"]
    )
    assert "JobSpec" in document["components"]["schemas"]
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json == {"status": "ok", "database": "ok", "broker": "ok"}
    models = client.get("/api/v1/models").json["models"]
    assert any(model["name"] == "tiny" and model["default"] for model in models)
    samplers = {s["name"]: s for s in client.get("/api/v1/samplers").json["samplers"]}
    assert samplers["DPM++ 2M Karras"]["options"]["use_karras_sigmas"] is True
    assert "euler_a" in samplers["Euler a"]["aliases"]


def test_healthz_reports_a_dead_broker(app, client):
    app.extensions["sdfarm"].queue.redis.connection_pool.connection_kwargs["port"] = 1
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json["broker"].startswith("unavailable") and response.json["database"] == "ok"


def test_security_headers_on_every_response(client):
    for response in (client.get("/api/v1/jobs"), client.get("/api/v1/jobs/12345")):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]


def test_images_query_is_checked(client):
    job = client.post("/api/v1/jobs", json={"prompts": ["a"], "num_images": 2}).json
    assert client.get(f"/api/v1/jobs/{job['id']}?images=0").json["images"] is None
    assert len(client.get(f"/api/v1/jobs/{job['id']}?images=yes").json["images"]) == 2
    refused = client.get(f"/api/v1/jobs/{job['id']}?images=maybe")
    assert refused.status_code == 422 and refused.json["error"]["fields"][0]["field"] == "images"
