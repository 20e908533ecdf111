"""GPU checks: run on a machine with CUDA (`scripts/gpu-check.sh`); skipped here with the reason."""

from __future__ import annotations

import time

import pytest
import torch

from sdfarm.farm_processes import WorkerFleet
from tests.integration.helpers import wait_for_job
from worker.tuning import CONFIGURATIONS

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
    # Each chose a configuration at warm-up (gpu-check.sh sets SDFARM_TUNE=eager,channels_last) and timed its start.
    assert all(w["configuration"]["name"] in CONFIGURATIONS for w in workers)
    assert all(w["configuration"]["startup"]["imports_seconds"] > 0 for w in workers)


def test_out_of_memory_and_nan_paths_on_cuda(models_dir):
    """fp16 on the GPU: the NaN retry decodes in fp32, and a real OOM becomes GpuOutOfMemoryError.

    The out-of-memory case caps this process's share of the GPU at what it already holds plus 512 MiB
    and renders one 8192x8192 image (its VAE decode alone needs several GB), so it fails at once on
    any card: sizing the image from free memory made a 139 GB card build an 8.8 GB CPU noise tensor.
    """
    from models.catalog import ModelEntry
    from worker.diffusers_runner import DiffusersRunner
    from worker.runner import GpuOutOfMemoryError, RenderRequest

    runner = DiffusersRunner(ModelEntry("tiny", models_dir / "tiny", "diffusers"), "cuda")
    assert runner.pipeline.unet.dtype == torch.float16
    output = runner.generate(RenderRequest(["a cat"] * 2, ["", ""], [1, 2], 4, 7.5, 64, 64, "euler"), lambda _: None)
    assert output.nan == [False, False]
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, (torch.cuda.memory_reserved() + 512 * 2**20) / total))
    try:
        started = time.monotonic()
        with pytest.raises(GpuOutOfMemoryError):
            runner.generate(RenderRequest(["a cat"], [""], [1], 1, 7.5, 8192, 8192, "euler"), lambda _: None)
        assert time.monotonic() - started < 30
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    # Still usable afterwards: the worker splits a batch and carries on after an OOM.
    again = runner.generate(RenderRequest(["a cat"], [""], [3], 2, 7.5, 64, 64, "euler"), lambda _: None)
    assert again.nan == [False]


@pytest.mark.parametrize("configuration", ["eager", "channels_last", "cuda_graphs"])
def test_each_tuning_configuration_renders_what_eager_renders(models_dir, configuration):
    """A configuration changes how the UNet runs, never the picture (fp16 noise aside)."""
    import numpy as np

    from models.catalog import ModelEntry
    from worker.diffusers_runner import DiffusersRunner
    from worker.runner import RenderRequest

    runner = DiffusersRunner(ModelEntry("tiny", models_dir / "tiny", "diffusers"), "cuda")
    request = RenderRequest(["a cat", "a dog"], ["", ""], [1, 2], 4, 7.5, 64, 64, "euler")
    reference = [np.asarray(picture, dtype=np.int16) for picture in runner.generate(request, lambda _: None).images]
    runner.configure(configuration)
    for _ in range(2):  # CUDA graphs record on an early call and replay after
        pictures = runner.generate(request, lambda _: None).images
    assert runner.configuration == configuration
    for picture, expected in zip(pictures, reference, strict=True):
        assert np.abs(np.asarray(picture, dtype=np.int16) - expected).mean() < 2.0
