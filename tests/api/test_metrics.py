"""/metrics on a farm without workers: shapes, DB-derived values on both databases, the token."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from models.base import utcnow
from tests.factories import add_job


def scrape(client, **headers) -> dict[str, dict[tuple, float]]:
    """{sample name: {sorted label pairs: value}}."""
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/plain")
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def test_queue_depth_and_images_by_status_come_from_the_database(app, client):
    with app.extensions["sdfarm"].sessions() as session:
        add_job(session, 3, priority=7)
        add_job(session, 2, priority=5)
        add_job(session, 4, status="succeeded", finished_at=utcnow())
    samples = scrape(client)
    depth = samples["sdfarm_queue_depth"]
    assert depth[(("model", "tiny"), ("priority", "7"))] == 3 and depth[(("model", "tiny"), ("priority", "5"))] == 2
    assert samples["sdfarm_images"][(("model", "tiny"), ("status", "queued"))] == 5
    assert samples["sdfarm_images_finished_total"][(("model", "tiny"), ("status", "succeeded"))] == 4
    assert samples["sdfarm_job_latency_seconds_count"][(("model", "tiny"),)] == 1


def test_metrics_token(app, client):
    farm = app.extensions["sdfarm"]
    farm.settings = farm.settings.model_copy(update={"metrics_token": "s3cret"})
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    scrape(client, Authorization="Bearer s3cret")
