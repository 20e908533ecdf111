"""The gallery's date filter before and after its id bounds, on the same data, in one process.

Fills a fresh database with `bench/gallery_bench.py`'s rows (one image a second, so a day holds
86,400) and times, for the oldest, a middle and the newest day, the plain `queued_at` range (the
filter as it was) against `models.image_query.select_images` (the filter with id bounds), checking
that both return the same rows.

    nice .venv/bin/python bench/date_filter_bench.py --backend sqlite --rows 1000000
    nice .venv/bin/python bench/date_filter_bench.py --backend postgresql --rows 1000000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from datetime import time as day_start
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gallery_bench import DEFAULT_POSTGRES, database, fill  # noqa: E402
from sqlalchemy import Select, select  # noqa: E402

from models.db import make_engine  # noqa: E402
from models.image import Image  # noqa: E402
from models.image_query import ImageFilters, select_images  # noqa: E402

START = datetime(2025, 1, 1, tzinfo=UTC)


def plain_range(day: date) -> Select:
    """The filter as it was: a queued_at range beside the default view's conditions."""
    low = datetime.combine(day, day_start(), UTC)
    return (
        select(Image)
        .where(Image.status == "succeeded", Image.deleted_at.is_(None))
        .where(Image.queued_at >= low, Image.queued_at < low + timedelta(days=1))
        .order_by(Image.id.desc())
        .limit(49)
    )


def main() -> None:
    """Fill, then time both queries for three days."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch, database(args.backend, Path(scratch), args.postgres_url) as url:
        print(f"filled {args.rows:,} rows in {fill(url, 0, args.rows, START):.0f} s")
        engine = make_engine(url)

        def with_bounds(day: date) -> Select:
            query, key = select_images(ImageFilters(date_from=day, date_to=day), engine.dialect.name, None)
            return query.order_by(key.desc()).limit(49)

        days = {
            "the oldest": START.date(),
            "the middle one": (START + timedelta(seconds=args.rows // 2)).date(),
            "the newest": (START + timedelta(seconds=args.rows)).date(),
        }
        print("| Day | before (ms) | after (ms) |\n| --- | ---: | ---: |")
        with engine.connect() as connection:
            for label, day in days.items():
                medians = []
                results = []
                for build in (plain_range, with_bounds):
                    results.append([row.id for row in connection.execute(build(day))])
                    times = []
                    for _ in range(args.runs):
                        began = time.perf_counter()
                        connection.execute(build(day)).all()
                        times.append((time.perf_counter() - began) * 1000)
                    medians.append(statistics.median(times))
                assert results[0] == results[1], f"{label}: the two queries disagree"
                print(f"| {label} | {medians[0]:,.1f} | {medians[1]:,.1f} |")
        engine.dispose()


if __name__ == "__main__":
    main()
