"""`/metrics`: Prometheus metrics read from the database and Redis at scrape time.

Every number comes from the shared stores, not from process memory, so any gunicorn process (and
any API replica) answers the same scrape: no multiprocess mode, no per-process counters to add up.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterator
from datetime import timedelta

from flask import Response, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from sqlalchemy import case, func, select

from api.errors import ApiError
from api.farm import Farm, farm
from models.base import UTCDateTime, utcnow
from models.eta import model_throughput
from models.farm_metrics import BATCH_SECONDS_BUCKETS, BATCH_SIZE_BUCKETS, read_histograms
from models.image import FINAL_STATUSES, Image, ImageStatus
from models.job import Job
from models.webhook import WebhookAttempt, WebhookDelivery
from models.worker_record import WorkerRecord

log = logging.getLogger(__name__)
JOB_LATENCY_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)


class FarmCollector:
    """A prometheus_client collector whose `collect()` queries the farm's database and Redis."""

    def __init__(self, source: Farm):
        self.farm = source

    def collect(self) -> Iterator[Metric]:
        """Yield every metric family; a store that does not answer leaves its families out."""
        with self.farm.sessions() as session:
            yield from self._images(session)
            yield from self._workers(session)
            yield from self._job_latency(session)
            yield from self._webhooks(session)
        try:
            yield from self._batches()
        except Exception as error:  # Redis down: the database's metrics still come
            log.warning("batch metrics not read (Redis: %s)", error)

    def _images(self, session) -> Iterator[Metric]:
        images = GaugeMetricFamily("sdfarm_images", "Images by status and model.", labels=["status", "model"])
        finished = CounterMetricFamily(
            "sdfarm_images_finished",
            "Images that reached a final status, by status and model.",
            labels=["status", "model"],
        )
        models = set()
        for status, model, count in session.execute(
            select(Image.status, Image.model, func.count()).group_by(Image.status, Image.model)
        ):
            models.add(model)
            images.add_metric([status, model], count)
            if status in FINAL_STATUSES:
                finished.add_metric([status, model], count)
        yield images
        yield finished
        depth = GaugeMetricFamily(
            "sdfarm_queue_depth", "Images waiting to be claimed, by model and priority.", labels=["model", "priority"]
        )
        for model, priority, count in session.execute(
            select(Image.model, Image.priority, func.count())
            .where(Image.status == ImageStatus.QUEUED)
            .group_by(Image.model, Image.priority)
        ):
            depth.add_metric([model, str(priority)], count)
        yield depth
        rate = GaugeMetricFamily(
            "sdfarm_images_per_second", "Live throughput per model (images finished lately).", labels=["model"]
        )
        models |= {m for (m,) in session.execute(select(WorkerRecord.model).distinct())}
        for model in sorted(models):
            rate.add_metric([model], model_throughput(session, model, self.farm.settings.worker_offline_seconds))
        yield rate

    def _workers(self, session) -> Iterator[Metric]:
        offline_after = utcnow() - timedelta(seconds=self.farm.settings.worker_offline_seconds)
        states = GaugeMetricFamily("sdfarm_workers", "Workers by state and model.", labels=["state", "model"])
        memory = GaugeMetricFamily(
            "sdfarm_worker_gpu_memory_used_bytes", "GPU memory in use (NVML).", labels=["worker", "model"]
        )
        total = GaugeMetricFamily("sdfarm_worker_gpu_memory_total_bytes", "GPU memory.", labels=["worker", "model"])
        busy = GaugeMetricFamily(
            "sdfarm_worker_gpu_utilization_ratio", "GPU utilisation, 0 to 1 (NVML).", labels=["worker", "model"]
        )
        done = CounterMetricFamily(
            "sdfarm_worker_images", "Images each worker process stored since it started.", labels=["worker", "model"]
        )
        counts: dict[tuple[str, str], int] = {}
        for worker in session.scalars(select(WorkerRecord)):
            state = worker.state if worker.last_seen >= offline_after else "offline"
            counts[(state, worker.model)] = counts.get((state, worker.model), 0) + 1
            if state == "offline":
                continue
            labels = [worker.name, worker.model]
            done.add_metric(labels, worker.images_done)
            if worker.gpu_memory_used_mb is not None:
                memory.add_metric(labels, worker.gpu_memory_used_mb * 1024 * 1024)
            if worker.gpu_memory_mb is not None:
                total.add_metric(labels, worker.gpu_memory_mb * 1024 * 1024)
            if worker.gpu_utilization is not None:
                busy.add_metric(labels, worker.gpu_utilization)
        for (state, model), count in sorted(counts.items()):
            states.add_metric([state, model], count)
        yield from (states, done, memory, total, busy)

    def _job_latency(self, session) -> Iterator[Metric]:
        """Submit to last image finished, for every finished job, per model."""
        live = func.sum(case((Image.status.in_([ImageStatus.QUEUED, ImageStatus.RUNNING]), 1), else_=0))
        rows = session.execute(
            select(Job.model, Job.created_at, func.max(Image.finished_at, type_=UTCDateTime()))
            .join(Image, Image.job_id == Job.id)
            .group_by(Job.id, Job.model, Job.created_at)
            .having(live == 0)
        ).all()
        series: dict[str, list[float]] = {}
        for model, created, finished in rows:
            if finished is not None:
                series.setdefault(model, []).append(max((finished - created).total_seconds(), 0.0))
        latency = HistogramMetricFamily(
            "sdfarm_job_latency_seconds", "From submit to the last image finished.", labels=["model"]
        )
        for model, values in sorted(series.items()):
            buckets = [(f"{b:g}", sum(1 for v in values if v <= b)) for b in JOB_LATENCY_BUCKETS]
            latency.add_metric([model], buckets + [("+Inf", len(values))], sum(values))
        yield latency

    def _webhooks(self, session) -> Iterator[Metric]:
        deliveries = GaugeMetricFamily("sdfarm_webhook_deliveries", "Webhook deliveries by status.", labels=["status"])
        for status, count in session.execute(
            select(WebhookDelivery.status, func.count()).group_by(WebhookDelivery.status)
        ):
            deliveries.add_metric([status], count)
        attempts = CounterMetricFamily(
            "sdfarm_webhook_attempts", "Webhook delivery attempts by outcome.", labels=["outcome"]
        )
        for outcome, count in session.execute(
            select(WebhookAttempt.outcome, func.count()).group_by(WebhookAttempt.outcome)
        ):
            attempts.add_metric([outcome], count)
        yield deliveries
        yield attempts

    def _batches(self) -> Iterator[Metric]:
        client = self.farm.queue.redis
        for name, help_text, bounds in (
            ("batch_render_seconds", "Time one pipeline call took, by model.", BATCH_SECONDS_BUCKETS),
            ("batch_size", "Images per pipeline call, by model.", BATCH_SIZE_BUCKETS),
        ):
            family = HistogramMetricFamily(f"sdfarm_{name}", help_text, labels=["model"])
            for model, fields in sorted(read_histograms(client, name).items()):
                buckets = [(f"{b:g}", fields.get(f"le:{b:g}", 0.0)) for b in bounds]
                family.add_metric([model], buckets + [("+Inf", fields.get("count", 0.0))], fields.get("sum", 0.0))
            yield family


def metrics() -> Response:
    """GET /metrics: the Prometheus text format; with SDFARM_METRICS_TOKEN set, only for `Bearer <token>`."""
    token = farm().settings.metrics_token
    if token is not None:
        presented = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(presented.encode(), token.encode()):
            raise ApiError(401, "send the metrics token: Authorization: Bearer <SDFARM_METRICS_TOKEN>")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FarmCollector(farm()))
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
