"""docker-compose.yml checked by a real compose implementation, then for what matters in it."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from sdfarm.farm_processes import REPO


@pytest.fixture(scope="module")
def compose() -> dict:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (.ci/run installs Debian's docker-compose)")
    result = subprocess.run(
        [binary, "-f", str(REPO / "docker-compose.yml"), "config"], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_services_and_volumes(compose):
    assert {"redis", "postgres", "migrate", "api", "worker", "worker-cpu", "flower"} <= set(compose["services"])
    assert {"objects", "postgres", "redis"} <= set(compose["volumes"])


def test_redis_is_persistent_and_postgres_has_a_healthcheck(compose):
    services = compose["services"]
    assert "--appendonly" in services["redis"]["command"] and "yes" in services["redis"]["command"]
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])


def test_migrate_runs_once_before_api_and_workers(compose):
    services = compose["services"]
    assert services["migrate"]["command"] == ["sdfarm", "db", "upgrade"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", "worker", "worker-cpu"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_api_worker_and_profiles(compose):
    services = compose["services"]
    assert services["api"]["command"][:2] == ["sdfarm", "api"] and "healthcheck" in services["api"]
    devices = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert services["worker-cpu"]["profiles"] == ["cpu"] and "none" in services["worker-cpu"]["command"]
    assert "flower" in services["flower"]["command"]
    for name in ("api", "worker"):
        env = services[name]["environment"]
        assert env["SDFARM_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert env["SDFARM_REDIS_URL"] == "redis://redis:6379/0"
        mounts = " ".join(str(v) for v in services[name]["volumes"])
        assert "/data/objects" in mounts and "/models" in mounts


def test_dockerfile_uses_cuda_runtime_and_a_non_root_user():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert dockerfile.startswith("# ") and "FROM nvidia/cuda:" in dockerfile and "runtime" in dockerfile
    users = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("USER ")]
    assert users and users[-1] != "root"
