"""The image and job pages a person wants: every parameter, init image and mask links, compare, "use as
init image", and the form's image-to-image inputs (uploads included), as the JSON API takes them."""

from __future__ import annotations

import io
import re

from PIL import Image as PILImage
from sqlalchemy import select

from models import Image, Job
from models.image_store import LocalImageStore
from tests.factories import add_images


def png(size=(64, 64), colour=(200, 30, 30), mode="RGB") -> bytes:
    buffer = io.BytesIO()
    PILImage.new(mode, size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def param(html: str, name: str) -> str:
    match = re.search(rf'data-param="{name}">(.*?)</dd>', html, re.S)
    return re.sub(r"<[^>]+>", "", match.group(1)).strip() if match else ""


def test_image_page_shows_every_parameter_and_links_the_inputs(app, client, session):
    source = add_images(session, ["the source"], object_key="jobs/s.png", thumb_key="jobs/s.thumb.webp")[0]
    image = add_images(
        session,
        ["painted over"],
        clip_skip=2,
        strength=0.55,
        loras=[{"name": "watercolor", "weight": 0.8, "hash": "abc"}, {"name": "ink", "weight": 1.0}],
    )[0]
    job = session.get(Job, image.job_id)
    job.spec = {"prompts": ["painted over"], "init_image_id": source.id}
    job.init_image_key, job.mask_image_key = "jobs/s.png", "inputs/m-mask.png"
    session.commit()
    LocalImageStore(app.extensions["sdfarm"].settings.resolved_object_dir).put(
        "inputs/m-mask.png", png(colour=255, mode="L")
    )

    html = client.get(f"/images/{image.id}").text
    assert param(html, "clip_skip") == "2"
    assert param(html, "loras") == "watercolor: 0.8, ink: 1.0"
    assert param(html, "strength") == "0.55"
    assert f'href="/images/{source.id}"' in html and param(html, "init_image") == f"Image {source.id}"
    assert f'href="/api/v1/jobs/{job.id}/mask-image"' in html
    mask = client.get(f"/api/v1/jobs/{job.id}/mask-image")
    assert mask.status_code == 200 and mask.mimetype == "image/png"
    assert PILImage.open(io.BytesIO(mask.data)).size == (64, 64)
    assert f'href="/jobs?init_image={image.id}#new-job"' in html  # use as init image
    assert "data-zoom" in html

    plain = add_images(session, ["text to image"])[0]
    html = client.get(f"/images/{plain.id}").text
    assert param(html, "clip_skip") == "1" and param(html, "loras") == "—"
    assert 'data-param="strength"' not in html and 'data-param="mask_image"' not in html
    missing = client.get(f"/api/v1/jobs/{plain.job_id}/init-image")
    assert missing.status_code == 404 and missing.json["error"]["message"].endswith(
        "has no init image; it is a text-to-image job"
    )


def test_compare_shows_two_images_and_marks_what_differs(client, session):
    first = add_images(session, ["a castle"], seed=1, steps=20)[0]
    second = add_images(session, ["a castle"], seed=2, steps=20)[0]
    page = client.get(f"/compare?ids={first.id},{second.id}")
    assert page.status_code == 200
    assert re.findall(r'<figure class="side" data-image-id="(\d+)"', page.text) == [str(first.id), str(second.id)]
    differing = re.findall(r"<dt>([^<]+)</dt><dd class=\"differs\">", page.text)
    assert differing == ["Seed", "Seed"]
    assert client.get("/compare?ids=1,2,3").status_code == 400
    assert client.get("/compare?ids=abc").status_code == 400
    assert client.get(f"/compare?ids={first.id}").status_code == 200  # then asks for the second
    assert client.get(f"/compare?ids={first.id},{10**17}").status_code == 404


def test_use_as_init_image_prefills_the_form(client, session):
    image = add_images(session, ["a lighthouse"], object_key="jobs/l.png", thumb_key="jobs/l.thumb.webp")[0]
    page = client.get(f"/jobs?init_image={image.id}")
    assert page.status_code == 200
    assert f'name="init_image_id" inputmode="numeric" placeholder="image id" value="{image.id}"' in page.text
    assert ">a lighthouse</textarea>" in page.text
    assert f'src="/api/v1/images/{image.id}/thumbnail"' in page.text


def test_the_form_takes_loras_clip_skip_and_uploads_like_the_api(client, session):
    page = client.post(
        "/jobs",
        data={
            "prompts": "repaint the middle",
            "clip_skip": "2",
            "strength": "0.6",
            "steps": "4",
            "init_image": (io.BytesIO(png((64, 64))), "castle.png"),
            "mask_image": (io.BytesIO(png((64, 64), 255, "L")), "mask.png"),
        },
        content_type="multipart/form-data",
    )
    assert page.status_code == 303, page.text
    job = session.scalars(select(Job).order_by(Job.id.desc())).first()
    assert job.init_image_key and job.mask_image_key
    image = session.scalars(select(Image).where(Image.job_id == job.id)).one()
    assert (image.clip_skip, image.strength) == (2, 0.6)

    errors = client.post(
        "/jobs",
        data={"prompts": "a", "loras": "bad name!:0.5, ok:nine", "clip_skip": "13"},
        content_type="multipart/form-data",
    )
    assert errors.status_code == 422
    reasons = dict(re.findall(r'<p class="field-error" id="error-(\w+)">([^<]*)</p>', errors.text))
    assert set(reasons) == {"loras", "clip_skip"}
    wrong_size = client.post(
        "/jobs",
        data={
            "prompts": "a",
            "init_image": (io.BytesIO(png((64, 64))), "a.png"),
            "mask_image": (io.BytesIO(png((128, 64), 255, "L")), "m.png"),
        },
        content_type="multipart/form-data",
    )
    assert wrong_size.status_code == 422 and 'id="error-mask_image"' in wrong_size.text
    not_a_picture = client.post(
        "/jobs",
        data={"prompts": "a", "init_image": (io.BytesIO(b"not a png"), "a.png")},
        content_type="multipart/form-data",
    )
    assert 'id="error-init_image">not a readable picture' in not_a_picture.text


def test_the_form_shows_the_models_defaults(client):
    page = client.get("/jobs").text
    assert "data-model-defaults='{" in page
    assert '"tiny": {"guidance_scale": 7.5, "height": 64, "sampler":' in page.replace("&#34;", '"')


def test_cards_show_model_and_size_and_the_size_example_is_the_default_models(client, session):
    add_images(session, ["a card"], model="tiny", width=64, height=48)
    page = client.get("/").text
    assert '<span data-field="model">tiny</span> · 64x48' in page
    assert 'name="size" size="8" placeholder="64x64"' in page  # the test farm's default model, tiny
