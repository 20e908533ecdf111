"""`GET /api/v1/workers` shows what each worker's warm-up chose and measured, on both databases."""

from __future__ import annotations

from models.db import make_engine, make_session_factory
from worker.heartbeat import Heartbeat
from worker.stats import WorkerStats
from worker.tuning import Choice


def test_workers_show_their_chosen_configuration_and_measured_speed(client, settings):
    engine = make_engine(settings.resolved_database_url)
    stats = WorkerStats()
    heartbeat = Heartbeat(make_session_factory(engine), "gpu0@host", "tiny", stats, 60, {"device": "cuda"})
    heartbeat.beat()
    (starting,) = client.get("/api/v1/workers").json["workers"]
    assert starting["configuration"] is None  # nothing chosen before the model is loaded

    choice = Choice("cuda_graphs", 7.91, measured={"eager": 4.52, "cuda_graphs": 7.91}, tuning_seconds=95.2)
    startup = {"imports_seconds": 6.1, "load_seconds": 2.2, "tuning_seconds": 95.2, "warm_up_seconds": 0.0}
    stats.configured(
        {**choice.as_json(), "shape": {"batch": 8, "width": 512, "height": 512, "steps": 30}, "startup": startup}
    )
    stats.loaded()
    heartbeat.beat()
    engine.dispose()
    (worker,) = client.get("/api/v1/workers").json["workers"]
    configuration = worker["configuration"]
    assert configuration["name"] == "cuda_graphs" and configuration["images_per_second"] == 7.91
    assert configuration["measured"] == {"eager": 4.52, "cuda_graphs": 7.91} and configuration["tuned"] is True
    assert configuration["shape"]["batch"] == 8 and configuration["startup"]["load_seconds"] == 2.2
