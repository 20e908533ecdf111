"""The fault suite's plan and its report: which fault fires after how many finished images, and
what each one cost.

The plan is seeded (the same seed and size give the same plan, so a failing run can be replayed)
and spread: the faults of each kind are placed one per equal slice of the run, so a kind with three
faults hits the beginning, the middle and the end, not three times the first minutes.
"""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass

# Faults per kind in the full run (SDFARM_FAULT_IMAGES=1000); smaller runs scale them down.
FULL_RUN_IMAGES = 1000
FULL_COUNTS = {
    "child_kill": 20,  # SIGKILL a worker's pool child (the process rendering the batch)
    "worker_kill": 3,  # SIGKILL a whole Celery worker: main process and child
    "redis_restart": 3,  # kill Redis and start it empty: every queued message is gone
    "postgres_restart": 2,  # fast restart: every connection is cut
    "api_restart": 1,  # SIGKILL gunicorn and start it again on the same port
    "cancel_other_job": 3,  # submit another job, cancel it while its first batch renders
}
# The slice of the run faults are placed in: not before the farm is warm, and early enough that the
# job is still running when the last one fires (earlier faults' recoveries delay the later ones).
WINDOW = (0.03, 0.85)


@dataclass(frozen=True)
class Fault:
    """One planned fault: fire `kind` once `at_done` images of the main job have succeeded."""

    at_done: int
    kind: str
    target: int  # which worker (by index) or job it aims at, drawn with the schedule


def counts_for(images: int) -> dict[str, int]:
    """Faults per kind for a run of `images`: the full counts at 1,000 images or more, scaled down
    below that, never under one of each kind."""
    scale = min(1.0, images / FULL_RUN_IMAGES)
    return {kind: max(1, round(count * scale)) for kind, count in FULL_COUNTS.items()}


def make_schedule(images: int, seed: int, counts: dict[str, int] | None = None, workers: int = 2) -> list[Fault]:
    """The plan for a run of `images`, ordered by `at_done`; the same arguments give the same plan."""
    rng = random.Random(seed)
    low, high = int(images * WINDOW[0]), int(images * WINDOW[1])
    faults = []
    for kind, count in (counts or counts_for(images)).items():
        width = (high - low) / count
        for slot in range(count):
            start = low + slot * width
            at_done = int(start + rng.random() * width)
            faults.append(Fault(min(at_done, high - 1), kind, rng.randrange(workers)))
    # Kinds are drawn in a fixed order, so ties sort the same way every time.
    return sorted(faults, key=lambda fault: (fault.at_done, list(FULL_COUNTS).index(fault.kind)))


def summarize(records: list[dict]) -> dict[str, dict]:
    """Per kind: how many fired and their recovery seconds (min, median, max)."""
    summary: dict[str, dict] = {}
    for kind in FULL_COUNTS:
        seconds = [r["recovery_seconds"] for r in records if r["kind"] == kind]
        if seconds:
            summary[kind] = {
                "count": len(seconds),
                "min_seconds": round(min(seconds), 2),
                "median_seconds": round(statistics.median(seconds), 2),
                "max_seconds": round(max(seconds), 2),
            }
    return summary


def format_report(report: dict) -> str:
    """The report as text: one line per fault, a line per kind, then the audit's totals."""
    lines = [
        f"fault run: {report['images']} images, {report['steps']} steps, seed {report['seed']}, "
        f"{report.get('total_seconds', '?')} s",
        f"{'#':>3} {'planned':>7} {'fired':>6}  {'fault':<17} {'target':<16} {'recovery s':>10}",
    ]
    for number, record in enumerate(report["faults"], 1):
        lines.append(
            f"{number:>3} {record['planned_at']:>7} {record['at_done']:>6}  {record['kind']:<17} "
            f"{str(record.get('target', '')):<16} {record['recovery_seconds']:>10.2f}"
        )
    lines.append("per kind (count, recovery min / median / max s):")
    for kind, figures in summarize(report["faults"]).items():
        lines.append(
            f"  {kind:<17} {figures['count']:>3}   {figures['min_seconds']:.2f} / "
            f"{figures['median_seconds']:.2f} / {figures['max_seconds']:.2f}"
        )
    totals = ("succeeded", "lost", "duplicated", "orphan_files", "missing_files", "sha256_mismatches")
    totals += ("canceled_jobs", "run_after_cancel", "stuck_running", "retries_counted")
    if any(name in report for name in totals):  # absent while the run is still going
        lines.append("audit: " + ", ".join(f"{name} {report[name]}" for name in totals if name in report))
    return "\n".join(lines)
