"""`sdfarm export` and how the CLI finds its farm, in-process with click's CliRunner against a served API."""

from __future__ import annotations

import threading
import zipfile

import pytest
from click.testing import CliRunner

from sdfarm.cli import main
from sdfarm.client import find_farm_url
from tests.factories import add_finished_job
from tests.gallery.browser import serve
from worker.exporter import ExportRunner


def run_exports_in_background(farm, stop: threading.Event) -> threading.Thread:
    """What the worker side's background loop does, in a thread of the test."""
    runner = ExportRunner(farm.sessions, farm.store, "exports@cli-test", lease_seconds=10.0)

    def loop() -> None:
        while not stop.wait(0.2):
            runner.run_once()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_export_submits_waits_and_downloads(app, tmp_path):
    farm = app.extensions["sdfarm"]
    with farm.sessions() as session:
        add_finished_job(session, farm.store, 5, prompt="a lighthouse")
        add_finished_job(session, farm.store, 2, prompt="a castle")
    stop = threading.Event()
    worker = run_exports_in_background(farm, stop)
    try:
        with serve(app) as url:
            out = tmp_path / "out"
            result = CliRunner().invoke(
                main, ["export", "--query", "lighthouse", "--format", "imagefolder", "--url", url, str(out)]
            )
            shards = CliRunner().invoke(
                main,
                ["export", "--all", "--format", "webdataset", "--shard-size", "4", str(tmp_path / "wds")],
                env={"SDFARM_URL": url},
            )
            bad = CliRunner().invoke(main, ["export", "--format", "zip", "--url", url, str(tmp_path / "none")])
    finally:
        stop.set()
        worker.join(timeout=10)
    assert result.exit_code == 0, result.output
    assert f"farm: {url} (--url)" in result.output
    assert "5 images in 1 file" in result.output
    with zipfile.ZipFile(out / "dataset.zip") as archive:
        assert len([n for n in archive.namelist() if n.endswith(".png")]) == 5
        assert "metadata.jsonl" in archive.namelist()
    assert shards.exit_code == 0, shards.output
    assert f"farm: {url} (SDFARM_URL)" in shards.output
    assert sorted(p.name for p in (tmp_path / "wds").iterdir()) == ["shard-000000.tar", "shard-000001.tar"]
    assert bad.exit_code == 1 and "say what to export" in bad.output


def test_the_cli_finds_the_farm_sdfarm_up_started(tmp_path, monkeypatch):
    monkeypatch.delenv("SDFARM_URL", raising=False)
    assert find_farm_url(None, tmp_path) == (
        "http://127.0.0.1:8000",
        "the default; set --url or SDFARM_URL for another farm",
    )
    (tmp_path / "farm-url").write_text("http://127.0.0.1:8765\n")
    url, source = find_farm_url(None, tmp_path)
    assert url == "http://127.0.0.1:8765" and str(tmp_path / "farm-url") in source
    monkeypatch.setenv("SDFARM_URL", "http://farm:9000/")
    assert find_farm_url(None, tmp_path) == ("http://farm:9000", "SDFARM_URL")
    assert find_farm_url("http://other:1", tmp_path) == ("http://other:1", "--url")
