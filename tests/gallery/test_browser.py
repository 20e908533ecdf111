"""The gallery in a real headless Chromium, against a real HTTP server and a real worker (SQLite)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
import redis
from sqlalchemy.orm import Session

from api import create_app
from models.db import make_engine
from models.infotext import parse_infotext
from sdfarm.farm_processes import WorkerFleet
from sdfarm.migrate import upgrade
from tests.conftest import make_settings
from tests.factories import add_images
from tests.gallery.browser import WATCH_CSP, LiveFarm, save_screenshot, serve

pytestmark = pytest.mark.browser

HOSTILE = '<script>window.__pwned = 1; alert(1)</script>"><img src=x onerror="window.__pwned = 1; alert(2)"> hostile'
STEPS = 12  # enough for the shapes model to draw clean shapes in the screenshots
PROMPTS = [
    "a yellow triangle on a blue background, a lighthouse",
    "a green square on a white background",
    "a red circle on a blue background",
]
IMAGES_PER_PROMPT = 4


@pytest.fixture(scope="module")
def live_farm(tmp_path_factory, redis_server, models_dir) -> Iterator[LiveFarm]:
    """The app on a real HTTP server in a thread, and one `sdfarm worker` process, on SQLite."""
    data_dir = tmp_path_factory.mktemp("gallery-farm")
    url = f"sqlite:///{data_dir / 'sdfarm.db'}"
    redis.Redis.from_url(redis_server.url).flushall()
    upgrade(url)
    # The shipped shapes model, so the pages (and the README screenshots) show what the prompts say.
    settings = make_settings(data_dir, url, redis_server.url, models_dir, model="shapes")
    fleet = WorkerFleet(settings, data_dir / "worker.log", "--gpus", "none").start()
    app = create_app(settings)
    try:
        with serve(app) as base_url:
            yield LiveFarm(base_url, settings, fleet)
    finally:
        fleet.stop()
        app.extensions["sdfarm"].engine.dispose()


@pytest.fixture
def page(browser, live_farm):
    """A fresh page that records dialogs, page errors and CSP violations; none may happen."""
    context = browser.new_context(base_url=live_farm.base_url, viewport={"width": 1280, "height": 800})
    context.add_init_script(WATCH_CSP)
    tab = context.new_page()
    tab.set_default_timeout(30_000)
    dialogs: list[str] = []
    errors: list[str] = []

    def on_dialog(dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    tab.on("dialog", on_dialog)
    tab.on("pageerror", lambda error: errors.append(str(error)))

    def on_console(message) -> None:
        # A form with errors answers 422 by design (as the API does), and a job's event stream 503 when
        # the server's streams are busy (the page then polls); Chromium logs both statuses.
        expected = "status of 422" in message.text or (
            "status of 503" in message.text and "/events" in (message.location or {}).get("url", "")
        )
        if message.type == "error" and not expected:
            errors.append(message.text)

    tab.on("console", on_console)
    yield tab
    violations = tab.evaluate("() => window.__cspViolations || []")
    context.close()
    assert dialogs == [], f"a dialog opened: {dialogs}"
    assert violations == [], f"CSP violations: {violations}"
    assert errors == [], f"page errors: {errors}"


@pytest.fixture(scope="module")
def finished_job(live_farm) -> dict:
    """A finished job with the test prompts and a script-bearing one (submitted by the API)."""
    job_id = live_farm.submit({"prompts": [HOSTILE, *PROMPTS], "num_images": 2, "steps": STEPS, "seed": 500})
    return live_farm.wait_for_job(job_id)


def test_submit_from_the_form_and_watch_progress_and_thumbnails(page, live_farm):
    page.goto("/jobs")
    page.fill("#f-prompts", "\n".join(PROMPTS))
    page.fill("#f-num_images", str(IMAGES_PER_PROMPT))
    page.fill("#f-steps", str(STEPS))
    page.fill("#f-seed", "1000")
    page.select_option("#f-scheduler", "DDIM")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/jobs\?submitted=\d+#job-\d+$"))
    job_id = int(re.search(r"submitted=(\d+)", page.url).group(1))
    card = page.locator(f"#job-{job_id}")
    total = len(PROMPTS) * IMAGES_PER_PROMPT
    assert card.locator('[data-field="total"]').inner_text() == str(total)

    # Watch the bar: the page follows the job's event stream (not polling), so every change seen here came from it.
    seen: list[float] = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        value = card.locator("progress").evaluate("bar => bar.value")
        if not seen or value != seen[-1]:
            seen.append(value)
        if value >= 1:
            break
        time.sleep(0.05)
    assert seen[-1] == 1, f"progress stopped at {seen}"
    assert seen == sorted(seen)
    assert card.get_attribute("data-streaming") == "true"
    assert card.locator('[data-field="percent"]').inner_text() == "100%"
    page.wait_for_function(
        "id => document.querySelector(`#job-${id} [data-field=status]`).textContent === 'succeeded'", arg=job_id
    )
    assert card.locator('[data-field="succeeded"]').inner_text() == str(total)
    assert card.locator("button.cancel").count() == 0

    # Thumbnails appear (WebP from the thumbnail URL) and have loaded.
    thumbnails = card.locator(".thumbs img")
    page.wait_for_function(
        "id => [...document.querySelectorAll(`#job-${id} .thumbs img`)]"
        ".filter(i => i.complete && i.naturalWidth).length === 8",
        arg=job_id,
    )
    sources = thumbnails.evaluate_all("images => images.map(image => image.getAttribute('src'))")
    assert all(re.fullmatch(r"/api/v1/images/\d+/thumbnail", src) for src in sources)
    save_screenshot(page, "jobs.png")

    job = live_farm.api(f"/api/v1/jobs/{job_id}")
    assert {(image["prompt"], image["sampler"], image["steps"]) for image in job["images"]} == {
        (prompt, "DDIM", STEPS) for prompt in PROMPTS
    }


def test_gallery_search_shows_only_matching_images(page, live_farm, finished_job):
    page.goto("/")
    tiles = page.locator("#grid > .tile")
    assert tiles.count() >= len(finished_job["images"])
    page.wait_for_function("() => [...document.querySelectorAll('#grid img')].slice(0, 8).every(i => i.complete)")
    save_screenshot(page, "gallery.png")

    # Curating: a starred card and a selection of three, with the bulk actions (README's picture).
    first = tiles.nth(0)
    first.hover()
    first.locator("button.star").click()
    page.wait_for_function("() => document.querySelector('#grid .tile').dataset.rating === '1'")
    for index in (1, 2, 3):
        tiles.nth(index).locator(".pick input").click()
    assert page.locator('#selection-bar [data-field="selected"]').inner_text() == "3 images selected"
    page.mouse.move(0, 0)
    save_screenshot(page, "curation.png")
    page.click('#selection-bar [data-select="none"]')

    page.fill("input[name=q]", "LIGHTHOUSE")
    page.press("input[name=q]", "Enter")
    page.wait_for_url(re.compile(r"/\?q=LIGHTHOUSE$"))  # empty filters are left out of the shared URL
    captions = page.locator("#grid .caption").all_inner_texts()
    everything = live_farm.api("/api/v1/images?status=succeeded&limit=500")["images"]
    expected = [image["id"] for image in everything if "lighthouse" in image["prompt"].lower().split()]
    assert captions and set(captions) == {"a yellow triangle on a blue background, a lighthouse"}
    assert [int(i) for i in tiles.evaluate_all("ts => ts.map(t => t.dataset.imageId)")] == expected

    # The URL is the view: opening it anew shows the same images, with the search box filled in.
    page.goto(page.url)
    assert page.input_value("input[name=q]") == "LIGHTHOUSE"
    assert page.locator("#grid .caption").all_inner_texts() == captions

    page.goto(f"/?job={finished_job['id']}&q=square")
    assert page.locator("#grid .caption").all_inner_texts() == ["a green square on a white background"] * 2


def test_image_page_parameters_copy_and_make_more(page, live_farm, finished_job):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_farm.base_url)
    image = next(
        i for i in finished_job["images"] if i["prompt"] == "a yellow triangle on a blue background, a lighthouse"
    )
    page.goto(f"/?job={finished_job['id']}&q=lighthouse")
    page.click(f'#grid .tile[data-image-id="{image["id"]}"] a')
    page.wait_for_url(re.compile(rf"/images/{image['id']}\?"))  # the link keeps the view (prev/next)

    def param(name: str) -> str:
        return page.locator(f'[data-param="{name}"]').first.inner_text().strip()

    assert param("prompt") == "a yellow triangle on a blue background, a lighthouse"
    assert (param("seed"), param("steps"), param("size")) == (str(image["seed"]), str(STEPS), "64x64")
    assert param("guidance_scale") == str(image["guidance_scale"])
    assert param("sampler") == image["sampler"]
    assert param("model").startswith("shapes") and param("model_hash") == image["model_hash"]
    assert param("worker") == image["worker"] and param("worker").startswith("cpu0@")
    assert re.fullmatch(r"\d+\.\d\d s", param("render_seconds"))
    assert page.locator(".full img").evaluate("img => img.complete && img.naturalWidth") == 64
    download = page.locator("a[download]")
    assert download.get_attribute("href") == f"/api/v1/images/{image['id']}/file?download=1"

    page.click("button[data-copy-from=infotext]")
    page.wait_for_function("() => document.querySelector('.copy-status').textContent === 'Copied'")
    copied = page.evaluate("() => navigator.clipboard.readText()")
    assert copied == page.input_value("#infotext")
    parsed = parse_infotext(copied)
    assert (parsed["prompt"], parsed["seed"], parsed["steps"]) == (PROMPTS[0], image["seed"], STEPS)

    page.fill("form.more input[name=num_images]", "2")
    page.click("form.more button[type=submit]")
    page.wait_for_url(re.compile(r"/jobs\?submitted=\d+#job-\d+$"))
    new_job_id = int(re.search(r"submitted=(\d+)", page.url).group(1))
    new_job = live_farm.api(f"/api/v1/jobs/{new_job_id}")
    assert new_job["total"] == 2
    assert {(i["prompt"], i["steps"], i["sampler"], i["guidance_scale"], i["width"]) for i in new_job["images"]} == {
        (PROMPTS[0], STEPS, image["sampler"], image["guidance_scale"], 64)
    }
    assert image["seed"] not in {i["seed"] for i in new_job["images"]}


def test_a_script_bearing_prompt_is_shown_as_text_and_never_runs(page, finished_job):
    hostile = next(i for i in finished_job["images"] if i["prompt"] == HOSTILE)
    for url in ["/?q=hostile", f"/images/{hostile['id']}", "/jobs"]:
        page.goto(url)
        page.wait_for_load_state("load")
        assert page.evaluate("() => window.__pwned") is None
        assert page.locator('img[src="x"]').count() == 0
        assert page.locator("main script").count() == 0
    page.goto("/?q=hostile")
    assert set(page.locator("#grid .caption").all_inner_texts()) == {HOSTILE}
    page.goto(f"/images/{hostile['id']}")
    assert page.locator('[data-param="prompt"]').inner_text() == HOSTILE
    page.goto("/jobs")
    assert HOSTILE in page.locator(f"#job-{finished_job['id']} .prompt").inner_text()


def test_cancel_button_stops_a_job(page, live_farm):
    page.goto("/jobs")
    page.fill("#f-prompts", "a slow job to cancel")
    page.fill("#f-num_images", "24")
    page.fill("#f-steps", "25")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/jobs\?submitted=\d+"))
    job_id = int(re.search(r"submitted=(\d+)", page.url).group(1))
    page.click(f"#job-{job_id} button.cancel")
    page.wait_for_function(
        "id => document.querySelector(`#job-${id} [data-field=status]`).textContent === 'canceled'",
        arg=job_id,
        timeout=120_000,
    )
    job = live_farm.api(f"/api/v1/jobs/{job_id}?images=0")
    assert job["status"] == "canceled" and job["canceled"] >= 24 - 2 * live_farm.settings.max_batch
    assert page.locator(f"#job-{job_id} button.cancel").count() == 0


def test_scrolling_down_loads_older_pages(page, live_farm):
    engine = make_engine(live_farm.settings.resolved_database_url)
    with Session(engine) as session:
        rows = add_images(session, [f"scroll test {n}" for n in range(100)], status="failed", error="no file")
        newest_first = [row.id for row in reversed(rows)]
    engine.dispose()
    page.goto("/?status=failed&q=scroll")
    tiles = page.locator("#grid > .tile")
    assert tiles.count() == 48
    for expected in (96, 100):
        page.locator("#pager").scroll_into_view_if_needed()
        page.wait_for_function("n => document.querySelectorAll('#grid > .tile').length === n", arg=expected)
    shown = [int(i) for i in tiles.evaluate_all("ts => ts.map(t => t.dataset.imageId)")]
    assert shown == newest_first
    assert page.locator("#pager a").count() == 0
    assert page.url.endswith("/?status=failed&q=scroll")  # the shared URL stays the view, not a page of it


def test_form_errors_show_next_to_their_fields(page, live_farm):
    page.goto("/jobs")
    page.fill("#f-prompts", "ok")
    page.fill("#f-width", "65")
    page.fill("#f-steps", "0")
    page.click("button[type=submit]")
    assert page.locator("#error-width").inner_text() == "must be a multiple of 8 (the VAE works on 8x8 pixel blocks)"
    assert page.locator("#error-steps").inner_text() == "Input should be greater than or equal to 1"
    assert page.input_value("#f-prompts") == "ok" and page.input_value("#f-width") == "65"
