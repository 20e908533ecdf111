"""Warm-up tuning: the fastest candidate by measured time wins, the choice is cached by its key and
reused on the next start, and CPU workers use eager without a search."""

from __future__ import annotations

import time

import pytest

from worker.context import choose_configuration
from worker.runner import PipelineRunner, RenderOutput, RenderRequest
from worker.tuning import (
    CONFIGURATIONS,
    Candidate,
    ChoiceCache,
    Shape,
    time_batches,
    tune,
    tuning_candidates,
    warm_up_samplers,
)

KEY = {"gpu": "H200", "driver": "580", "torch": "2.11", "model_hash": "abc", "shape": [8, 512, 512, 30]}


class Recorder:
    """Fake candidates: each applies by recording its name; `speeds` says what measuring it returns."""

    def __init__(self, speeds: dict[str, float | Exception]):
        self.speeds = speeds
        self.applied: list[str] = []
        self.measured: list[str] = []

    def candidates(self) -> list[Candidate]:
        return [Candidate(name, lambda name=name: self.applied.append(name)) for name in self.speeds]

    def measure(self, candidate: Candidate) -> float:
        self.measured.append(candidate.name)
        speed = self.speeds[candidate.name]
        if isinstance(speed, Exception):
            raise speed
        return speed


def test_the_fastest_candidate_is_chosen_applied_last_and_cached(tmp_path):
    cache = ChoiceCache(tmp_path)
    fakes = Recorder({"eager": 4.5, "channels_last": 4.2, "compile": 6.1, "cuda_graphs": RuntimeError("no Triton")})
    choice = tune(fakes.candidates(), fakes.measure, cache, KEY)
    assert choice.name == "compile" and choice.images_per_second == 6.1 and not choice.from_cache
    assert fakes.measured == ["eager", "channels_last", "compile", "cuda_graphs"]
    assert fakes.applied[-1] == "compile"  # the runner ends in the chosen configuration
    assert choice.measured["cuda_graphs"].startswith("RuntimeError: no Triton")
    assert cache.get(KEY)["name"] == "compile"


def test_the_next_start_reuses_the_cached_choice_without_measuring(tmp_path):
    tune(
        Recorder({"eager": 1.0, "compile": 2.0}).candidates(),
        Recorder({"eager": 1.0, "compile": 2.0}).measure,
        ChoiceCache(tmp_path),
        KEY,
    )
    # Timings that would now pick eager: the cache answers first, so nothing is measured.
    again = Recorder({"eager": 9.0, "compile": 1.0})
    choice = tune(again.candidates(), again.measure, ChoiceCache(tmp_path), KEY)
    assert choice.from_cache and choice.name == "compile" and choice.images_per_second == 2.0
    assert again.measured == [] and again.applied == ["compile"]


def test_another_key_searches_again(tmp_path):
    cache = ChoiceCache(tmp_path)
    tune(
        Recorder({"eager": 1.0, "compile": 2.0}).candidates(),
        Recorder({"eager": 1.0, "compile": 2.0}).measure,
        cache,
        KEY,
    )
    other = Recorder({"eager": 3.0, "compile": 2.0})
    choice = tune(other.candidates(), other.measure, cache, {**KEY, "driver": "590"})
    assert not choice.from_cache and choice.name == "eager" and other.measured == ["eager", "compile"]


def test_a_corrupt_cache_file_means_tuning_again(tmp_path):
    cache = ChoiceCache(tmp_path)
    (tmp_path / f"{cache.key(KEY)}.json").write_text("{not json")
    fakes = Recorder({"eager": 1.0, "compile": 2.0})
    assert tune(fakes.candidates(), fakes.measure, cache, KEY).name == "compile"
    assert fakes.measured == ["eager", "compile"]


def test_when_every_candidate_fails_eager_runs_and_nothing_is_cached(tmp_path):
    cache = ChoiceCache(tmp_path)
    fakes = Recorder({"eager": RuntimeError("a"), "compile": RuntimeError("b")})
    choice = tune(fakes.candidates(), fakes.measure, cache, KEY)
    assert choice.name == "eager" and choice.images_per_second is None and fakes.applied[-1] == "eager"
    assert cache.get(KEY) is None


def test_a_short_batch_is_timed_over_enough_calls_to_outlast_a_burst():
    calls = []

    def batch():
        calls.append(time.perf_counter())
        time.sleep(0.01)

    assert 2 / 0.03 < time_batches(batch, 2, min_seconds=0.1) < 2 / 0.01
    assert len(calls) >= 1 + 10  # the untimed first call, then 0.1 s of timed ones
    calls.clear()
    time_batches(lambda: (calls.append(1), time.sleep(0.06)), 1, min_seconds=0.1)
    assert len(calls) == 1 + 2  # long calls: the two repeats already outlast min_seconds


