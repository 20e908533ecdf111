"""One Celery worker process serving one model on one device: `python -m worker.celery_worker`.

Started by `sdfarm worker` (one per GPU); runs a prefork pool with exactly one child,
which owns the pipeline. The parent only talks to Redis, so it never imports torch.
"""

from __future__ import annotations

import argparse
import logging
import warnings

from celery import Celery
from celery.apps import worker as celery_worker_app
from celery.exceptions import SecurityWarning
from celery.signals import setup_logging, worker_process_init, worker_process_shutdown

from models.logging_config import configure_logging, say_json, set_process_fields
from models.queue import RENDER_TASK, make_celery, queue_name
from models.settings import Settings
from worker.context import WorkerContext

log = logging.getLogger("sdfarm.worker")

_context: WorkerContext | None = None


def create_worker_app(settings: Settings, worker_name: str, model: str, max_batch: int) -> Celery:
    """The Celery app of a worker: the shared configuration plus the render task and process hooks."""
    app = make_celery(settings)

    @app.task(name=RENDER_TASK)
    def render_next(requested_model: str) -> int:
        """Claim one batch of `requested_model` from the database and render it."""
        if _context is None:
            raise RuntimeError("worker process not initialised")
        if requested_model != _context.model:
            log.error("message for model %s reached a worker of %s; ignoring it", requested_model, _context.model)
            return 0
        return _context.wait_ready().run_next(requested_model)

    @worker_process_init.connect(weak=False)
    def start_child(**_kwargs) -> None:
        global _context
        _context = WorkerContext(settings, app, worker_name, model, max_batch)
        _context.start()

    @worker_process_shutdown.connect(weak=False)
    def stop_child(**_kwargs) -> None:
        if _context is not None:
            _context.shutdown()

    return app


def main(argv: list[str] | None = None) -> None:
    """Parse the worker's arguments and run it until a shutdown signal."""
    parser = argparse.ArgumentParser(description="Run one sdfarm Celery worker (normally started by `sdfarm worker`).")
    parser.add_argument("--name", required=True, help="Celery node name, e.g. gpu0@host")
    parser.add_argument("--model", required=True, help="model this worker serves")
    parser.add_argument("--max-batch", type=int, default=None)
    parser.add_argument("--loglevel", default="INFO")
    args = parser.parse_args(argv)
    settings = Settings()
    max_batch = args.max_batch or settings.max_batch
    configure_logging(settings.log_format, args.loglevel)
    set_process_fields(worker=args.name, model=args.model)

    @setup_logging.connect(weak=False)
    def _keep_farm_logging(**_kwargs) -> None:
        # A receiver here stops Celery from installing its own handlers: its lines use the farm's format.
        configure_logging(settings.log_format, args.loglevel)

    # Celery warns on every start as root (containers, many GPU hosts) and tells the user to pass --uid,
    # which sdfarm does not take. Its risk is unpickling messages as root; the farm accepts JSON only
    # (models/queue.py), and Celery itself refuses to start as root if pickle were ever accepted.
    warnings.filterwarnings("ignore", message=r"(?s).*superuser privileges", category=SecurityWarning)
    app = create_worker_app(settings, args.name, args.model, max_batch)
    quiet = []
    if settings.log_format == "json":
        # Celery prints its banner and its shutdown notices itself, outside logging: no banner, and the
        # notices as JSON lines (written lock-free, as they come from signal handlers).
        quiet = ["--quiet"]
        celery_worker_app.safe_say = say_json
    app.worker_main(
        [
            *quiet,
            "worker",
            "--pool=prefork",
            "--concurrency=1",
            f"--hostname={args.name}",
            f"--queues={queue_name(args.model)}",
            f"--loglevel={args.loglevel}",
            # The database holds worker state; gossip and mingle only add start-up delay.
            "--without-gossip",
            "--without-mingle",
        ]
    )


if __name__ == "__main__":
    main()
