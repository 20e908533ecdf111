"""Gallery, image and jobs pages through the Flask test client, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

from PIL import Image as PILImage
from PIL.PngImagePlugin import PngInfo

from api import CONTENT_SECURITY_POLICY
from models.image_store import LocalImageStore
from models.infotext import parse_infotext
from tests.factories import add_images, add_job_row
from tests.gallery.pages import PageScan

HOSTILE = ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>']


def tile_ids(response) -> list[int]:
    return [int(i) for i in re.findall(r'class="tile" data-image-id="(\d+)"', response.get_data(as_text=True))]


def link_args(href: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(href).query).items()}


def test_gallery_newest_first_with_security_headers(client, session):
    images = add_images(session, ["first", "second", "third"])
    add_images(session, ["still queued"], status="queued")
    response = client.get("/")
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert tile_ids(response) == [image.id for image in reversed(images)]  # succeeded only, by default
    assert len(tile_ids(client.get("/?status=any"))) == 4
    assert len(tile_ids(client.get("/?status=queued"))) == 1


def test_thumbnails_never_full_size_files(client, session):
    add_images(session, ["a"] * 3, thumb_key="jobs/x.thumb.webp", object_key="jobs/x.png")
    scan = PageScan(client.get("/").get_data(as_text=True))
    assert len(scan.images) == 3
    assert all(re.fullmatch(r"/api/v1/images/\d+/thumbnail", src) for src in scan.images)


def test_prompts_are_text_everywhere(client, session):
    images = add_images(session, HOSTILE, status="succeeded", negative_prompt=HOSTILE[1])
    add_job_row(session, 1, HOSTILE)
    session.commit()
    pages = [client.get("/"), client.get(f"/images/{images[0].id}"), client.get(f"/images/{images[1].id}")]
    pages += [client.get("/jobs"), client.get("/?q=" + HOSTILE[1]), client.post("/jobs", data={"prompts": HOSTILE[0]})]
    for response in pages:
        html = response.get_data(as_text=True)
        assert "<script>alert" not in html and "<img src=x" not in html
        scan = PageScan(html)
        scan.assert_csp_clean()
        assert "x" not in scan.images
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[0].get_data(as_text=True)
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in pages[2].get_data(as_text=True)


def test_every_page_is_csp_clean(client, session):
    image = add_images(session, ["a cat"])[0]
    for url in [
        "/",
        "/?q=cat&status=any",
        f"/images/{image.id}",
        "/jobs",
        f"/jobs?from_image={image.id}",
        "/images/999",
    ]:
        PageScan(client.get(url).get_data(as_text=True)).assert_csp_clean()
    assert client.get("/static/gallery.js").mimetype in {"text/javascript", "application/javascript"}
    assert client.get("/static/gallery.css").mimetype == "text/css"


def test_keyset_pages_forward_and_back(client, session):
    images = add_images(session, [f"cat {n}" for n in range(100)])
    newest_first = [image.id for image in reversed(images)]
    first = client.get("/?q=cat")
    assert tile_ids(first) == newest_first[:48]
    older = re.search(r'rel="next" class="older" href="([^"]+)"', first.get_data(as_text=True)).group(1)
    older = older.replace("&amp;", "&")
    assert link_args(older) == {"q": "cat", "before": str(newest_first[47])}
    second = client.get(older)
    assert tile_ids(second) == newest_first[48:96]
    third = client.get(f"/?q=cat&before={newest_first[95]}")
    assert tile_ids(third) == newest_first[96:] and 'rel="next"' not in third.get_data(as_text=True)
    newer = re.search(r'rel="prev" href="([^"]+)"', second.get_data(as_text=True)).group(1).replace("&amp;", "&")
    assert link_args(newer) == {"q": "cat", "after": str(newest_first[48])}
    assert tile_ids(client.get(newer)) == newest_first[:48]
    assert tile_ids(client.get("/?before=junk")) == newest_first[:48]


def test_filters_live_in_the_url(client, session):
    now = datetime.now(UTC)
    old = add_images(session, ["old one"], queued_at=now - timedelta(days=10), seed=7, width=128, height=64)
    job = add_images(session, ["this job", "this job too"], model="other")
    add_images(session, ["failed one"], status="failed", error="boom")
    day = (now - timedelta(days=10)).date().isoformat()
    assert tile_ids(client.get(f"/?job={job[0].job_id}")) == [job[1].id, job[0].id]
    assert tile_ids(client.get("/?model=other")) == [job[1].id, job[0].id]
    assert tile_ids(client.get("/?size=128x64")) == [old[0].id]
    assert tile_ids(client.get("/?size=128 x 64")) == [old[0].id]
    assert tile_ids(client.get("/?seed=7")) == [old[0].id]
    assert tile_ids(client.get(f"/?from={day}&to={day}")) == [old[0].id]
    assert len(tile_ids(client.get(f"/?to={day}&status=any"))) == 1
    assert len(tile_ids(client.get(f"/?from={now.date().isoformat()}"))) == 2
    assert len(tile_ids(client.get("/?status=failed"))) == 1
    # The form shows the view it is filtering by, so a bookmarked URL restores it.
    html = client.get("/?model=other&seed=7&size=128x64&q=cat").get_data(as_text=True)
    # The model filter is a list of the farm's models; a name not among them stays chosen.
    assert '<option value="other" selected>other</option>' in html and 'value="128x64"' in html


def test_bad_filters_are_reported_not_raised(client, session):
    add_images(session, ["a"])
    response = client.get("/?seed=abc&size=big&status=weird&from=yesterday&job=-1")
    assert response.status_code == 400 and response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    for field in ("seed", "size", "status", "from", "job"):
        assert f"<strong>{field}</strong>" in html
    assert len(tile_ids(response)) == 1  # the rest of the view still works


def test_image_page_shows_every_parameter_and_the_png_infotext(client, session, settings):
    image = add_images(
        session,
        ["a lighthouse at dusk"],
        negative_prompt="blurry, low quality",
        seed=4242,
        steps=12,
        guidance_scale=6.5,
        scheduler="DPM++ 2M Karras",
        width=64,
        height=64,
        model_hash="3b1c9d0e2a",
        worker="cpu0@host",
        render_seconds=1.234,
        object_key="jobs/00000001/0.png",
        thumb_key="jobs/00000001/0.thumb.webp",
    )[0]
    infotext = (
        "a lighthouse at dusk\nNegative prompt: blurry, low quality\nSteps: 12, Sampler: DPM++ 2M Karras, "
        "CFG scale: 6.5, Seed: 4242, Size: 64x64, Model hash: 3b1c9d0e2a, Model: tiny, Version: sdfarm"
    )
    metadata = PngInfo()
    metadata.add_text("parameters", infotext)
    buffer = io.BytesIO()
    PILImage.new("RGB", (64, 64)).save(buffer, format="PNG", pnginfo=metadata)
    LocalImageStore(settings.resolved_object_dir).put(image.object_key, buffer.getvalue())

    html = client.get(f"/images/{image.id}").get_data(as_text=True)
    params = dict(re.findall(r'data-param="(\w+)">([^<]*)<', html))
    assert params["prompt"] == "a lighthouse at dusk"
    assert params["negative_prompt"] == "blurry, low quality"
    assert (params["seed"], params["steps"], params["guidance_scale"]) == ("4242", "12", "6.5")
    assert (params["sampler"], params["size"], params["model"].strip()) == ("DPM++ 2M Karras", "64x64", "tiny")
    assert (params["model_hash"], params["worker"], params["render_seconds"]) == ("3b1c9d0e2a", "cpu0@host", "1.23 s")
    assert f'href="/api/v1/images/{image.id}/file?download=1"' in html
    assert f'<img src="/api/v1/images/{image.id}/file"' in html
    textarea = re.search(r'<textarea id="infotext"[^>]*>([^<]*)</textarea>', html).group(1)
    assert textarea == infotext.replace('"', "&#34;")


def test_image_page_of_an_unfinished_image_builds_infotext_from_the_row(client, session):
    image = add_images(session, ["queued thing"], status="queued", seed=5, scheduler="euler_a")[0]
    html = client.get(f"/images/{image.id}").get_data(as_text=True)
    textarea = re.search(r'<textarea id="infotext"[^>]*>([^<]*)</textarea>', html).group(1)
    parsed = parse_infotext(textarea)
    assert (parsed["prompt"], parsed["seed"], parsed["sampler"], parsed["steps"]) == ("queued thing", 5, "Euler a", 4)
    assert "download=1" not in html


def test_gallery_404s_are_html_and_the_api_keeps_json(client):
    page = client.get("/images/424242")
    assert page.status_code == 404 and page.mimetype == "text/html" and "no image with id 424242" in page.text
    api = client.get("/api/v1/images/424242")
    assert api.status_code == 404 and api.json["error"]["message"] == "no image with id 424242"
    assert client.get("/no/such/page").json["error"]["status"] == 404
    assert client.post("/api/v1/jobs", data="x", content_type="text/plain").json["error"]["status"] == 415


def test_jobs_page_lists_jobs_with_progress_and_cancel(client, session):
    done = add_images(session, ["finished"] * 2)
    running = add_images(session, ["busy"] * 4, status="queued")
    html = client.get("/jobs").get_data(as_text=True)
    assert html.index(f'id="job-{running[0].job_id}"') < html.index(f'id="job-{done[0].job_id}"')
    assert f'data-job-url="/api/v1/jobs/{running[0].job_id}?images=0"' in html
    assert f'data-cancel-url="/api/v1/jobs/{running[0].job_id}/cancel"' in html
    assert f'data-cancel-url="/api/v1/jobs/{done[0].job_id}/cancel"' not in html
    assert re.search(r'<progress max="1" value="1.0"[^>]*>100%</progress>', html)
    assert re.search(r'<progress max="1" value="0.0"[^>]*>0%</progress>', html)
