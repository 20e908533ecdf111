"""Export benchmark: throughput and peak memory of making a dataset export from N finished images.

Fills a scratch SQLite database and object directory with N succeeded images (rows and small PNGs
made by the tests' factory; nothing is rendered), then times each format's export, each in a fresh
process so its peak resident memory is its own. Run from a checkout (it uses tests/factories.py):

    nice .venv/bin/python bench/export_bench.py --images 10000
    nice .venv/bin/python bench/export_bench.py --images 1000 --formats zip   # a quick look
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.db import make_engine, make_session_factory  # noqa: E402
from models.export import create  # noqa: E402
from models.image_store import LocalImageStore  # noqa: E402
from sdfarm.migrate import upgrade  # noqa: E402

FORMATS = ("imagefolder", "webdataset", "zip")


def fill(database_url: str, objects: Path, images: int) -> float:
    """Add one job of `images` succeeded images with their PNGs; returns the seconds it took."""
    from tests.factories import add_finished_job

    began = time.perf_counter()
    upgrade(database_url)
    sessions = make_session_factory(make_engine(database_url))
    with sessions() as session:
        add_finished_job(session, LocalImageStore(objects), images, prompt="a red circle on a blue background")
    return time.perf_counter() - began


def run_one(database_url: str, objects: Path, export_format: str) -> dict:
    """In this (fresh) process: queue one export of every image, make it, and measure it."""
    from worker.exporter import ExportRunner

    sessions = make_session_factory(make_engine(database_url))
    with sessions() as session:
        export_id = create(
            session,
            owner_key_id=None,
            scope_key_id=None,
            format=export_format,
            selection={},
            shard_size=1000 if export_format == "webdataset" else None,
        ).id
        session.commit()
    store = LocalImageStore(objects)
    process = psutil.Process()
    before = process.memory_info().rss
    highest = [before]
    stop = threading.Event()

    def sample() -> None:  # resident memory every 5 ms while the export runs
        while not stop.wait(0.005):
            highest[0] = max(highest[0], process.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    began = time.perf_counter()
    ExportRunner(sessions, store, "exports@bench", lease_seconds=60).run_once()
    seconds = time.perf_counter() - began
    stop.set()
    sampler.join()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    from models.export import Export

    with sessions() as session:
        export = session.get(Export, export_id)
        assert export.status == "succeeded", export.error
        files, images = export.files, export.images
    return {
        "format": export_format,
        "images": images,
        "files": len(files),
        "bytes": sum(item["bytes"] for item in files),
        "seconds": round(seconds, 2),
        "images_per_second": round(images / seconds, 1),
        "peak_rss_mb": round(peak / 1024, 1),
        "rss_before_export_mb": round(before / 2**20, 1),
        "rss_growth_during_export_mb": round((highest[0] - before) / 2**20, 1),
    }


def main() -> None:
    """Fill once, then export in each format in its own process; print a table and write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=FORMATS)
    parser.add_argument("--out", type=Path, default=Path("bench-results/export.json"))
    parser.add_argument("--run-one", nargs=3, metavar=("DATABASE_URL", "OBJECTS", "FORMAT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_one:
        url, objects, export_format = args.run_one
        print(json.dumps(run_one(url, Path(objects), export_format)))
        return
    with tempfile.TemporaryDirectory(prefix="sdfarm-export-bench-") as scratch:
        url = f"sqlite:///{scratch}/bench.db"
        objects = Path(scratch) / "objects"
        fill_seconds = fill(url, objects, args.images)
        print(f"filled {args.images:,} images in {fill_seconds:.1f} s")
        results = []
        for export_format in args.formats:
            done = subprocess.run(
                [sys.executable, __file__, "--run-one", url, str(objects), export_format],
                capture_output=True,
                text=True,
                check=True,
            )
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
            r = results[-1]
            print(
                f"{r['format']:<12} {r['images']:>7,} images  {r['files']:>3} files  {r['bytes'] / 1e6:7.1f} MB  "
                f"{r['seconds']:6.2f} s  {r['images_per_second']:8.1f} images/s  peak RSS {r['peak_rss_mb']} MB, "
                f"{r['rss_before_export_mb']} MB before the export, +{r['rss_growth_during_export_mb']} MB during it"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {"images": args.images, "machine": platform.platform(), "python": platform.python_version()}
    args.out.write_text(json.dumps({**report, "results": results}, indent=2))


if __name__ == "__main__":
    main()
