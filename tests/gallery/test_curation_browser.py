"""Curation in a real headless Chromium: selection (click, shift-click, all matching), bulk actions,
boards, delete and undo, ratings on cards, and the image page's keyboard. Rows are written straight
to the database (no worker needed); the pages only talk to the JSON API."""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Iterator

import pytest
import redis
from PIL import Image as PILImage
from sqlalchemy.orm import Session

from api import create_app
from models import Image
from models.db import make_engine, make_session_factory
from models.image_store import LocalImageStore, open_image_store
from sdfarm.migrate import upgrade
from tests.conftest import make_settings
from tests.factories import add_images
from tests.gallery.browser import WATCH_CSP, LiveFarm, serve
from worker.exporter import ExportRunner

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def live_farm(tmp_path_factory, redis_server, models_dir) -> Iterator[LiveFarm]:
    """The app on a real HTTP server in a thread, on SQLite (no worker: the rows are written directly)."""
    data_dir = tmp_path_factory.mktemp("curation-farm")
    url = f"sqlite:///{data_dir / 'sdfarm.db'}"
    redis.Redis.from_url(redis_server.url).flushall()
    upgrade(url)
    settings = make_settings(data_dir, url, redis_server.url, models_dir)
    app = create_app(settings)
    try:
        with serve(app) as base_url:
            yield LiveFarm(base_url, settings, fleet=None)
    finally:
        app.extensions["sdfarm"].engine.dispose()


@pytest.fixture
def page(browser, live_farm):
    """A fresh page; no dialog, page error or CSP violation may happen in it."""
    context = browser.new_context(base_url=live_farm.base_url, viewport={"width": 1280, "height": 900})
    context.add_init_script(WATCH_CSP)
    tab = context.new_page()
    tab.set_default_timeout(20_000)
    problems: list[str] = []
    tab.on("dialog", lambda dialog: (problems.append(dialog.message), dialog.dismiss()))
    tab.on("pageerror", lambda error: problems.append(str(error)))
    # A form with errors answers 422 and a taken board name 409, by design (as the API does); Chromium
    # logs those statuses as console errors.
    expected = ("status of 422", "status of 409")
    tab.on(
        "console",
        lambda message: (
            message.type == "error"
            and not any(status in message.text for status in expected)
            and problems.append(message.text)
        ),
    )
    yield tab
    violations = tab.evaluate("() => window.__cspViolations || []")
    context.close()
    assert violations == [], f"CSP violations: {violations}"
    assert problems == [], f"page problems: {problems}"


def add(live_farm: LiveFarm, prompts: list[str], **values) -> list[int]:
    """Image rows of a new job, ids newest first (as the gallery shows them)."""
    engine = make_engine(live_farm.settings.resolved_database_url)
    with Session(engine) as session:
        ids = [image.id for image in add_images(session, prompts, **values)]
    engine.dispose()
    return ids[::-1]


def with_files(live_farm: LiveFarm, ids: list[int]) -> None:
    """Give rows a real PNG and thumbnail in the farm's store, as a worker would."""
    store = LocalImageStore(live_farm.settings.resolved_object_dir)
    engine = make_engine(live_farm.settings.resolved_database_url)
    with Session(engine) as session:
        for image_id in ids:
            image = session.get(Image, image_id)
            image.object_key, image.thumb_key = f"test/{image_id}.png", f"test/{image_id}.thumb.webp"
            for key, kind in ((image.object_key, "PNG"), (image.thumb_key, "WEBP")):
                buffer = io.BytesIO()
                PILImage.new("RGB", (64, 64), (20 * (image_id % 10), 90, 160)).save(buffer, format=kind)
                store.put(key, buffer.getvalue(), durable=False)
        session.commit()
    engine.dispose()


def ratings(live_farm: LiveFarm, query: str) -> dict[int, int]:
    images = live_farm.api(f"/api/v1/images?limit=500&{query}")["images"]
    return {image["id"]: image["rating"] for image in images}


def tile(page, image_id: int):
    return page.locator(f'#grid .tile[data-image-id="{image_id}"]')


