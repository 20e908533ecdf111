"""Curation over the API on both databases: ratings, boards, bulk actions on ids and on queries,
soft delete with undo, the purge, tenancy and bad input."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import func, select

from api.auth import create_key
from models import BoardImage, Image
from models.board import Board
from models.curation import purge_deleted
from models.image_store import LocalImageStore
from tests.factories import add_images
from tests.farm_harness import REPO


@pytest.fixture
def sessions(app):
    return app.extensions["sdfarm"].sessions


@pytest.fixture
def rows(sessions):
    """Six finished images of cats and dogs, one still queued; ids oldest first."""
    with sessions() as session:
        images = add_images(session, ["a cat", "a big cat", "a dog", "a big dog", "a cat and a dog", "a bird"])
        queued = add_images(session, ["a queued cat"], status="queued")
        return [image.id for image in images] + [queued[0].id]


def listed(client, query: str = "", headers=None) -> list[int]:
    return [image["id"] for image in client.get(f"/api/v1/images?{query}", headers=headers).json["images"]]


def test_rate_one_image(client, rows):
    response = client.patch(f"/api/v1/images/{rows[0]}", json={"rating": 1})
    assert response.status_code == 200 and response.json["rating"] == 1
    client.patch(f"/api/v1/images/{rows[1]}", json={"rating": -1})
    assert client.get(f"/api/v1/images/{rows[0]}").json["rating"] == 1
    assert listed(client, "rating=1") == [rows[0]]
    assert listed(client, "rating=-1") == [rows[1]]
    assert set(listed(client, "rating=not-rejected")) == set(rows) - {rows[1]}
    assert client.patch(f"/api/v1/images/{rows[0]}", json={"rating": 0}).json["rating"] == 0
    assert listed(client, "rating=1") == []


@pytest.mark.parametrize(
    ("body", "field"),
    [({"rating": 2}, "rating"), ({"rating": "star"}, "rating"), ({}, "rating"), ({"rating": 1, "x": 1}, "x")],
)
def test_bad_ratings_name_the_field(client, rows, body, field):
    response = client.patch(f"/api/v1/images/{rows[0]}", json=body)
    assert response.status_code == 422
    assert field in {error["field"] for error in response.json["error"]["fields"]}


def test_boards_hold_images_by_id(client, rows):
    created = client.post("/api/v1/boards", json={"name": "  keepers "})
    assert created.status_code == 201 and created.json["name"] == "keepers" and created.json["images"] == 0
    board = created.json["id"]
    assert created.headers["Location"] == f"/api/v1/boards/{board}"
    added = client.post(f"/api/v1/boards/{board}/images", json={"image_ids": [rows[0], rows[2], rows[0]]})
    assert added.status_code == 200 and added.json["matched"] == 2
    again = client.post(f"/api/v1/boards/{board}/images", json={"image_ids": [rows[0], rows[3]]})
    assert again.json["matched"] == 1  # rows[0] was on it already
    assert listed(client, f"board_id={board}") == [rows[3], rows[2], rows[0]]
    assert client.get(f"/api/v1/images/{rows[0]}").json["boards"] == [board]
    assert client.get("/api/v1/boards").json["boards"][0] | {"created_at": None} == {
        "id": board,
        "name": "keepers",
        "images": 3,
        "images_url": f"/api/v1/images?board_id={board}",
        "created_at": None,
    }
    removed = client.delete(f"/api/v1/boards/{board}/images", json={"image_ids": [rows[2], rows[4]]})
    assert removed.json["matched"] == 1
    assert listed(client, f"board_id={board}") == [rows[3], rows[0]]
    assert client.delete(f"/api/v1/boards/{board}").json["images"] == 2
    assert client.get(f"/api/v1/boards/{board}").status_code == 404
    assert client.get(f"/api/v1/images/{rows[0]}").json["boards"] == []


def test_board_names_are_unique_and_bounded(client):
    assert client.post("/api/v1/boards", json={"name": "best"}).status_code == 201
    duplicate = client.post("/api/v1/boards", json={"name": "best"})
    assert duplicate.status_code == 409 and duplicate.json["error"]["fields"][0]["field"] == "name"
    for name in ["", "   ", "x" * 101, "tab\there", 5]:
        response = client.post("/api/v1/boards", json={"name": name})
        assert response.status_code == 422 and response.json["error"]["fields"][0]["field"] == "name", name
    assert client.post(f"/api/v1/boards/{2**62}/images", json={"image_ids": [1]}).status_code == 404


def test_a_board_is_renamed_with_its_images_and_a_taken_name_changes_nothing(client, rows):
    board = client.post("/api/v1/boards", json={"name": "cats"}).json["id"]
    client.post("/api/v1/boards", json={"name": "dogs"})
    client.post(f"/api/v1/boards/{board}/images", json={"image_ids": rows[:2]})
    renamed = client.patch(f"/api/v1/boards/{board}", json={"name": " felines "})
    assert renamed.status_code == 200 and (renamed.json["name"], renamed.json["images"]) == ("felines", 2)
    assert [b["name"] for b in client.get("/api/v1/boards").json["boards"]] == ["dogs", "felines"]
    taken = client.patch(f"/api/v1/boards/{board}", json={"name": "dogs"})
    assert taken.status_code == 409 and taken.json["error"]["fields"][0]["field"] == "name"
    assert client.get(f"/api/v1/boards/{board}").json["name"] == "felines"
    bad = [{"name": ""}, {"name": "x" * 101}, {"name": "a\x00b"}, {"name": 2**70}, {"name": "x" * 100_000}]
    for body in bad:
        response = client.patch(f"/api/v1/boards/{board}", json=body)
        assert response.status_code == 422 and response.json["error"]["fields"][0]["field"] == "name", body
    for body in [{}, {"name": "ok", "color": "red"}]:
        assert client.patch(f"/api/v1/boards/{board}", json=body).status_code == 422, body
    assert client.patch(f"/api/v1/boards/{2**62}", json={"name": "x"}).status_code == 404
    assert client.patch(f"/api/v1/boards/{2**70}", json={"name": "x"}).status_code == 404
    assert set(listed(client, f"board_id={board}")) == set(rows[:2])


def test_bulk_actions_on_a_query_touch_only_its_matches(client, rows):
    rated = client.post("/api/v1/images/bulk", json={"action": "rate", "rating": 1, "query": {"q": "cat"}})
    assert rated.status_code == 200 and rated.json["matched"] == 3  # the queued cat is not succeeded
    assert set(listed(client, "rating=1")) == {rows[0], rows[1], rows[4]}
    client.post("/api/v1/images/bulk", json={"action": "rate", "rating": -1, "query": {"q": "big", "rating": "1"}})
    assert set(listed(client, "rating=1")) == {rows[0], rows[4]} and listed(client, "rating=-1") == [rows[1]]

    board = client.post("/api/v1/boards", json={"name": "dogs"}).json["id"]
    body = {"action": "add_to_board", "board_id": board, "query": {"q": "dog", "status": "any"}}
    assert client.post("/api/v1/images/bulk", json=body).json["matched"] == 3
    assert set(listed(client, f"board_id={board}")) == {rows[2], rows[3], rows[4]}
    assert listed(client, f"board_id={board}&q=cat") == [rows[4]]
    body = {"action": "remove_from_board", "board_id": board, "query": {"board": board, "rating": "1"}}
    assert client.post("/api/v1/images/bulk", json=body).json["matched"] == 1
    assert set(listed(client, f"board_id={board}")) == {rows[2], rows[3]}


def test_delete_hides_until_undone_and_the_purge_removes_rows_and_files(app, client, sessions, rows):
    store = LocalImageStore(app.extensions["sdfarm"].settings.resolved_object_dir)
    with sessions() as session:
        for image_id in rows[:6]:
            key = f"jobs/test/{image_id}.png"
            store.put(key, b"png", durable=False)
            session.get(Image, image_id).object_key = key
        session.commit()
    board = client.post("/api/v1/boards", json={"name": "b"}).json["id"]
    client.post(f"/api/v1/boards/{board}/images", json={"image_ids": rows[:6]})

    deleted = client.post("/api/v1/images/bulk", json={"action": "delete", "query": {"q": "dog", "status": "any"}})
    assert deleted.status_code == 200 and deleted.json["matched"] == 3
    assert deleted.json["purge_after_seconds"] == app.extensions["sdfarm"].settings.delete_grace_seconds
    assert set(listed(client)) == set(rows) - {rows[2], rows[3], rows[4]}
    assert set(listed(client, "deleted=only")) == {rows[2], rows[3], rows[4]}
    assert client.get("/api/v1/boards").json["boards"][0]["images"] == 3
    assert client.get(f"/api/v1/images/{rows[2]}").json["deleted_at"] is not None

    undo = {"action": "restore", "deletion_id": deleted.json["deletion_id"]}
    assert client.post("/api/v1/images/bulk", json=undo).json["matched"] == 3
    assert set(listed(client)) == set(rows)
    assert client.post("/api/v1/images/bulk", json=undo).json["matched"] == 0

    # Queued images are not deleted: the lifecycle still owns them.
    ids = {"action": "delete", "image_ids": [rows[0], rows[1], rows[6]]}
    assert client.post("/api/v1/images/bulk", json=ids).json["matched"] == 2
    restore_one = {"action": "restore", "image_ids": [rows[1]]}
    assert client.post("/api/v1/images/bulk", json=restore_one).json["matched"] == 1

    assert purge_deleted(sessions, store, grace_seconds=3600) == 0  # still in its grace period
    assert purge_deleted(sessions, store, grace_seconds=0) == 1
    with sessions() as session:
        assert session.get(Image, rows[0]) is None
        assert session.scalar(select(func.count()).select_from(BoardImage).where(BoardImage.image_id == rows[0])) == 0
    assert not store.local_path(f"jobs/test/{rows[0]}.png")
    assert store.local_path(f"jobs/test/{rows[1]}.png")
    assert client.get(f"/api/v1/images/{rows[0]}").status_code == 404
    assert client.get("/api/v1/boards").json["boards"][0]["images"] == 5
    job = client.get(f"/api/v1/jobs/{client.get(f'/api/v1/images/{rows[1]}').json['job_id']}?images=0").json
    assert (job["status"], job["progress"], job["succeeded"]) == ("succeeded", 1.0, 5)  # done, one row fewer


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"action": "rate", "rating": 1, "query": {"rating": "5"}}, "query.rating"),
        ({"action": "rate", "rating": 1, "query": {"colour": "red"}}, "query.colour"),
        ({"action": "rate", "rating": 1, "query": {"job": "x"}}, "query.job"),
        ({"action": "rate", "rating": 1, "query": {"q": ["a"]}}, "query.q"),
        ({"action": "rate", "rating": 1, "query": {"q": "x" * 201}}, "query.q"),
        ({"action": "rate", "query": {}}, "body"),
        ({"action": "rate", "rating": 1}, "body"),
        ({"action": "rate", "rating": 1, "image_ids": [1], "query": {}}, "body"),
        ({"action": "rate", "rating": 1, "image_ids": [0]}, "image_ids.0"),
        ({"action": "rate", "rating": 1, "image_ids": list(range(1, 10_002))}, "image_ids"),
        ({"action": "add_to_board", "image_ids": [1]}, "body"),
        ({"action": "add_to_board", "board_id": 999, "image_ids": [1]}, "board_id"),
        ({"action": "explode", "image_ids": [1]}, "action"),
        ({"action": "restore", "deletion_id": "../etc"}, "deletion_id"),
        ({"action": "delete", "deletion_id": "0" * 32}, "body"),
    ],
)
def test_bulk_bad_input_names_the_field(client, rows, body, field):
    response = client.post("/api/v1/images/bulk", json=body)
    assert response.status_code == 422, response.json
    fields = {error["field"] for error in response.json["error"]["fields"]}
    assert field in fields, fields


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_tenants_curate_only_their_own(app, client, sessions):
    app.extensions["sdfarm"].settings.auth = "on"
    with sessions() as session:
        alice_key, alice = create_key(session, "alice")
        bob_key, bob = create_key(session, "bob")
        admin = create_key(session, "root", admin=True)[1]
        alices = [image.id for image in add_images(session, ["a cat", "a dog"], owner=alice_key.id)]
        bobs = [image.id for image in add_images(session, ["a cat", "a dog"], owner=bob_key.id)]
    alice, bob, admin = ({"Authorization": f"Bearer {key}"} for key in (alice, bob, admin))

    assert client.patch(f"/api/v1/images/{bobs[0]}", json={"rating": 1}, headers=alice).status_code == 404
    everything = {"action": "delete", "query": {"status": "any"}}
    assert client.post("/api/v1/images/bulk", json=everything, headers=alice).json["matched"] == 2
    assert set(listed(client, headers=bob)) == set(bobs)
    by_ids = {"action": "rate", "rating": 1, "image_ids": bobs}
    assert client.post("/api/v1/images/bulk", json=by_ids, headers=alice).json["matched"] == 0

    board = client.post("/api/v1/boards", json={"name": "mine"}, headers=bob).json["id"]
    assert client.post("/api/v1/boards", json={"name": "mine"}, headers=alice).status_code == 201  # per tenant
    assert client.get(f"/api/v1/boards/{board}", headers=alice).status_code == 404
    assert client.patch(f"/api/v1/boards/{board}", json={"name": "hers"}, headers=alice).status_code == 404
    steal = client.post(f"/api/v1/boards/{board}/images", json={"image_ids": alices}, headers=alice)
    assert steal.status_code == 404
    onto_own = client.post(f"/api/v1/boards/{board}/images", json={"image_ids": alices + bobs}, headers=bob)
    assert onto_own.json["matched"] == 2
    assert set(listed(client, f"board_id={board}", headers=bob)) == set(bobs)
    assert listed(client, f"board_id={board}", headers=alice) == []
    assert [b["name"] for b in client.get("/api/v1/boards", headers=alice).json["boards"]] == ["mine"]
    assert set(listed(client, f"board_id={board}", headers=admin)) == set(bobs)
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Board)) == 2


README_SECTION = "### Curation: ratings, boards, delete and undo"


def test_the_readme_curation_examples_answer_as_written(client, sessions):
    """The README's curl lines, run in order on the quick start's job; each answer has the fields its comment shows."""
    readme = (REPO / "README.md").read_text()
    block = readme.split(README_SECTION, 1)[1].split("```sh\n", 1)[1].split("```", 1)[0].replace("\\\n", " ")
    with sessions() as session:
        add_images(session, ["a red circle on a blue background"] * 4 + ["a yellow triangle on a black background"] * 4)
    deletion_id = None
    ran = 0
    lines = block.splitlines()
    for number, line in enumerate(lines):
        command = re.match(r"curl -s -X (\w+) http://127\.0\.0\.1:8000(\S+) .*-d '(.*?)'", line)
        if not command:
            continue
        method, path, body = command.groups()
        body = json.loads(body.replace('"6f1c..."', json.dumps(deletion_id)))
        response = client.open(path, method=method, json=body)
        assert response.status_code in (200, 201), (line, response.json)
        deletion_id = response.json.get("deletion_id") or deletion_id
        shown = lines[number + 1] if number + 1 < len(lines) and lines[number + 1].startswith("# {") else ""
        for key, value in re.findall(r'"(\w+)": ("[^"]*"|-?[\d.]+)', shown):
            if "..." not in value:
                assert response.json[key] == json.loads(value), (line, key)
        ran += 1
    assert ran == 7
    assert listed(client) == list(range(8, 0, -1))  # the undo brought 5 and 6 back
