"""The jobs form and "make more like this": the API's validation, the API's submission, same-origin posts only."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from api import create_app
from api.auth import create_key
from models import Image, Job
from tests.conftest import make_settings
from tests.factories import add_images


def field_errors(response) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    for name, reason in re.findall(r'<p class="field-error" id="error-(\w+)">([^<]*)</p>', response.text):
        errors.setdefault(name, []).append(reason.replace("&#39;", "'").replace("&#34;", '"'))
    return errors


@pytest.mark.parametrize(
    "form, body",
    [
        ({"prompts": "\n \n"}, {"prompts": []}),
        (
            {"prompts": "a", "steps": "0", "width": "65", "guidance_scale": "99"},
            {"prompts": ["a"], "steps": 0, "width": 65, "guidance_scale": 99},
        ),
        (
            {"prompts": "a", "scheduler": "warp drive", "seed": "-1", "priority": "10"},
            {"prompts": ["a"], "scheduler": "warp drive", "seed": -1, "priority": 10},
        ),
        ({"prompts": "a", "model": "nope", "num_images": "2"}, {"prompts": ["a"], "model": "nope", "num_images": 2}),
        # Every error at once: a field's and the model's, as the API answers them in one 422.
        ({"prompts": "a", "model": "nope", "steps": "0"}, {"prompts": ["a"], "model": "nope", "steps": 0}),
        ({"prompts": "x" * 2001}, {"prompts": ["x" * 2001]}),
    ],
)
def test_form_errors_are_the_apis_next_to_each_field(client, form, body):
    api = client.post("/api/v1/jobs", json=body)
    assert api.status_code == 422
    expected: dict[str, list[str]] = {}
    for item in api.json["error"]["fields"]:
        expected.setdefault(item["field"].split(".")[0], []).append(item["reason"])
    page = client.post("/jobs", data=form)
    assert page.status_code == 422 and page.mimetype == "text/html"
    assert field_errors(page) == expected
    # What was typed stays in the form.
    for name, value in form.items():
        if name not in ("scheduler", "model", "prompts"):
            assert f'name="{name}"' in page.text and f'value="{value}"' in page.text
    assert client.get("/api/v1/jobs").json["jobs"] == []


def test_text_in_number_fields_is_reported_like_the_api(client):
    page = client.post("/jobs", data={"prompts": "a", "steps": "lots", "num_images": "1.5"})
    errors = field_errors(page)
    assert errors["steps"] == ["Input should be a valid integer, unable to parse string as an integer"]
    assert errors["num_images"][0].startswith("Input should be a valid integer")


def test_submitting_the_form_makes_the_job_and_shows_it(client, session):
    form = {
        "prompts": "a red circle\n\n  a blue square  \n",
        "num_images": "2",
        "negative_prompt": "blurry",
        "steps": "3",
        "guidance_scale": "5.5",
        "width": "64",
        "height": "128",
        "seed": "10",
        "scheduler": "DDIM",
        "model": "tiny",
        "priority": "7",
    }
    response = client.post("/jobs", data=form)
    assert response.status_code == 303
    job_id = int(re.fullmatch(r"/jobs\?submitted=(\d+)#job-\1", response.headers["Location"]).group(1))
    job = session.get(Job, job_id)
    assert (job.total, job.priority, job.model) == (4, 7, "tiny")
    images = list(session.scalars(select(Image).where(Image.job_id == job_id).order_by(Image.index)))
    assert [(i.prompt, i.seed) for i in images] == [
        ("a red circle", 10),
        ("a red circle", 11),
        ("a blue square", 12),
        ("a blue square", 13),
    ]
    assert {(i.steps, i.guidance_scale, i.width, i.height, i.scheduler, i.negative_prompt) for i in images} == {
        (3, 5.5, 64, 128, "DDIM", "blurry")
    }
    page = client.get(response.headers["Location"])
    assert f'class="job status-queued submitted" id="job-{job_id}"' in page.text


def test_make_more_like_this_copies_parameters_with_new_seeds(client, session):
    source = add_images(
        session, ["a lighthouse"], negative_prompt="fog", seed=99, steps=6, guidance_scale=4.0, scheduler="DDIM"
    )[0]
    response = client.post(f"/images/{source.id}/more", data={"num_images": "3"})
    assert response.status_code == 303
    job_id = int(re.search(r"submitted=(\d+)", response.headers["Location"]).group(1))
    images = list(session.scalars(select(Image).where(Image.job_id == job_id)))
    assert len(images) == 3
    assert {
        (i.prompt, i.negative_prompt, i.steps, i.guidance_scale, i.scheduler, i.width, i.model) for i in images
    } == {("a lighthouse", "fog", 6, 4.0, "DDIM", 64, "tiny")}
    seeds = sorted(i.seed for i in images)
    assert seeds == [seeds[0], seeds[0] + 1, seeds[0] + 2] and 99 not in seeds
    bad = client.post(f"/images/{source.id}/more", data={"num_images": "0"})
    assert bad.status_code == 422 and "num_images" in bad.text and bad.mimetype == "text/html"


def test_form_prefilled_from_an_image(client, session):
    source = add_images(session, ['a "quoted" <b>prompt</b>'], steps=9, scheduler="euler_a")[0]
    page = client.get(f"/jobs?from_image={source.id}")
    assert "a &#34;quoted&#34; &lt;b&gt;prompt&lt;/b&gt;</textarea>" in page.text
    assert 'name="steps" type="number" min="1" max="150" placeholder="model default" value="9"' in page.text
    assert '<option value="Euler a" selected>' in page.text


@pytest.mark.parametrize(
    "headers, status",
    [
        ({"Sec-Fetch-Site": "cross-site"}, 403),
        ({"Sec-Fetch-Site": "same-site"}, 403),
        ({"Origin": "https://evil.example"}, 403),
        ({"Origin": "null"}, 403),
        ({"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"}, 303),
        ({"Origin": "http://localhost"}, 303),
        ({}, 303),
    ],
)
def test_form_posts_from_other_sites_are_refused(client, headers, status):
    response = client.post("/jobs", data={"prompts": "a"}, headers=headers)
    assert response.status_code == status
    assert len(client.get("/api/v1/jobs").json["jobs"]) == (1 if status == 303 else 0)


def test_each_key_sees_only_its_own_rows(tmp_path, settings, session):
    app = create_app(
        make_settings(tmp_path, settings.resolved_database_url, settings.redis_url, settings.models_dir, auth="on")
    )
    alice, alice_secret = create_key(session, "alice")
    bob, _ = create_key(session, "bob")
    _, admin_secret = create_key(session, "admin", admin=True)
    mine = add_images(session, ["alice's cat"], owner=alice.id)
    theirs = add_images(session, ["bob's cat"], owner=bob.id)
    client = app.test_client()
    as_alice = {"Authorization": f"Bearer {alice_secret}"}
    gallery = client.get("/?q=cat", headers=as_alice)
    assert "alice&#39;s cat" in gallery.text and "bob" not in gallery.text
    assert client.get(f"/images/{mine[0].id}", headers=as_alice).status_code == 200
    assert client.get(f"/images/{theirs[0].id}", headers=as_alice).status_code == 404
    assert client.post(f"/images/{theirs[0].id}/more", headers=as_alice).status_code == 404
    assert client.get(f"/jobs?from_image={theirs[0].id}", headers=as_alice).status_code == 404
    jobs = client.get("/jobs", headers=as_alice).text
    assert f'id="job-{mine[0].job_id}"' in jobs and f'id="job-{theirs[0].job_id}"' not in jobs
    admin = client.get("/?q=cat", headers={"Authorization": f"Bearer {admin_secret}"}).text
    assert "alice&#39;s cat" in admin and "bob&#39;s cat" in admin
    anonymous = client.get("/")
    assert anonymous.status_code == 303 and anonymous.headers["Location"].startswith("/sign-in")
    assert client.get("/static/gallery.css").status_code == 200
    app.extensions["sdfarm"].engine.dispose()
