"""`sdfarm bench gpu-farm` end to end on the CPU with the tiny model: the three sides, the ratios and
the worker's cold start split come out as JSON (on CUDA the same code runs SD 1.5's architecture)."""

from __future__ import annotations

import json

import torch
from click.testing import CliRunner

from sdfarm.cli import main


def test_gpu_farm_bench_runs_the_three_sides_and_splits_the_cold_start(tmp_path):
    out = tmp_path / "gpu-farm.json"
    options = ["--batch", "2", "--images", "4", "--steps", "2", "--rounds", "1", "--quick", "--out", str(out)]
    result = CliRunner().invoke(main, ["bench", "gpu-farm", *options], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    figures = json.loads(out.read_text())["gpu_farm"]
    assert figures["device"] == ("cpu" if not torch.cuda.is_available() else torch.cuda.get_device_name())
    assert (figures["batch"], figures["steps"], figures["images_per_side_per_round"]) == (2, 2, 4)
    for side in ("plain", "runner", "farm"):
        assert figures["images_per_second"][side]["median"] > 0, side
    assert set(figures["ratios"]) == {
        "runner_over_plain",
        "farm_over_runner",
        "farm_over_plain",
        "farm_cpu_over_plain_cpu",
    }
    for side in ("plain", "runner", "farm"):
        assert figures["cpu_ms_per_image"][side]["median"] > 0, side
    (run,) = figures["farm_runs"]
    assert run["batches"] == 2  # 4 images at batch 2: the worker served the bench's batch size
    cold = figures["cold_start"]["first"]
    assert cold["seconds_to_ready"] > 0
    for part in ("imports_seconds", "load_seconds", "warm_up_seconds", "process_seconds"):
        assert cold[part] > 0, part
    assert cold["process_seconds"] <= cold["seconds_to_ready"] + 1
    # A CPU worker runs eager and spends nothing on tuning.
    assert cold["configuration"]["name"] == "eager" and cold["configuration"]["tuned"] is False
    assert cold["tuning_seconds"] < 0.5


def test_the_gpu_tables_are_made_from_the_check_json():
    from bench.gpu_report import cold_start_table, farm_table, throughput_table

    spread = {"median": 4.5, "min": 4.4, "max": 4.6}
    farm = {"images_per_second": {"plain": spread, "runner": spread, "farm": spread}}
    farm["ratios"] = {
        "runner_over_plain": {"median": 0.99, "min": 0.98, "max": 1.0},
        "farm_over_runner": {"median": 0.97, "min": 0.96, "max": 0.98},
        "farm_over_plain": spread,
    }
    farm["cold_start"] = {"first": {"seconds_to_ready": 12.34, "configuration": {"name": "cuda_graphs"}}}
    check = {
        "gpu-farm-batch-8": {"gpu_farm": farm},
        "gpu-throughput": {"runs": [{"variant": "fused_qkv", "batch": 16, "images_per_second": 7.9}]},
        "gpu-throughput-graphs": {"runs": [{"variant": "cuda_graphs", "batch": 1, "unet_iterations_per_second": 61.5}]},
    }
    assert "| 4.50 (4.40 to 4.60) | 0.990 (0.980 to 1.000) | 0.970 (0.960 to 0.980) | 4.500 (4.400 to 4.600) |" in (
        "\n".join(farm_table(check))
    )
    assert "| 16 | not measured |" in "\n".join(farm_table(check))  # no batch-16 run: said so, not zero
    assert "| first | 12.3 |" in "\n".join(cold_start_table(check)) and "cuda_graphs" in "\n".join(
        cold_start_table(check)
    )
    assert "| fused_qkv | 16 | 7.90 |" in "\n".join(throughput_table(check))
    assert "| cuda_graphs | 1 | not measured | 61.5 |" in "\n".join(throughput_table(check))
    assert "| channels_last | 8 | not measured |" in "\n".join(throughput_table({}))  # before any GPU run


def test_release_folder_assembles_a_loadable_diffusers_folder(tmp_path, monkeypatch):
    """The CUDA bench's SD 1.5 folder, built here from the tiny model's parts in place of the full-size ones."""
    from types import SimpleNamespace

    from transformers import CLIPTextModel

    from models.catalog import ModelCatalog
    from worker.model_build import release
    from worker.model_build.tiny import clip_tokenizer, tiny_text_config, tiny_unet, tiny_vae

    def tiny_release(_architecture):
        text_encoder = CLIPTextModel(tiny_text_config(clip_tokenizer(tmp_path / "tok")))
        unet = tiny_unet(64, text_encoder.config.hidden_size)
        return SimpleNamespace(unet=unet, vae=tiny_vae(64), text_encoder=text_encoder, text_encoder_2=None)

    monkeypatch.setattr(release, "release_components", tiny_release)
    folder = release.release_folder("sd1", tmp_path / "models" / "sd15-random", torch.float16)
    entry = ModelCatalog(tmp_path / "models").get("sd15-random")
    assert entry.kind == "diffusers" and (folder / "model_index.json").is_file()
    from worker.preflight import check_model

    check_model(entry)  # every component present, every weights file whole


def test_the_worker_in_process_bench_runs_both_sides_on_the_same_images():
    from bench import worker_in_process

    figures = worker_in_process.measure(blocks=2, batches=1, batch=4, overlap="true")
    assert figures["images_per_side"] == 8
    for side in ("plain", "worker"):
        assert figures["images_per_second"][side] > 0 and figures["cpu_ms_per_image"][side] > 0, side
    assert figures["worker_over_plain"] > 0


def test_the_throughput_sweep_measures_each_variant_against_eager_on_the_same_seeds(tmp_path, monkeypatch):
    """bench.gpu_throughput on the tiny shapes: one run per variant and batch, each compared with eager's pictures."""
    import runpy
    import sys

    out = tmp_path / "sweep.json"
    arguments = ["--tiny", "--batches", "1,2", "--steps", "2", "--repeats", "1", "--out", str(out)]
    arguments += ["--variants", "eager,channels_last,fused_qkv"]
    monkeypatch.setattr(sys, "argv", ["bench.gpu_throughput", *arguments])
    runpy.run_module("bench.gpu_throughput", run_name="__main__")
    runs = json.loads(out.read_text())["runs"]
    assert [(run["variant"], run["batch"]) for run in runs] == [
        (variant, batch) for variant in ("eager", "channels_last", "fused_qkv") for batch in (1, 2)
    ]
    for run in runs:
        assert run["images_per_second"] > 0, run
        # The same weights in another layout or with fused projections: the same pictures, to float error.
        assert run["max_difference_from_eager"] is not None and run["max_difference_from_eager"] < 1, run


def test_the_throughput_sweep_names_an_unknown_variant(tmp_path, monkeypatch, capsys):
    import runpy
    import sys

    import pytest

    monkeypatch.setattr(sys, "argv", ["bench.gpu_throughput", "--tiny", "--variants", "eager,turbo"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_module("bench.gpu_throughput", run_name="__main__")
    assert exit_.value.code == 2 and "unknown variant 'turbo'" in capsys.readouterr().err