def test_which_candidates_a_worker_tries():
    assert tuning_candidates("auto", "cpu", False) == []  # CPU workers: eager, no tuning cost
    assert tuning_candidates("auto", "cuda", False) == list(CONFIGURATIONS)
    assert tuning_candidates("auto", "cuda", True) == []  # SDFARM_COMPILE compiled it at load already
    assert tuning_candidates("off", "cuda", False) == []
    assert tuning_candidates("eager, cuda_graphs", "cuda", False) == ["eager", "cuda_graphs"]
    with pytest.raises(ValueError, match="SDFARM_TUNE: unknown configuration \\['fast'\\]"):
        tuning_candidates("eager,fast", "cuda", False)


class SwitchingRunner(PipelineRunner):
    """A runner whose configurations take the time the test gives them (seconds per image)."""

    model_name, model_hash, device = "fake", "f00d", "cuda"

    def __init__(self, seconds_per_image: dict[str, float]):
        self.seconds_per_image = seconds_per_image
        self.configuration = "eager"
        self.calls: list[tuple[str, int]] = []

    def configure(self, name: str) -> None:
        self.configuration = name

    def generate(self, request: RenderRequest, on_progress) -> RenderOutput:
        self.calls.append((self.configuration, len(request)))
        time.sleep(self.seconds_per_image[self.configuration] * len(request))
        return RenderOutput(images=[], nan=[])


def test_a_worker_start_times_real_calls_and_the_next_start_reuses_the_choice(tmp_path, monkeypatch):
    monkeypatch.setattr("worker.context.tuning_key", lambda runner, shape, names: {**KEY, "names": names})
    shape = Shape(batch=2, width=64, height=64, steps=3)
    names = ["eager", "channels_last", "cuda_graphs"]
    first = SwitchingRunner({"eager": 0.02, "channels_last": 0.03, "cuda_graphs": 0.005})
    choice = choose_configuration(first, shape, "euler", names, ChoiceCache(tmp_path))
    assert choice.name == "cuda_graphs" and first.configuration == "cuda_graphs"
    assert choice.measured["cuda_graphs"] > choice.measured["eager"] > choice.measured["channels_last"]
    assert {size for _, size in first.calls} == {2}  # timed at the batch size the worker serves

    second = SwitchingRunner({"eager": 0.02, "channels_last": 0.03, "cuda_graphs": 0.005})
    again = choose_configuration(second, shape, "euler", names, ChoiceCache(tmp_path))
    assert again.from_cache and again.name == "cuda_graphs" and second.configuration == "cuda_graphs"
    assert second.calls == []  # no tuning cost on the second start


def test_a_cpu_worker_runs_eager_without_any_timed_call(tmp_path):
    runner = SwitchingRunner({"eager": 0.0})
    runner.device = "cpu"
    choice = choose_configuration(
        runner, Shape(4, 64, 64, 10), "euler", tuning_candidates("auto", "cpu", False), ChoiceCache(tmp_path)
    )
    assert choice.name == "eager" and not choice.tuned and runner.calls == []
    assert list(tmp_path.iterdir()) == []


def test_the_diffusers_runner_switches_memory_format_and_back(models_dir):
    import torch

    from models.catalog import ModelEntry
    from worker.diffusers_runner import DiffusersRunner

    runner = DiffusersRunner(ModelEntry("tiny", models_dir / "tiny", "diffusers"), "cpu")
    weight = next(p for p in runner.pipeline.unet.parameters() if p.dim() == 4)
    assert runner.configuration == "eager" and weight.is_contiguous()
    request = RenderRequest(["a cat"], [""], [1], 2, 7.5, 64, 64, "euler")
    before = runner.generate(request, lambda _: None).images[0]
    runner.configure("channels_last")
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    after = runner.generate(request, lambda _: None).images[0]
    assert max(abs(a - b) for a, b in zip(before.tobytes(), after.tobytes(), strict=True)) <= 2
    runner.configure("eager")
    assert weight.is_contiguous() and runner.pipeline.unet is runner._eager_unet
    with pytest.raises(ValueError, match="unknown configuration 'fastest'"):
        runner.configure("fastest")


