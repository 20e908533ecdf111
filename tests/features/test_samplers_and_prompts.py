"""Samplers by A1111 and short names, negative prompts, clip skip and prompts longer than 77 tokens."""

from __future__ import annotations

import pytest

from models.infotext import parse_infotext
from models.samplers import SAMPLERS, find_sampler, sampler_names
from tests.factories import image_row
from tests.features.helpers import difference, render, runner_for
from worker.encoding import infotext_for


@pytest.fixture(scope="module")
def runner(feature_models):
    """One tiny SD 1.x runner for the module (loading is the slow part)."""
    return runner_for(feature_models, "tiny-sd1")


def test_every_short_name_means_the_same_sampler_as_its_label():
    for name in sampler_names():
        sampler = find_sampler(name)
        assert sampler is not None and find_sampler(sampler.label) is sampler


@pytest.mark.parametrize("name", [s.label for s in SAMPLERS])
def test_every_sampler_runs_with_the_tiny_model(runner, name):
    # Two images with different seeds: a batch, and proof the output is not constant.
    first, second = render(
        runner, sampler=name, steps=4, seeds=[1, 2], prompts=["a cat", "a cat"], negative_prompts=["", ""]
    )
    assert first.shape == (64, 64, 3)
    assert difference(first, second) > 0.5


def test_samplers_are_distinct_schedulers(runner):
    configs = {(s.scheduler_class, tuple(sorted(s.overrides.items()))) for s in SAMPLERS}
    assert len(configs) == len(SAMPLERS)
    karras = runner._scheduler_for("DPM++ 2M Karras")
    assert type(karras).__name__ == "DPMSolverMultistepScheduler" and karras.config.use_karras_sigmas
    assert runner._scheduler_for("dpmpp_2m_karras").config == karras.config


@pytest.mark.parametrize("asked", ["DPM++ 2M Karras", "dpmpp_2m_karras", "euler_a", "Euler a", "UniPC"])
def test_infotext_records_the_sampler_name_the_user_asked_for(asked):
    assert find_sampler(asked) is not None
    row = image_row(
        prompt="a cat",
        negative_prompt="",
        seed=1,
        scheduler=asked,
        model_hash="0123456789",
        strength=None,
        clip_skip=1,
        loras=[],
    )
    assert parse_infotext(infotext_for(row))["sampler"] == asked


def test_negative_prompt_and_clip_skip_change_the_image(runner):
    (base,) = render(runner)
    (negative,) = render(runner, negative_prompts=["blurry ugly lowres"])
    (skipped,) = render(runner, clip_skip=2)
    assert difference(base, negative) > 0.5
    assert difference(base, skipped) > 0.5
    (again,) = render(runner)
    assert difference(base, again) == 0


def test_prompts_longer_than_77_tokens_are_chunked_not_cut(runner):
    from worker.prompt_encoding import CHUNK, token_count

    head = " ".join(["red circle"] * 40)  # 80 tokens: already past one chunk
    tokenizer = runner.pipeline.tokenizer
    assert token_count(tokenizer, head) > CHUNK
    (with_tail,) = render(runner, prompts=[head + " " + " ".join(["blue square"] * 20)])
    (without_tail,) = render(runner, prompts=[head])
    # Words after the 77th token still change the picture (a truncating encoder would ignore them).
    assert difference(with_tail, without_tail) > 0.5


def test_long_prompts_batch_with_short_ones_and_negatives(runner):
    long_prompt = " ".join(["green tree"] * 50)
    pictures = render(
        runner,
        prompts=[long_prompt, "a cat"],
        negative_prompts=["blurry", " ".join(["ugly"] * 90)],
        seeds=[1, 2],
        clip_skip=2,
    )
    assert len(pictures) == 2


def test_sdxl_long_prompt_and_clip_skip(feature_models):
    xl = runner_for(feature_models, "tiny-xl")
    (base,) = render(xl)
    (skipped,) = render(xl, clip_skip=2)
    (long,) = render(xl, prompts=[" ".join(["red circle"] * 60)])
    assert difference(base, skipped) > 0.5 and long.shape == (64, 64, 3)
