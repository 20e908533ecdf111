"""/metrics on a farm with a real worker: values move as a job runs, and the Grafana dashboard
queries only metric names the farm exports."""

from __future__ import annotations

import json
import re
import time

from prometheus_client.parser import text_string_to_metric_families

from sdfarm.farm_processes import REPO
from tests.integration.helpers import wait_for_job

DASHBOARD = REPO / "monitoring" / "grafana" / "dashboards" / "sdfarm.json"


def scrape(client) -> tuple[set[str], dict[str, dict[tuple, float]]]:
    """(family names, {sample name: {label pairs: value}})."""
    text = client.get("/metrics").get_data(as_text=True)
    families, samples = set(), {}
    for family in text_string_to_metric_families(text):
        families.add(family.name)
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return families, samples


def _total(samples: dict, name: str, **labels) -> float:
    return sum(v for k, v in samples.get(name, {}).items() if set(labels.items()) <= set(k))


def test_values_move_while_a_job_runs(farm):
    _, before = scrape(farm.client)
    assert _total(before, "sdfarm_workers", state="idle", model="tiny") == 1
    job = farm.client.post("/api/v1/jobs", json={"prompts": ["a", "b", "c"], "num_images": 2, "steps": 2}).json
    _, queued = scrape(farm.client)
    assert _total(queued, "sdfarm_images", model="tiny") == _total(before, "sdfarm_images", model="tiny") + 6
    wait_for_job(farm.client, job["id"])
    _, after = scrape(farm.client)
    gained = _total(after, "sdfarm_images_finished_total", status="succeeded", model="tiny") - _total(
        before, "sdfarm_images_finished_total", status="succeeded", model="tiny"
    )
    assert gained == 6
    assert _total(after, "sdfarm_batch_render_seconds_count", model="tiny") > _total(
        before, "sdfarm_batch_render_seconds_count", model="tiny"
    )
    assert _total(after, "sdfarm_batch_size_sum", model="tiny") - _total(before, "sdfarm_batch_size_sum") >= 6
    assert _total(after, "sdfarm_job_latency_seconds_count", model="tiny") >= 1
    assert _total(after, "sdfarm_images_per_second", model="tiny") > 0
    deadline = time.monotonic() + 30  # the worker's own count arrives with its next heartbeat
    while _total(after, "sdfarm_worker_images_total", model="tiny") < 6 and time.monotonic() < deadline:
        time.sleep(0.5)
        _, after = scrape(farm.client)
    assert _total(after, "sdfarm_worker_images_total", model="tiny") >= 6
    # A CPU worker has no NVML: the GPU series are absent, not zero.
    assert not after.get("sdfarm_worker_gpu_memory_used_bytes")


def test_dashboard_uses_only_exported_metric_names(farm):
    families, samples = scrape(farm.client)
    exported = set(samples) | families
    for family in families:  # a family's series: _total, _bucket, _count, _sum
        exported |= {family + suffix for suffix in ("_total", "_bucket", "_count", "_sum")}
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert len(expressions) >= 12
    used = {name for expr in expressions for name in re.findall(r"\bsdfarm_[a-z_]+\b", expr)}
    assert used and used <= exported, f"not exported: {sorted(used - exported)}"
    # Every exported family is on the dashboard somewhere.
    assert {f for f in families if f.startswith("sdfarm_")} <= {
        re.sub(r"_(total|bucket|count|sum)$", "", name) for name in used
    } | {"sdfarm_worker_images", "sdfarm_images"}
