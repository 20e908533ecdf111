"""Warm-up tuning: time each candidate configuration on the shape a worker serves, keep the fastest.

A configuration is a way of running the same weights (eager or compiled, CUDA graphs, memory
format). Which one is fastest depends on the GPU, the driver, the torch build, the model and
the shape, so it is measured rather than assumed, and the choice is remembered on disk under a
key made of exactly those things: the next start of the same worker applies it without searching.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

# Ways to run the same weights (DiffusersRunner.configure), eager first: the fallback. "fused_qkv" runs
# each attention's query, key and value projections as one matrix product; "compile" is Inductor
# without CUDA graphs; "cuda_graphs" is Inductor's reduce-overhead mode, which replays each fixed
# (batch, size) UNet call as one CUDA graph.
CONFIGURATIONS = (
    "eager",
    "channels_last",
    "fused_qkv",
    "compile",
    "compile_channels_last",
    "compile_fused_qkv",
    "cuda_graphs",
)

# Timed work per candidate: two calls of a GPU batch take seconds, two of a small CPU batch under one,
# where a neighbour's burst could decide between candidates that differ by 20%.
MIN_TIMED_SECONDS = 3.0


@dataclass(frozen=True)
class Shape:
    """The batches a worker renders: images per call, size and steps."""

    batch: int
    width: int
    height: int
    steps: int


@dataclass(frozen=True)
class Candidate:
    """One configuration: `apply` puts the runner into it, from whichever one it was in before."""

    name: str
    apply: Callable[[], None]


@dataclass
class Choice:
    """What tuning settled on, what it measured, and whether it came from the cache."""

    name: str
    images_per_second: float | None
    from_cache: bool = False
    tuned: bool = True
    measured: dict[str, float | str] = field(default_factory=dict)  # candidate -> images/s, or why it failed
    tuning_seconds: float = 0.0

    def as_json(self) -> dict:
        """The form stored in the cache and shown in the worker's row."""
        return asdict(self)


class ChoiceCache:
    """Chosen configurations as small JSON files, one per key, in a folder of the data directory."""

    def __init__(self, folder: Path):
        self.folder = folder

    @staticmethod
    def key(fields: dict) -> str:
        """A stable file name for the key's fields (GPU, driver, torch, model hash, shape, candidates)."""
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:24]

    def get(self, fields: dict) -> dict | None:
        """The stored choice for these fields, or None (also for an unreadable file: tune again)."""
        path = self.folder / f"{self.key(fields)}.json"
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(stored, dict) or stored.get("key") != fields or not isinstance(stored.get("choice"), dict):
            return None
        return stored["choice"]

    def put(self, fields: dict, choice: Choice) -> None:
        """Store the choice atomically, so a worker killed mid-write leaves no half file."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{self.key(fields)}.json"
        staging = path.with_suffix(f".{os.getpid()}.tmp")
        staging.write_text(json.dumps({"key": fields, "choice": choice.as_json()}, indent=2))
        staging.replace(path)


def tune(
    candidates: Sequence[Candidate],
    measure: Callable[[Candidate], float],
    cache: ChoiceCache,
    key_fields: dict,
) -> Choice:
    """Apply the cached choice for `key_fields`, or measure every candidate and apply the fastest.

    `measure` runs the already-applied candidate and returns images/s (it may raise: such a
    candidate is skipped, with its error recorded). The first candidate is the fallback when
    none can be measured, so it should be the plain eager configuration.
    """
    if not candidates:
        raise ValueError("tuning needs at least one candidate")
    started = time.perf_counter()
    by_name = {candidate.name: candidate for candidate in candidates}
    cached = cache.get(key_fields)
    if cached is not None and cached.get("name") in by_name:
        by_name[cached["name"]].apply()
        log.info(
            "configuration %s from the tuning cache (%s images/s when measured)",
            cached["name"],
            cached.get("images_per_second"),
        )
        return Choice(
            name=cached["name"],
            images_per_second=cached.get("images_per_second"),
            from_cache=True,
            measured=dict(cached.get("measured") or {}),
            tuning_seconds=round(time.perf_counter() - started, 3),
        )
    measured: dict[str, float | str] = {}
    for candidate in candidates:
        try:
            candidate.apply()
            measured[candidate.name] = round(measure(candidate), 4)
        except Exception as error:  # a candidate that cannot run here (no Triton, a compile error) just loses
            log.warning("configuration %s failed during tuning: %s", candidate.name, error)
            measured[candidate.name] = f"{type(error).__name__}: {error}"[:300]
    speeds = {name: value for name, value in measured.items() if isinstance(value, float)}
    best = max(speeds, key=lambda name: speeds[name]) if speeds else candidates[0].name
    by_name[best].apply()
    choice = Choice(
        name=best,
        images_per_second=speeds.get(best),
        measured=measured,
        tuning_seconds=round(time.perf_counter() - started, 3),
    )
    if speeds:  # a failed search is not remembered: the next start tries again
        cache.put(key_fields, choice)
    log.info("tuned in %.1fs: %s (%s)", choice.tuning_seconds, best, measured)
    return choice


def untuned(name: str = "eager") -> Choice:
    """The choice of a worker that does not tune (CPU workers: eager, no search, no cost)."""
    return Choice(name=name, images_per_second=None, tuned=False)


def time_batches(
    run_batch: Callable[[], None], batch: int, repeats: int = 2, min_seconds: float = MIN_TIMED_SECONDS
) -> float:
    """Images/s of `run_batch` after one untimed call (which pays for compilation and caches): the median
    of at least `repeats` calls, and of as many more as `min_seconds` of timed work takes (at most 20)."""
    run_batch()
    timings: list[float] = []
    while len(timings) < repeats or (sum(timings) < min_seconds and len(timings) < 20):
        started = time.perf_counter()
        run_batch()
        timings.append(time.perf_counter() - started)
    return batch / statistics.median(timings)


# Configurations whose kernels are specialised to the shape they first ran (warm-up runs that shape).
COMPILED = ("compile", "compile_channels_last", "compile_fused_qkv", "cuda_graphs")


def warm_up_samplers(default: str) -> list[str]:
    """The samplers a compiled configuration is warmed up with, at the served shape: the model's default,
    and one of each kind of timestep the UNet is given (Euler's family passes floats, DDIM's integers).

    A graph is compiled per kind; once warm-up is over, a kind no graph covers runs eager (the SDE
    samplers', whose timesteps differ again) rather than compiling in the middle of a job.
    """
    return list(dict.fromkeys([default, "euler", "ddim"]))


def tuning_candidates(setting: str, device: str, compiled_at_load: bool) -> list[str]:
    """The configurations warm-up tries, from SDFARM_TUNE: none on the CPU unless listed by name."""
    setting = setting.strip().lower()
    if setting == "off" or compiled_at_load:
        return []
    if setting == "auto":
        return list(CONFIGURATIONS) if device.startswith("cuda") else []
    names = [name.strip() for name in setting.split(",") if name.strip()]
    unknown = [name for name in names if name not in CONFIGURATIONS]
    if unknown:
        raise ValueError(f"SDFARM_TUNE: unknown configuration {unknown}; expected auto, off or {CONFIGURATIONS}")
    return names