def test_click_and_shift_click_select_a_range_then_star_it(page, live_farm):
    ids = add(live_farm, [f"rangeword {n}" for n in range(10)])
    page.goto("/?q=rangeword")
    assert page.locator("#selection-bar .bulk").is_hidden()
    tile(page, ids[2]).locator(".pick input").click()
    tile(page, ids[6]).locator(".pick input").click(modifiers=["Shift"])
    assert page.locator('#selection-bar [data-field="selected"]').inner_text() == "5 images selected"
    tile(page, ids[4]).locator(".pick input").click()  # a plain click takes one out again
    assert page.locator("#grid .tile.selected").count() == 4
    page.click('#selection-bar [data-bulk="rate"][data-rating="1"]')
    page.wait_for_selector("#flash:not([hidden])")
    assert page.locator('#flash [data-field="message"]').inner_text() == "4 images starred"
    starred = {image_id for image_id, rating in ratings(live_farm, "q=rangeword").items() if rating == 1}
    assert starred == {ids[2], ids[3], ids[5], ids[6]}
    assert page.locator('#grid .tile[data-rating="1"]').count() == 4


def test_select_all_matching_sends_the_query_not_the_ids(page, live_farm):
    add(live_farm, [f"manyword {n}" for n in range(130)])  # more than two pages of 48
    add(live_farm, ["manyword but failed"], status="failed")
    page.goto("/?q=manyword")
    assert page.locator("#grid .tile").count() == 48
    page.click('#selection-bar [data-select="matching"]')
    assert page.locator("#grid .tile.selected").count() == 48
    with page.expect_request(lambda request: request.url.endswith("/api/v1/images/bulk")) as sent:
        page.click('#selection-bar [data-bulk="rate"][data-rating="-1"]')
    body = json.loads(sent.value.post_data)
    assert body == {"query": {"q": "manyword"}, "action": "rate", "rating": -1}
    page.wait_for_selector("#flash:not([hidden])")
    assert page.locator('#flash [data-field="message"]').inner_text() == "130 images rejected"
    assert set(ratings(live_farm, "q=manyword&status=succeeded").values()) == {-1}
    assert set(ratings(live_farm, "q=manyword&status=failed").values()) == {0}  # not in the view
    page.goto("/?q=manyword&rating=not-rejected")
    assert page.locator("#grid .tile").count() == 0


def test_boards_made_filled_and_filtered_from_the_page(page, live_farm):
    ids = add(live_farm, [f"boardword {n}" for n in range(5)])
    page.goto("/?q=boardword")
    for image_id in ids[:3]:
        tile(page, image_id).locator(".pick input").click()
    page.select_option("#selection-bar .board-choice", "new")
    page.fill("#selection-bar .new-board", "Keepers")
    page.click('#selection-bar [data-bulk="add_to_board"]')
    page.wait_for_selector("#flash:not([hidden])")
    assert page.locator('#flash [data-field="message"]').inner_text() == "3 images added to Keepers"
    board = next(b for b in live_farm.api("/api/v1/boards")["boards"] if b["name"] == "Keepers")
    assert board["images"] == 3

    page.select_option("form.filters select[name=board]", str(board["id"]))
    page.click("form.filters button[type=submit]")
    page.wait_for_url(re.compile(rf"board={board['id']}"))
    shown = [int(i) for i in page.locator("#grid .tile").evaluate_all("ts => ts.map(t => t.dataset.imageId)")]
    assert shown == ids[:3]

    # On the image page, a board is a checkbox.
    page.goto(f"/images/{ids[0]}")
    box = page.locator(f'#curate input[data-board-id="{board["id"]}"]')
    assert box.is_checked()
    box.uncheck()
    page.wait_for_function(
        "() => document.querySelector('#flash [data-field=message]').textContent.startsWith('Removed')"
    )
    assert live_farm.api(f"/api/v1/images/{ids[0]}")["boards"] == []

    # Filtered by a board, the gallery can rename it; a taken name is refused and changes nothing.
    live_farm.http.post(live_farm.base_url + "/api/v1/boards", json={"name": "Taken"}, timeout=10).raise_for_status()
    page.goto(f"/?board={board['id']}")
    page.fill("#board-bar input[name=name]", "Taken")
    page.click("#board-bar button[type=submit]")
    page.wait_for_selector("#flash.error:not([hidden])")
    assert "already taken" in page.locator('#flash [data-field="message"]').inner_text()
    page.fill("#board-bar input[name=name]", "Best of boardword")
    page.click("#board-bar button[type=submit]")
    renamed = "() => document.querySelector('#flash [data-field=message]').textContent.startsWith('Board renamed')"
    page.wait_for_function(renamed)
    assert page.locator('#flash [data-field="message"]').inner_text() == "Board renamed to Best of boardword"
    assert page.locator("form.filters select[name=board] option:checked").inner_text() == "Best of boardword"
    assert live_farm.api(f"/api/v1/boards/{board['id']}")["name"] == "Best of boardword"


