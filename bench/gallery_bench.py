"""Gallery benchmark: fill SQLite and PostgreSQL with image rows and time the gallery's pages.

Fills each database to 100,000 rows, times the pages, tops it up to 1,000,000 and times them
again. Each figure is the median of `--runs` full page renders through the Flask app (query,
template, response), after two warm-up renders; the query alone is timed too.

    nice .venv/bin/python bench/gallery_bench.py                      # both databases, 100k and 1M
    nice .venv/bin/python bench/gallery_bench.py --backends sqlite --sizes 100000

PostgreSQL: `--postgres-url` (default SDFARM_TEST_POSTGRES_URL, else the local server) must let
us create a database; the benchmark makes its own and drops it afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api import create_app  # noqa: E402
from api.gallery.queries import Cursor, gallery_images  # noqa: E402
from models.image_query import ImageFilters  # noqa: E402
from models.settings import Settings  # noqa: E402
from sdfarm.migrate import upgrade  # noqa: E402
from sdfarm.scratch_database import scratch_database  # noqa: E402

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
IMAGES_PER_JOB = 100
CHUNK = 20_000
RARE_WORD = "zeppelin"  # in one prompt of RARE_EVERY
RARE_EVERY = 10_000

ADJECTIVES = (
    "red blue green yellow purple orange black white golden silver ancient modern tiny huge quiet stormy misty "
    "sunny frozen burning glowing rusty wooden glass crystal velvet neon pastel dark bright lonely crowded"
).split()
SUBJECTS = (
    "cat dog fox owl horse dragon robot castle lighthouse bridge forest mountain river city village ship train "
    "garden tower temple market library cathedral windmill harbor desert island volcano waterfall canyon meadow"
).split()
PLACES = (
    "at dusk|at dawn|in the rain|under the stars|in winter|in autumn|by the sea|on a hill|in the fog|at noon|"
    "in a dream|on mars|underwater|in a snow globe|at midnight|in spring"
).split("|")
STYLES = (
    "oil painting|watercolor|photograph|pencil sketch|digital art|35mm film|studio lighting|octane render|"
    "ukiyo-e|art nouveau|pixel art|isometric|cinematic|macro photo|charcoal drawing"
).split("|")
COLUMNS = (
    'job_id, "index", owner_key_id, prompt, negative_prompt, seed, steps, guidance_scale, width, height, scheduler, '
    "model, model_hash, strength, clip_skip, loras, batch_key, priority, status, attempts, error, worker, progress, "
    "lease_token, lease_expires_at, run_alone, queued_at, started_at, finished_at, object_key, thumb_key, sha256, "
    "render_seconds, nsfw"
)


@dataclass(frozen=True)
class Case:
    """One page to time: its label and the gallery URL."""

    label: str
    url: str
    filters: ImageFilters
    cursor: Cursor


def prompt_for(rng: random.Random, number: int) -> str:
    """A plausible prompt; RARE_WORD appears in one row of RARE_EVERY."""
    prompt = f"a {rng.choice(ADJECTIVES)} {rng.choice(SUBJECTS)} {rng.choice(PLACES)}, {rng.choice(STYLES)}"
    if number % RARE_EVERY == RARE_EVERY // 2:
        prompt += f", {RARE_WORD} in the sky"
    return prompt


def image_rows(first_id: int, count: int, start: datetime, seed: int) -> Iterator[tuple]:
    """Image rows as tuples in COLUMNS order; ids are implied (first_id, first_id+1, ...)."""
    rng = random.Random(seed)
    for offset in range(count):
        number = first_id + offset
        job_id = (number - 1) // IMAGES_PER_JOB + 1
        queued = start + timedelta(seconds=number)
        roll = rng.random()
        status = "succeeded" if roll < 0.95 else "failed" if roll < 0.97 else "canceled" if roll < 0.99 else "queued"
        done = status == "succeeded"
        key = f"jobs/{job_id:08d}/{(number - 1) % IMAGES_PER_JOB:05d}-{number:x}"
        yield (
            job_id,
            (number - 1) % IMAGES_PER_JOB,
            None,
            prompt_for(rng, number),
            "blurry, low quality",
            number * 7 % 4_294_967_295,
            25,
            7.5,
            512,
            512,
            "euler_a",
            "shapes" if job_id % 10 == 0 else "tiny",
            "3b1c9d0e2a",
            None,
            1,
            "[]",
            "bench",
            5,
            status,
            1 if status != "queued" else 0,
            "boom" if status == "failed" else None,
            "gpu0@bench" if done else None,
            1.0 if done else 0.0,
            None,
            None,
            False,
            queued,
            queued if status != "queued" else None,
            queued + timedelta(seconds=2) if status != "queued" else None,
            key + ".png" if done else None,
            key + ".thumb.webp" if done else None,
            f"{number:064x}" if done else None,
            1.9 if done else None,
            False,
        )


def job_rows(first_job: int, last_job: int, start: datetime) -> Iterator[tuple]:
    """Job rows (id, created_at, model, priority, total, spec)."""
    for job_id in range(first_job, last_job + 1):
        created = start + timedelta(seconds=(job_id - 1) * IMAGES_PER_JOB)
        model = "shapes" if job_id % 10 == 0 else "tiny"
        yield (job_id, created, model, 5, IMAGES_PER_JOB, json.dumps({"prompts": ["bench"], "num_images": 100}))


class SqliteFiller:
    """Bulk inserts with the sqlite3 driver: one transaction per chunk; the FTS triggers index as rows arrive."""

    def __init__(self, url: str):
        import sqlite3

        self.connection = sqlite3.connect(url.removeprefix("sqlite:///"))
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute("PRAGMA synchronous=OFF")  # a benchmark fill; the app uses NORMAL

    @staticmethod
    def _sqlite_time(value):
        # SQLAlchemy's SQLite DateTime storage format (no zone; UTCDateTime reads it back as UTC).
        return value.strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(value, datetime) else value

    def add_jobs(self, rows: Iterator[tuple]) -> None:
        """Insert job rows."""
        with self.connection:
            self.connection.executemany(
                "INSERT INTO jobs (id, created_at, model, priority, total, spec) VALUES (?, ?, ?, ?, ?, ?)",
                ((r[0], self._sqlite_time(r[1]), *r[2:]) for r in rows),
            )

    def add_images(self, rows: list[tuple]) -> None:
        """Insert image rows."""
        marks = ", ".join("?" * len(rows[0]))
        with self.connection:
            self.connection.executemany(
                f"INSERT INTO images ({COLUMNS}) VALUES ({marks})",
                [tuple(self._sqlite_time(v) for v in row) for row in rows],
            )

    def finish(self) -> None:
        """Nothing to rebuild: the triggers kept the index current."""
        self.connection.close()


class PostgresFiller:
    """COPY in binary-free text form; the GIN index is maintained as rows arrive, then VACUUM ANALYZE."""

    def __init__(self, url: str):
        self.connection = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)

    def _copy(self, table: str, columns: str, rows) -> None:
        with self.connection.cursor() as cursor, cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def add_jobs(self, rows: Iterator[tuple]) -> None:
        """COPY job rows."""
        self._copy("jobs", "id, created_at, model, priority, total, spec", rows)

    def add_images(self, rows: list[tuple]) -> None:
        """COPY image rows."""
        self._copy("images", COLUMNS, rows)

    def finish(self) -> None:
        """Bring the sequences past the ids we wrote, and give the planner statistics (autovacuum would)."""
        self.connection.execute("SELECT setval('images_id_seq', (SELECT max(id) FROM images))")
        self.connection.execute("SELECT setval('jobs_id_seq', (SELECT max(id) FROM jobs))")
        self.connection.execute("VACUUM ANALYZE images")
        self.connection.execute("VACUUM ANALYZE jobs")
        self.connection.close()


def fill(url: str, current: int, target: int, start: datetime) -> float:
    """Add rows until the database holds `target` images; returns the seconds it took."""
    began = time.perf_counter()
    filler = SqliteFiller(url) if url.startswith("sqlite") else PostgresFiller(url)
    first_job = current // IMAGES_PER_JOB + 1
    filler.add_jobs(job_rows(first_job, (target - 1) // IMAGES_PER_JOB + 1, start))
    for chunk_start in range(current + 1, target + 1, CHUNK):
        count = min(CHUNK, target + 1 - chunk_start)
        filler.add_images(list(image_rows(chunk_start, count, start, seed=chunk_start)))
        print(f"  {chunk_start + count - 1:>9,} rows", end="\r", flush=True)
    filler.finish()
    return time.perf_counter() - began


def cases(total: int) -> list[Case]:
    """The pages timed at a given size: first, deep, and searches."""
    deep = max(2, total // 50)  # 98% of the way down the list
    specs = [
        ("first page", {}, Cursor()),
        (f"deep page (before id {deep:,})", {}, Cursor(before=deep)),
        ("search 'lighthouse' (~3% of rows)", {"q": "lighthouse"}, Cursor()),
        ("search 'lighthouse', deep", {"q": "lighthouse"}, Cursor(before=deep)),
        (f"search '{RARE_WORD}' (1 row in {RARE_EVERY:,})", {"q": RARE_WORD}, Cursor()),
        ("search 'red lighthouse' (two words)", {"q": "red lighthouse"}, Cursor()),
        ("search 'unicorn' (in no prompt)", {"q": "unicorn"}, Cursor()),
        ("filter job (an old job)", {"job": str(max(1, deep // IMAGES_PER_JOB))}, Cursor()),
        ("filter seed", {"seed": str(deep * 7)}, Cursor()),
        # No index serves these two alone (see BENCHMARKS.md): they show what an index would buy.
        ("filter model, none match (no index)", {"model": "nope"}, Cursor()),
        ("filter date, the oldest day", {"from": "2025-01-01", "to": "2025-01-01"}, Cursor()),
        ("filter rating starred (none are)", {"rating": "1"}, Cursor()),
        ("filter rating not rejected", {"rating": "not-rejected"}, Cursor()),
        ("filter board (an empty one)", {"board": "1"}, Cursor()),
        ("trash (none deleted)", {"deleted": "only"}, Cursor()),
    ]
    result = []
    for label, args, cursor in specs:
        filters, errors = ImageFilters.from_args(args)
        assert not errors, errors
        query = "&".join(f"{k}={v.replace(' ', '+')}" for k, v in args.items())
        if cursor.before:
            query = f"{query}&before={cursor.before}" if query else f"before={cursor.before}"
        result.append(Case(label, "/" + (f"?{query}" if query else ""), filters, cursor))
    return result


def median_ms(action, runs: int) -> float:
    """Median wall time of `action` in milliseconds, after two warm-up calls."""
    for _ in range(2):
        action()
    samples = []
    for _ in range(runs):
        began = time.perf_counter()
        action()
        samples.append((time.perf_counter() - began) * 1000)
    return statistics.median(samples)


def time_pages(url: str, data_dir: Path, total: int, runs: int) -> list[dict]:
    """Time each case's query and full page render."""
    app = create_app(Settings(data_dir=data_dir, database_url=url, auth="off", redis_url="redis://127.0.0.1:1/0"))
    farm = app.extensions["sdfarm"]
    client = app.test_client()
    results = []
    for case in cases(total):

        def query(case=case) -> int:
            with farm.sessions() as session:
                return len(gallery_images(session, case.filters, None, case.cursor).rows)

        def page(case=case) -> None:
            response = client.get(case.url)
            assert response.status_code == 200, (case.url, response.status_code)

        shown = query()
        results.append(
            {
                "case": case.label,
                "url": case.url,
                "shown": shown,
                "query_ms": round(median_ms(query, runs), 2),
                "page_ms": round(median_ms(page, runs), 2),
            }
        )
        print(f"  {case.label:<40} {results[-1]['query_ms']:>8.2f} ms query {results[-1]['page_ms']:>8.2f} ms page")
    farm.engine.dispose()
    return results