def test_fused_projections_render_eager_pictures_and_a_lora_batch_uses_the_layers_it_adapts(models_dir, tmp_path):
    from models.catalog import ModelEntry
    from tests.features.lora_factory import make_tiny_lora
    from worker.diffusers_runner import DiffusersRunner

    make_tiny_lora(models_dir / "tiny", tmp_path / "loras" / "style.safetensors")
    runner = DiffusersRunner(ModelEntry("tiny", models_dir / "tiny", "diffusers"), "cpu", lora_dir=tmp_path / "loras")
    base = RenderRequest(["a cat", "a dog"], ["", ""], [1, 2], 2, 7.5, 64, 64, "euler")
    styled = RenderRequest(["a cat", "a dog"], ["", ""], [1, 2], 2, 7.5, 64, 64, "euler", loras=[{"name": "style"}])

    def pixels(request: RenderRequest) -> list[bytes]:
        return [image.tobytes() for image in runner.generate(request, lambda _: None).images]

    def furthest(first: list[bytes], second: list[bytes]) -> int:
        return max(abs(a - b) for one, two in zip(first, second, strict=True) for a, b in zip(one, two, strict=True))

    def processors() -> set[str]:
        return {type(processor).__name__ for processor in runner._eager_unet.attn_processors.values()}

    eager_base, eager_styled = pixels(base), pixels(styled)
    assert furthest(eager_base, eager_styled) > 10  # the LoRA changes the pictures
    runner.configure("fused_qkv")
    assert processors() == {"FusedAttnProcessor2_0"}
    assert furthest(pixels(base), eager_base) <= 2
    # A LoRA adapts the separate projections, which fused ones would bypass: its batch runs unfused.
    assert furthest(pixels(styled), eager_styled) <= 2 and "FusedAttnProcessor2_0" not in processors()
    assert furthest(pixels(base), eager_base) <= 2 and processors() == {"FusedAttnProcessor2_0"}
    runner.configure("eager")
    assert "FusedAttnProcessor2_0" not in processors() and pixels(base) == eager_base

    def cannot_fuse():
        raise ValueError("not supported for this VAE")

    runner.pipeline.vae.fuse_qkv_projections = cannot_fuse  # a model diffusers cannot fuse: the candidate fails
    with pytest.raises(ValueError, match="not supported"):
        runner.configure("fused_qkv")
    assert "FusedAttnProcessor2_0" not in processors() and pixels(base) == eager_base  # left as it was


def test_a_compiled_unet_serves_what_warm_up_compiled_and_runs_anything_else_eager(models_dir):
    """Real torch.compile on the CPU (about two minutes on two cores, seconds with a warm Inductor cache)."""
    import torch
    from torch._dynamo.utils import counters

    from models.catalog import ModelEntry
    from worker.context import WorkerContext
    from worker.diffusers_runner import DiffusersRunner

    runner = DiffusersRunner(ModelEntry("tiny", models_dir / "tiny", "diffusers"), "cpu")

    def request(batch: int, sampler: str) -> RenderRequest:
        return RenderRequest(["a cat", "a dog"][:batch], [""] * batch, [1, 2][:batch], 2, 7.5, 64, 64, sampler)

    def pixels(batch: int, sampler: str) -> list[bytes]:
        return [image.tobytes() for image in runner.generate(request(batch, sampler), lambda _: None).images]

    eager_served, eager_smaller = pixels(2, "dpmpp_2m"), pixels(1, "euler")
    graphs_before = counters["stats"]["unique_graphs"]
    try:
        runner.configure("compile")
        assert warm_up_samplers("pndm") == ["pndm", "euler", "ddim"]
        for sampler in warm_up_samplers("pndm"):
            WorkerContext._warm_up(runner, Shape(batch=2, width=64, height=64, steps=2), sampler)
        graphs = counters["stats"]["unique_graphs"]
        assert graphs == graphs_before + 2 and not counters["graph_break"]  # integer and float timesteps

        torch.compiler.set_stance("fail_on_recompile")  # raises unless a warmed graph serves the call
        compiled_served = pixels(2, "dpmpp_2m")  # integer timesteps, like pndm's
        pixels(2, "euler_a")  # float timesteps, like euler's
        for eager, compiled in zip(eager_served, compiled_served, strict=True):
            assert max(abs(a - b) for a, b in zip(eager, compiled, strict=True)) <= 3

        runner.compiled_shapes_only()
        assert pixels(1, "euler") == eager_smaller  # another batch size: eager, exactly
        assert counters["stats"]["unique_graphs"] == graphs  # and no graph compiled mid-job
    finally:
        runner.configure("eager")  # also sets the process's compile stance back for other tests
