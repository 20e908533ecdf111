"""docker-compose.yml (control host, or a whole farm on one machine) and docker-compose.worker.yml
(a GPU-only host) checked by a real compose implementation, then for what matters in them."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import yaml

from models.queue import make_celery
from models.settings import Settings
from sdfarm.farm_processes import REPO

# What a GPU host is given: the control host's three URLs, credentials and its own name.
WORKER_HOST_ENV = {
    "SDFARM_DATABASE_URL": "postgresql+psycopg://sdfarm:pw@control:5432/sdfarm?sslmode=require",
    "SDFARM_REDIS_URL": "rediss://:pw@control:6379/0?ssl_cert_reqs=required",
    "SDFARM_OBJECT_STORE": "s3://sdfarm/images",
    "SDFARM_S3_ENDPOINT_URL": "http://control:9000",
    "SDFARM_HOST_NAME": "gpu-host-1",
}


def _config(file: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (.ci/run installs Debian's docker-compose)")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SDFARM_", "AWS_", "FLOWER_"))}
    return subprocess.run(
        [binary, "-f", str(REPO / file), "config"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        env={**clean, **env},
    )


@pytest.fixture(scope="module")
def compose() -> dict:
    result = _config("docker-compose.yml", {})
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def worker_host() -> dict:
    result = _config("docker-compose.worker.yml", WORKER_HOST_ENV)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_services_and_volumes(compose):
    expected = {"redis", "postgres", "minio", "minio-init", "migrate", "api", "worker", "worker-cpu", "flower"}
    assert expected <= set(compose["services"])
    assert {"minio", "postgres", "redis"} <= set(compose["volumes"]) and "objects" not in compose["volumes"]


def test_redis_is_persistent_and_postgres_has_a_healthcheck(compose):
    services = compose["services"]
    assert "--appendonly" in services["redis"]["command"] and "yes" in services["redis"]["command"]
    assert "--requirepass" in services["redis"]["command"]
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])


def test_migrate_runs_once_before_api_and_workers(compose):
    services = compose["services"]
    assert services["migrate"]["command"] == ["sdfarm", "db", "upgrade"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", "worker", "worker-cpu"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_images_go_to_minio_whose_bucket_an_init_container_creates(compose):
    services = compose["services"]
    assert services["minio"]["command"][:2] == ["server", "/data"] and "mc" in services["minio"]["healthcheck"]["test"]
    init = services["minio-init"]
    assert "mc mb --ignore-existing farm/sdfarm" in " ".join(init["command"])
    assert init["depends_on"]["minio"]["condition"] == "service_healthy"
    for name in ("api", "worker", "worker-cpu"):
        env = services[name]["environment"]
        assert (
            env["SDFARM_OBJECT_STORE"] == "s3://sdfarm/images" and env["SDFARM_S3_ENDPOINT_URL"] == "http://minio:9000"
        )
        assert env["AWS_ACCESS_KEY_ID"] == services["minio"]["environment"]["MINIO_ROOT_USER"]
        assert env["AWS_SECRET_ACCESS_KEY"] == services["minio"]["environment"]["MINIO_ROOT_PASSWORD"]
        assert services[name]["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"
        assert not any("/data/objects" in str(volume) for volume in services[name].get("volumes", []))


def test_api_worker_and_profiles(compose):
    services = compose["services"]
    assert services["api"]["command"][:2] == ["sdfarm", "api"] and "healthcheck" in services["api"]
    devices = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    # One container sees every GPU and its supervisor pins one worker process to each.
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"] and devices[0]["count"] == "all"
    assert services["worker"]["command"] == ["sdfarm", "worker", "--gpus", "all"]
    assert services["worker-cpu"]["profiles"] == ["cpu"] and "none" in services["worker-cpu"]["command"]
    for name in ("api", "worker"):
        env = services[name]["environment"]
        assert env["SDFARM_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert env["SDFARM_REDIS_URL"] == "redis://:sdfarm@redis:6379/0"
        assert "/models" in " ".join(str(v) for v in services[name]["volumes"])


def test_health_checks_only_where_a_port_is_served(compose):
    services = compose["services"]
    checked = {name for name, service in services.items() if "healthcheck" in service}
    assert checked == {"redis", "postgres", "minio", "api"}
    assert "HEALTHCHECK" not in (REPO / "Dockerfile").read_text()


def test_flower_needs_basic_auth_and_workers_send_task_events(compose):
    flower = compose["services"]["flower"]
    script = " ".join(flower["command"]).replace("$$", "$")  # compose v1 prints the escaped form
    assert 'test -n "$FLOWER_BASIC_AUTH"' in script and "exit 1" in script and "flower --port=5555" in script
    assert "FLOWER_BASIC_AUTH" in flower["environment"]
    assert make_celery(Settings()).conf.worker_send_task_events is True


def test_a_gpu_host_needs_three_urls_and_a_name(worker_host):
    assert list(worker_host["services"]) == ["worker"]
    worker = worker_host["services"]["worker"]
    assert worker["command"] == ["sdfarm", "worker", "--gpus", "all"]
    assert worker["deploy"]["resources"]["reservations"]["devices"][0]["count"] == "all"
    for name, value in WORKER_HOST_ENV.items():
        assert worker["environment"][name] == value  # TLS options and passwords pass through
    assert "healthcheck" not in worker
    missing = _config(
        "docker-compose.worker.yml", {k: v for k, v in WORKER_HOST_ENV.items() if k != "SDFARM_HOST_NAME"}
    )
    assert missing.returncode != 0 and "set SDFARM_HOST_NAME to a name no other host of the farm uses" in missing.stderr


def test_dockerfile_uses_cuda_runtime_a_cached_torch_layer_and_a_non_root_user():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert dockerfile.startswith("# ") and "FROM nvidia/cuda:" in dockerfile and "runtime" in dockerfile
    users = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("USER ")]
    assert users and users[-1] != "root"
    # Torch is installed before the source is copied, so a code change reuses its layer.
    assert dockerfile.index("download.pytorch.org/whl/cu") < dockerfile.index("COPY . .")


def test_api_keeps_auth_on_so_other_services_may_call_it_by_name(compose):
    # The DNS-rebinding guard (Host must be loopback or in SDFARM_ALLOWED_HOSTS) applies only with auth
    # off; compose's API has keys on, so Prometheus's scrape of `api:8000` is answered.
    assert compose["services"]["api"]["environment"]["SDFARM_AUTH"] == "on"