def test_delete_then_undo(page, live_farm):
    ids = add(live_farm, [f"deleteword {n}" for n in range(4)])
    page.goto("/?q=deleteword")
    tile(page, ids[0]).locator(".pick input").click()
    tile(page, ids[1]).locator(".pick input").click()
    page.click('#selection-bar [data-bulk="delete"]')
    page.wait_for_selector("#flash:not([hidden]) button.undo:not([hidden])")
    assert page.locator('#flash [data-field="message"]').inner_text() == "2 images deleted"
    assert page.locator("#grid .tile").count() == 2
    trash = {image["id"] for image in live_farm.api("/api/v1/images?deleted=only&q=deleteword")["images"]}
    assert trash == {ids[0], ids[1]}

    page.click("#flash button.undo")
    page.wait_for_function(
        "() => document.querySelector('#flash [data-field=message]').textContent === '2 images restored'"
    )
    assert page.locator("#grid .tile").count() == 4
    assert live_farm.api("/api/v1/images?deleted=only&q=deleteword")["images"] == []


def test_stars_on_cards(page, live_farm):
    ids = add(live_farm, ["cardword one", "cardword two"])
    page.goto("/?q=cardword")
    star = tile(page, ids[1]).locator("button.star")
    tile(page, ids[1]).hover()
    star.click()
    page.wait_for_function(f"() => document.querySelector('.tile[data-image-id=\"{ids[1]}\"]').dataset.rating === '1'")
    assert star.get_attribute("aria-pressed") == "true"
    assert ratings(live_farm, "q=cardword") == {ids[0]: 0, ids[1]: 1}
    star.click()  # pressing it again clears the star
    page.wait_for_function(f"() => document.querySelector('.tile[data-image-id=\"{ids[1]}\"]').dataset.rating === '0'")
    assert ratings(live_farm, "q=cardword")[ids[1]] == 0


def test_keyboard_on_the_image_page_moves_within_the_query_rates_deletes_and_undoes(page, live_farm):
    ids = add(live_farm, [f"keyword {n}" for n in range(4)])
    add(live_farm, ["something else entirely"])  # newer, but not in the view
    page.goto("/?q=keyword")
    tile(page, ids[0]).locator("a").click()
    page.wait_for_url(f"**/images/{ids[0]}?q=keyword")
    assert page.locator(".image-nav .newer.disabled").count() == 1  # the newest of the view
    page.keyboard.press("ArrowRight")
    page.wait_for_url(f"**/images/{ids[1]}?q=keyword")
    page.keyboard.press("ArrowLeft")
    page.wait_for_url(f"**/images/{ids[0]}?q=keyword")
    page.keyboard.press("ArrowRight")
    page.wait_for_url(f"**/images/{ids[1]}?q=keyword")

    page.keyboard.press("s")
    page.wait_for_function("() => document.getElementById('curate').dataset.rating === '1'")
    assert live_farm.api(f"/api/v1/images/{ids[1]}")["rating"] == 1
    page.keyboard.press("x")
    page.wait_for_function("() => document.getElementById('curate').dataset.rating === '-1'")
    assert live_farm.api(f"/api/v1/images/{ids[1]}")["rating"] == -1
    page.keyboard.press("0")
    page.wait_for_function("() => document.getElementById('curate').dataset.rating === '0'")

    page.keyboard.press("Delete")  # deleted; on to the next image of the view, with an undo
    page.wait_for_url(f"**/images/{ids[2]}?q=keyword")
    page.wait_for_selector("#flash:not([hidden]) button.undo:not([hidden])")
    assert live_farm.api(f"/api/v1/images/{ids[1]}")["deleted_at"] is not None
    # The deleted image has left the view: "newer" skips it.
    assert page.locator(".image-nav a.newer").get_attribute("href") == f"/images/{ids[0]}?q=keyword"
    page.keyboard.press("u")
    page.wait_for_url(f"**/images/{ids[1]}?q=keyword")
    assert live_farm.api(f"/api/v1/images/{ids[1]}")["deleted_at"] is None


