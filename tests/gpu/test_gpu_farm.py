"""GPU checks: run on a machine with CUDA (`scripts/gpu-check.sh`); skipped here with the reason."""

from __future__ import annotations

import pytest
import torch

from sdfarm.farm_processes import WorkerFleet
from tests.integration.helpers import wait_for_job

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run scripts/gpu-check.sh on one)"),
]


def test_one_worker_per_visible_gpu_runs_a_job(tmp_path, redis_server, models_dir):
    import redis

    from api import create_app
    from sdfarm.migrate import upgrade
    from tests.conftest import make_settings

    redis.Redis.from_url(redis_server.url).flushall()
    url = f"sqlite:///{tmp_path / 'sdfarm.db'}"
    upgrade(url)
    settings = make_settings(tmp_path, url, redis_server.url, models_dir)
    gpus = torch.cuda.device_count()
    fleet = WorkerFleet(settings, tmp_path / "workers.log", "--gpus", "all").start(expect_workers=gpus)
    try:
        client = create_app(settings).test_client()
        job = client.post(
            "/api/v1/jobs", json={"prompts": ["a red circle on a blue background"], "num_images": 8 * gpus, "steps": 10}
        ).json
        done = wait_for_job(client, job["id"])
        workers = client.get("/api/v1/workers").json["workers"]
    finally:
        fleet.stop()
    assert done["status"] == "succeeded"
    assert {w["name"].split("@")[0] for w in workers} == {f"gpu{i}" for i in range(gpus)}
    assert all(w["device"].startswith("cuda") and w["gpu_name"] and w["gpu_memory_mb"] > 0 for w in workers)


def test_out_of_memory_and_nan_paths_on_cuda(models_dir):
    """fp16 on the GPU: the NaN retry decodes in fp32, and a real OOM becomes GpuOutOfMemoryError."""
    from models.catalog import ModelEntry
    from worker.diffusers_runner import DiffusersRunner
    from worker.runner import GpuOutOfMemoryError, RenderRequest

    runner = DiffusersRunner(ModelEntry("tiny", models_dir / "tiny", "diffusers"), "cuda")
    assert runner.pipeline.unet.dtype == torch.float16
    output = runner.generate(RenderRequest(["a cat"] * 2, ["", ""], [1, 2], 4, 7.5, 64, 64, "euler"), lambda _: None)
    assert output.nan == [False, False]
    free, _total = torch.cuda.mem_get_info()
    side = 8 * int((free / 4) ** 0.5 // 8)  # a latent far larger than the free memory allows
    with pytest.raises(GpuOutOfMemoryError):
        runner.generate(RenderRequest(["a cat"], [""], [1], 1, 7.5, side, side, "euler"), lambda _: None)