@contextmanager
def database(backend: str, workdir: Path, postgres_url: str) -> Iterator[str]:
    """A fresh, migrated database of the backend; PostgreSQL's is dropped afterwards."""
    if backend == "sqlite":
        url = f"sqlite:///{workdir / 'gallery-bench.db'}"
        upgrade(url)
        yield url
        return
    with scratch_database(postgres_url) as url:
        upgrade(url)
        yield url


def machine() -> dict:
    """What the figures were measured on."""
    model = ""
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    import sqlite3

    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
    }


def main() -> None:
    """Run the benchmark and print a Markdown table (and JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[100_000, 1_000_000])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--postgres-url", default=os.environ.get("SDFARM_TEST_POSTGRES_URL") or DEFAULT_POSTGRES)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    start = datetime(2025, 1, 1, tzinfo=UTC)
    report = {"machine": machine(), "runs": args.runs, "results": []}
    print(json.dumps(report["machine"]))
    with tempfile.TemporaryDirectory(prefix="gallery-bench-") as scratch:
        for backend in args.backends:
            with database(backend, Path(scratch), args.postgres_url) as url:
                if backend == "postgresql":
                    with psycopg.connect(args.postgres_url.replace("+psycopg", ""), autocommit=True) as connection:
                        report["machine"]["postgresql"] = connection.execute("SHOW server_version").fetchone()[0]
                current = 0
                for size in sorted(args.sizes):
                    print(f"{backend}: filling to {size:,} rows")
                    seconds = fill(url, current, size, start)
                    current = size
                    print(f"{backend}: {size:,} rows filled in {seconds:.0f} s")
                    for row in time_pages(url, Path(scratch), size, args.runs):
                        report["results"].append({"backend": backend, "rows": size, "fill_s": round(seconds), **row})
    print()
    print("| Database | Rows | Page | Query (ms) | Page render (ms) |")
    print("| --- | ---: | --- | ---: | ---: |")
    for row in report["results"]:
        print(f"| {row['backend']} | {row['rows']:,} | {row['case']} | {row['query_ms']:.1f} | {row['page_ms']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
