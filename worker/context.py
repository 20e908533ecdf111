"""Per-process state of a worker child: database, store, runner and service, made once.

Celery forks its pool child before any of this exists (no sockets or CUDA state cross
a fork); the child then loads the pipeline in a background thread, because Celery kills
a child whose `worker_process_init` takes longer than 4 seconds.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path

from models import lifecycle
from models.catalog import ModelCatalog, ModelEntry
from models.db import make_engine, make_session_factory
from models.image_store import open_image_store
from models.queue import RenderQueue
from models.settings import Settings
from worker.heartbeat import Heartbeat
from worker.runner import PipelineRunner
from worker.service import RenderService
from worker.stats import WorkerStats
from worker.tuning import (
    COMPILED,
    Candidate,
    Choice,
    ChoiceCache,
    Shape,
    time_batches,
    tune,
    tuning_candidates,
    untuned,
    warm_up_samplers,
)

log = logging.getLogger(__name__)


class WorkerContext:
    """Everything one worker child needs, created after the fork."""

    def __init__(self, settings: Settings, celery_app, worker_name: str, model: str, max_batch: int):
        self.settings = settings
        self.worker_name = worker_name
        self.model = model
        self.max_batch = max_batch
        self.engine = make_engine(settings.resolved_database_url)
        self.sessions = make_session_factory(self.engine)
        self.store = open_image_store(settings)
        self.queue = RenderQueue(celery_app, settings.redis_url)
        self.stats = WorkerStats()
        self.service: RenderService | None = None
        self.load_error: str | None = None
        self._ready = threading.Event()
        self.heartbeat: Heartbeat | None = None
        # Seconds spent on each part of the start (imports, load, tuning, warm-up), for the worker's row.
        self.startup: dict[str, float] = {}

    def start(self, runner_factory=None) -> None:
        """Begin loading the model in the background and start the heartbeat."""
        self.stats.loading()
        threading.Thread(target=self._load, args=(runner_factory,), name="model-loader", daemon=True).start()

    def _load(self, runner_factory) -> None:
        try:
            runner = (runner_factory or self._configured_runner)()
            self.service = RenderService(
                self.sessions,
                self.store,
                runner,
                self.queue,
                self.stats,
                self.worker_name,
                self.max_batch,
                self.settings.lease_seconds,
                self.settings.max_attempts,
                overlap=overlaps(self.settings.overlap, runner.device),
            )
            self.stats.loaded()
            log.info(
                "worker %s ready: model %s (hash %s) on %s, %s",
                self.worker_name,
                self.model,
                runner.model_hash,
                runner.device,
                self.startup,
            )
        except Exception as error:
            self.load_error = f"{type(error).__name__}: {error}"
            log.critical("worker %s cannot load model %s: %s", self.worker_name, self.model, error)
            self.stats.state = "error"
            # Retrying cannot fix a broken model: stop this worker (the supervisor reports it).
            os.kill(os.getppid(), signal.SIGTERM)
        finally:
            self.heartbeat = Heartbeat(
                self.sessions,
                self.worker_name,
                self.model,
                self.stats,
                self.settings.heartbeat_seconds,
                device_info(self.service.runner.device if self.service else "cpu"),
            )
            self.heartbeat.start()
            self._ready.set()

    def _configured_runner(self) -> PipelineRunner:
        entry = ModelCatalog(self.settings.resolved_models_dir, self.settings.model).get(self.model)
        lora_dir = self.settings.resolved_lora_dir
        if self.settings.runner == "diffusers":
            runner = self._diffusers_runner(entry, lora_dir)
        else:
            # A plug-in runner (a benchmark's simulated GPU) may not need torch at all.
            device = "cpu" if self.settings.device == "auto" else self.settings.device
            started = time.perf_counter()
            runner = runner_factory(self.settings.runner)(entry, device, lora_dir)
            self.startup["load_seconds"] = round(time.perf_counter() - started, 3)
        shape = Shape(self.max_batch, entry.defaults.width, entry.defaults.height, entry.defaults.steps)
        started = time.perf_counter()
        choice = choose_configuration(
            runner,
            shape,
            entry.defaults.sampler,
            tuning_candidates(self.settings.tune, runner.device, self.settings.compile),
            ChoiceCache(self.settings.data_dir.resolve() / "tuning"),
        )
        self.startup["tuning_seconds"] = round(time.perf_counter() - started, 3)
        started = time.perf_counter()
        if choice.name in COMPILED:
            # At the served shape, also after a search: switching configurations may have invalidated its graphs.
            for sampler in warm_up_samplers(entry.defaults.sampler):
                self._warm_up(runner, shape, sampler)
            runner.compiled_shapes_only()
        elif not (choice.tuned and not choice.from_cache):  # a search has already run the model
            self._warm_up(runner, None)
        self.startup["warm_up_seconds"] = round(time.perf_counter() - started, 3)
        self.startup["process_seconds"] = round(time.time() - _process_started(), 3)
        configuration = {**choice.as_json(), "shape": asdict(shape), "startup": self.startup}
        if any(name in COMPILED for name in [choice.name, *choice.measured]):
            configuration["compiler"] = _compiler_counters()
        self.stats.configured(configuration)
        return runner

    def _diffusers_runner(self, entry: ModelEntry, lora_dir: Path) -> PipelineRunner:
        # Compiled kernels (the `compile` setting and the tuning's compiled candidates) outlive the process.
        # Set before torch and diffusers are imported: importing diffusers sets it to torch's default (/tmp).
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(self.settings.data_dir.resolve() / "compile-cache"))
        started = time.perf_counter()
        import torch

        from worker.diffusers_runner import DiffusersRunner
        from worker.loader import pick_device

        self.startup["imports_seconds"] = round(time.perf_counter() - started, 3)
        started = time.perf_counter()
        device = pick_device(self.settings.device)
        if device == "cpu":
            torch.set_num_threads(self.settings.cpu_threads or os.cpu_count() or 1)
        runner = DiffusersRunner(entry, device, lora_dir, compile_unet=self.settings.compile)
        self.startup["load_seconds"] = round(time.perf_counter() - started, 3)
        return runner

    @staticmethod
    def _warm_up(runner, shape: Shape | None, sampler: str = "euler") -> None:
        """One call so the first real batch does not pay for lazy initialisation: at the served shape for a
        compiled configuration (its kernels are specialised to it), else at the smallest useful size."""
        from PIL import Image as PILImage

        from worker.runner import RenderRequest

        batch, width, height, steps = (shape.batch, shape.width, shape.height, 2) if shape else (1, 64, 64, 1)
        request = RenderRequest(
            ["warm-up"] * batch, [""] * batch, list(range(batch)), steps, 7.5, width, height, sampler
        )
        if getattr(runner, "inpainting", False):  # such a model can only inpaint
            grey, everything = PILImage.new("RGB", (width, height), "grey"), PILImage.new("L", (width, height), 255)
            request = replace(request, strength=1.0, init_image=grey, mask_image=everything)
        runner.generate(request, lambda _fraction: None)

    def wait_ready(self, timeout: float | None = None) -> RenderService:
        """Block until the model is loaded; raise if loading failed."""
        if not self._ready.wait(timeout):
            raise TimeoutError("model still loading")
        if self.service is None:
            raise RuntimeError(f"model failed to load: {self.load_error}")
        return self.service

    def shutdown(self) -> None:
        """Finish saving, hand back what this process still holds, and say goodbye."""
        if self.service is not None:
            self.service.close()
        # Anything this worker still holds was interrupted: back to the queue at once.
        released = lifecycle.release_worker(self.sessions, worker=self.worker_name)
        for model, count in released.items():
            log.info("worker %s put %d interrupted images of %s back in the queue", self.worker_name, count, model)
            lifecycle.publish_work(self.queue, model=model, images=count, max_batch=self.max_batch)
        if self.heartbeat is not None:
            self.heartbeat.stop()
        self.engine.dispose()


def runner_factory(spec: str) -> Callable[[ModelEntry, str, Path], PipelineRunner]:
    """A plug-in runner `package.module:callable` taking (model entry, device, LoRA dir).

    The hook lets a benchmark simulate GPUs with a fixed sleep, and fault tests inject
    out-of-memory errors or crashes, while the rest of the worker stays the real one.
    """
    module_name, _, attribute = spec.partition(":")
    if not attribute:
        raise ValueError(f"SDFARM_RUNNER={spec!r}: expected 'diffusers' or 'package.module:callable'")
    return getattr(importlib.import_module(module_name), attribute)


def device_info(device: str) -> dict:
    """Device name, GPU model and memory for the heartbeat."""
    info: dict = {"device": device}
    if device.startswith("cuda"):
        import torch

        properties = torch.cuda.get_device_properties(torch.device(device))
        info.update(gpu_name=properties.name, gpu_memory_mb=properties.total_memory // (1024 * 1024))
    return info


def choose_configuration(runner, shape: Shape, sampler: str, names: list[str], cache: ChoiceCache) -> Choice:
    """The configuration to serve with: the fastest of `names` at `shape` (or the cached choice); eager
    without a search when there is nothing to compare (CPU workers, or a runner that cannot switch)."""
    if not names or not hasattr(runner, "configure"):
        return untuned(getattr(runner, "configuration", "eager"))
    if len(names) == 1:  # one configuration named: nothing to compare
        runner.configure(names[0])
        return untuned(names[0])
    from worker.runner import RenderRequest

    batch = shape.batch
    request = RenderRequest(
        ["tuning"] * batch, [""] * batch, list(range(batch)), shape.steps, 7.5, shape.width, shape.height, sampler
    )
    candidates = [Candidate(name, partial(runner.configure, name)) for name in names]
    return tune(
        candidates,
        lambda _candidate: time_batches(lambda: runner.generate(request, lambda _fraction: None), batch),
        cache,
        tuning_key(runner, shape, names),
    )


def tuning_key(runner, shape: Shape, candidates: list[str]) -> dict:
    """What the fastest configuration depends on: GPU, driver, torch, model weights, shape, candidates."""
    import torch

    gpu, driver = "cpu", None
    if runner.device.startswith("cuda"):
        gpu = torch.cuda.get_device_name(torch.device(runner.device))
        driver = _driver_version()
    return {
        "gpu": gpu,
        "driver": driver,
        "torch": torch.__version__,
        "model_hash": runner.model_hash,
        "shape": asdict(shape),
        "candidates": candidates,
    }


def _driver_version() -> str | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        version = pynvml.nvmlSystemGetDriverVersion()
        return version.decode() if isinstance(version, bytes) else str(version)
    except Exception:  # no NVML: the CUDA runtime's version is the next best thing
        import torch

        return f"cuda {torch.version.cuda}"


def _process_started() -> float:
    """When this worker's Celery process started (the pool child's parent), for the cold-start figure."""
    import psutil

    try:
        return psutil.Process(os.getppid()).create_time()
    except psutil.Error:
        return psutil.Process().create_time()


def overlaps(setting: str, device: str) -> bool:
    """SDFARM_OVERLAP: whether saving and the next claim run beside the render; auto: on a GPU only.

    On a GPU that work would otherwise leave the device idle. On the CPU the renderer's OpenMP
    threads hold every core, and any thread beside them stalls both (each waits for the other at
    every parallel region's end): in line, the CPU renderer came from 0.81-0.86 to 0.88-0.93 of
    the plain loop's speed (BENCHMARKS.md).
    """
    return device.startswith("cuda") if setting == "auto" else setting == "true"


def _compiler_counters() -> dict:
    """Whether torch.compile really took: graph breaks and graphs compiled (a recompilation adds a graph)."""
    try:
        from torch._dynamo.utils import counters

        return {
            "graph_breaks": sum(counters["graph_break"].values()),
            "graphs": counters["stats"].get("unique_graphs", 0),
        }
    except Exception as error:  # counters are torch internals: report their absence, never fail a start
        return {"error": f"{type(error).__name__}: {error}"[:200]}