def test_zoom_compare_and_use_as_init_image(page, live_farm):
    ids = add(live_farm, ["compareword one", "compareword two"], seed=7)
    with_files(live_farm, ids)
    page.goto("/?q=compareword")
    tile(page, ids[0]).locator(".pick input").click()
    assert page.locator("#selection-bar [data-compare]").is_hidden()
    tile(page, ids[1]).locator(".pick input").click()
    page.click("#selection-bar [data-compare]")
    page.wait_for_url(f"**/compare?ids={ids[0]},{ids[1]}")
    assert page.locator(".compare .side").count() == 2

    page.goto(f"/images/{ids[0]}")
    page.click("[data-zoom]")
    assert page.locator("#full.actual-size").count() == 1
    page.keyboard.press("z")
    assert page.locator("#full.actual-size").count() == 0

    page.click('[data-action="use-as-init"]')
    page.wait_for_url(f"**/jobs?init_image={ids[0]}#new-job")
    assert page.input_value("#f-init_image_id") == str(ids[0])
    assert page.input_value("#f-prompts") == "compareword two"  # ids are newest first
    page.fill("#f-strength", "0.4")
    page.fill("#f-loras", "nosuchlora:0.5")
    page.click("#new-job button[type=submit]")
    assert "nosuchlora" in page.locator("#error-loras").inner_text()  # the API's own check, by the field
    page.fill("#f-loras", "")
    page.click("#new-job button[type=submit]")
    page.wait_for_url(re.compile(r"/jobs\?submitted=\d+"))
    job_id = int(re.search(r"submitted=(\d+)", page.url).group(1))
    job = live_farm.api(f"/api/v1/jobs/{job_id}")
    assert job["spec"]["init_image_id"] == ids[0] and job["spec"]["strength"] == 0.4


def test_the_form_shows_the_chosen_models_defaults(page, live_farm):
    page.goto("/jobs")
    page.select_option("#f-model", "tiny")
    assert page.get_attribute("#f-width", "placeholder") == "64"
    assert page.get_attribute("#f-steps", "placeholder") == "20"
    assert page.locator('#f-scheduler option[value=""]').inner_text().startswith("model default (")


def test_export_the_selection_from_the_gallery_and_download_it(page, live_farm, tmp_path):
    ids = add(live_farm, ["exportword one", "exportword two", "exportword three"])
    with_files(live_farm, ids)
    page.goto("/?q=exportword")
    tile(page, ids[0]).locator(".pick input").click()
    tile(page, ids[2]).locator(".pick input").click()
    page.select_option("#selection-bar .export-format", "zip")
    with page.expect_request(lambda request: request.url.endswith("/api/v1/exports")) as sent:
        page.click("#selection-bar [data-export]")
    assert json.loads(sent.value.post_data) == {"image_ids": [ids[0], ids[2]], "format": "zip"}
    page.wait_for_function("() => /Export \\d+:? queued/.test(document.querySelector('#flash').textContent)")

    # The worker side makes it (the supervisor's export loop, one pass here); the page notices.
    engine = make_engine(live_farm.settings.resolved_database_url)
    runner = ExportRunner(make_session_factory(engine), open_image_store(live_farm.settings), "exports@test", 5.0)
    assert runner.run_once() == 1
    engine.dispose()
    link = page.locator("#flash .downloads a")
    link.wait_for()
    assert "ready: 2 images" in page.locator('#flash [data-field="message"]').inner_text()
    with page.expect_download() as download:
        link.click()
    target = tmp_path / "export.zip"
    download.value.save_as(target)
    with zipfile.ZipFile(target) as archive:
        assert len([name for name in archive.namelist() if name.endswith(".png")]) == 2

    # With "all matching", the view's filters travel instead of ids.
    page.click('#selection-bar [data-select="matching"]')
    with page.expect_request(lambda request: request.url.endswith("/api/v1/exports")) as sent:
        page.click("#selection-bar [data-export]")
    assert json.loads(sent.value.post_data) == {"q": "exportword", "format": "zip"}
