"""The Celery app's configuration and the render queue: one Redis list per model.

Messages carry no work, only the model's name: a message means "there is work for
this model, claim a batch from the database". The database decides which items and
in what order (priority, then age), so a lost, duplicated or stale message can never
lose or double an image; the reaper re-publishes when queued work has no message.
"""

from __future__ import annotations

import math

import redis
from celery import Celery

from models.settings import Settings

RENDER_TASK = "sdfarm.render_next"
QUEUE_PREFIX = "sdfarm.model."
# Messages kept in flight per model; each run publishes a replacement while work remains.
TOKEN_WINDOW = 64


def queue_name(model: str) -> str:
    """The Redis list that workers of `model` consume."""
    return QUEUE_PREFIX + model


def make_celery(settings: Settings, name: str = "sdfarm") -> Celery:
    """A Celery app configured for long GPU batches; shared by the API (publishing) and workers."""
    app = Celery(name, broker=settings.redis_url, set_as_current=False)
    # The visibility timeout must exceed the hard limit, or Redis would hand a batch
    # that is still running to a second worker. Celery reads it from both places.
    visibility_timeout = int(settings.batch_hard_time_limit * 2)
    app.conf.update(
        # JSON only: no pickle from the network.
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        # Results live in the database; a result backend would only duplicate them.
        task_ignore_result=True,
        # Ack after the batch, so a worker killed mid-batch leaves its message to be redelivered.
        task_acks_late=True,
        # ... including when the child process is killed outright (OOM killer, SIGKILL).
        task_reject_on_worker_lost=True,
        # One message at a time per child: a GPU can run only one batch, and prefetched
        # messages would sit behind it while another worker idles.
        worker_prefetch_multiplier=1,
        # A batch that overruns is interrupted softly (it can still record its failure),
        # then the child is killed and replaced: a hung GPU call cannot block a worker forever.
        task_soft_time_limit=settings.batch_soft_time_limit,
        task_time_limit=settings.batch_hard_time_limit,
        broker_transport_options={"visibility_timeout": visibility_timeout},
        result_backend_transport_options={"visibility_timeout": visibility_timeout},
        # After a lost broker connection the unacked message will be redelivered, so a
        # batch still running would be done twice; cancel it instead (the lease covers it).
        worker_cancel_long_running_tasks_on_connection_loss=True,
        # On SIGTERM the running batch gets this long to finish before it is requeued.
        worker_soft_shutdown_timeout=30.0,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        task_default_queue=queue_name("default"),
        worker_hijack_root_logger=False,
        # Task events (received, started, succeeded) for Flower: a few small messages per batch.
        worker_send_task_events=True,
    )
    return app


class RenderQueue:
    """Publishes "work for model M" messages and reads queue depth from Redis."""

    def __init__(self, celery_app: Celery, redis_url: str):
        self.celery_app = celery_app
        self.redis = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)

    def publish(self, model: str, count: int = 1) -> None:
        """Publish `count` messages for `model` (capped to the in-flight window)."""
        count = min(count, TOKEN_WINDOW)
        with self.celery_app.producer_or_acquire() as producer:
            for _ in range(count):
                self.celery_app.send_task(RENDER_TASK, args=[model], queue=queue_name(model), producer=producer)

    def publish_for_items(self, model: str, items: int, max_batch: int) -> None:
        """Publish enough messages for `items` queued images at `max_batch` per message."""
        if items > 0:
            self.publish(model, math.ceil(items / max_batch))

    def depth(self, model: str) -> int:
        """Messages waiting (not yet taken by a worker) for `model`."""
        return int(self.redis.llen(queue_name(model)))

    def ping(self) -> bool:
        """True when the broker answers."""
        return bool(self.redis.ping())
