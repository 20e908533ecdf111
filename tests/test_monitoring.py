"""The compose `monitoring` profile: Prometheus scrapes the API's /metrics, Grafana has the dashboard."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import yaml

from sdfarm.farm_processes import REPO

MONITORING = REPO / "monitoring"


def test_prometheus_scrapes_the_api_and_grafana_is_provisioned():
    prometheus = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    [job] = prometheus["scrape_configs"]
    assert job["metrics_path"] == "/metrics" and job["static_configs"][0]["targets"] == ["api:8000"]
    datasource = yaml.safe_load((MONITORING / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((MONITORING / "grafana/provisioning/dashboards/sdfarm.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    dashboard = json.loads((MONITORING / "grafana/dashboards/sdfarm.json").read_text())
    assert all(panel["datasource"]["uid"] == uid for panel in dashboard["panels"])


def test_compose_monitoring_profile():
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (.ci/run installs Debian's docker-compose)")
    result = subprocess.run(
        [binary, "-f", str(REPO / "docker-compose.yml"), "--profile", "monitoring", "config"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"]
    mounts = " ".join(str(v) for v in services["prometheus"]["volumes"])
    assert "monitoring/prometheus.yml" in mounts and "/etc/prometheus/prometheus.yml" in mounts
    mounts = " ".join(str(v) for v in services["grafana"]["volumes"])
    assert "/etc/grafana/provisioning" in mounts and "/var/lib/grafana/dashboards" in mounts
