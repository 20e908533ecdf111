"""AUTOMATIC1111 infotext: our format round-trips, and a real A1111 string parses."""

from __future__ import annotations

import pytest

from models.infotext import format_infotext, parse_infotext


def test_round_trip_with_commas_colons_and_quotes():
    params = {
        "Steps": 30,
        "Sampler": "DPM++ 2M Karras",
        "CFG scale": 7.5,
        "Seed": 123,
        "Size": "512x768",
        "Model hash": "6ce0161689",
        "Model": "v1-5",
        "Lora hashes": 'a: 1, b: "2"',
        "Clip skip": None,
    }
    text = format_infotext('a cat, on a mat: "yes"', "blurry, low quality", params)
    assert "Clip skip" not in text
    parsed = parse_infotext(text)
    assert parsed["prompt"] == 'a cat, on a mat: "yes"'
    assert parsed["negative_prompt"] == "blurry, low quality"
    assert parsed["params"]["Lora hashes"] == 'a: 1, b: "2"'
    assert (parsed["steps"], parsed["seed"], parsed["guidance_scale"]) == (30, 123, 7.5)
    assert (parsed["width"], parsed["height"], parsed["sampler"]) == (512, 768, "DPM++ 2M Karras")


def test_parses_a1111_sample_with_schedule_type_and_multiline_prompt():
    text = (
        "masterpiece, best quality,\n1girl, (smile:1.2)\n"
        "Negative prompt: lowres, bad anatomy\n"
        "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 3367470366, "
        "Size: 512x768, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.7, "
        'Clip skip: 2, Lora hashes: "add_detail: 7c6bad76eb54", Version: v1.9.4'
    )
    parsed = parse_infotext(text)
    assert parsed["prompt"] == "masterpiece, best quality,\n1girl, (smile:1.2)"
    assert parsed["negative_prompt"] == "lowres, bad anatomy"
    assert parsed["sampler"] == "DPM++ 2M Karras"
    assert (parsed["seed"], parsed["clip_skip"], parsed["model_hash"]) == (3367470366, 2, "6ce0161689")
    assert parsed["params"]["Lora hashes"] == "add_detail: 7c6bad76eb54"


def test_prompt_only_text_has_no_params():
    parsed = parse_infotext("just a prompt")
    assert parsed["prompt"] == "just a prompt" and parsed["params"] == {}


# --- Parsing takes linear time, whatever the text (issue #12: 368 bytes once took 61 s) ---

import time  # noqa: E402

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from models.infotext import MAX_INFOTEXT_BYTES, parse_params_line  # noqa: E402

# Generous for a loaded CI machine; the linear scanner takes about 20 ms for the largest text,
# the old regular expression more than a minute for 368 bytes.
SECONDS_PER_PARSE = 1.0


def _timed_parse(text: str) -> dict:
    started = time.perf_counter()
    parsed = parse_infotext(text)
    elapsed = time.perf_counter() - started
    assert elapsed < SECONDS_PER_PARSE, f"{len(text)} characters took {elapsed:.2f} s"
    return parsed


def _repeated_to_limit(head: str, fragment: str, tail: str) -> str:
    count = (MAX_INFOTEXT_BYTES - len(head) - len(tail)) // max(1, len(fragment.encode()))
    return head + fragment * count + tail


def test_the_reported_redos_text_parses_at_once():
    for count in (40, 400, (MAX_INFOTEXT_BYTES - 20) // 6):
        parsed = _timed_parse("prompt\n" + 'k: "' + ', k: "' * count + ",x,")
        assert parsed["prompt"].startswith("prompt")


ADVERSARIAL_FRAGMENTS = [
    ', k: "',
    'k: "\\"',
    'a: "b", ',
    "a: b, ",
    'a: ", ',
    "\\",
    '"',
    "k k: ",
    ": ",
    ', k: "\\\\',
    "Negative prompt: x\n",
]


@pytest.mark.parametrize("fragment", ADVERSARIAL_FRAGMENTS)
@pytest.mark.parametrize("tail", ["", ",x,", '"', "\\", ": "])
def test_adversarial_texts_at_the_size_limit_parse_in_bounded_time(fragment, tail):
    _timed_parse(_repeated_to_limit("prompt\n", fragment, tail))
    _timed_parse(_repeated_to_limit("", fragment, tail))


_ALPHABET = st.sampled_from(list('k ,:"\\\n\tSteps1x') + ["Negative prompt: ", ": ", ", ", '", ', '\\"', "é"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(pieces=st.lists(_ALPHABET, max_size=400), repeat=st.integers(1, 200))
def test_random_texts_parse_in_bounded_time_and_never_raise(pieces, repeat):
    text = ("".join(pieces) * repeat)[:MAX_INFOTEXT_BYTES]
    parsed = _timed_parse(text)
    assert isinstance(parsed["params"], dict) and isinstance(parsed["prompt"], str)


_KEY = st.from_regex(r"[A-Z][a-z]{0,8}( [a-z]{1,6})?", fullmatch=True)
_VALUE = st.text(st.characters(codec="utf-8", exclude_characters="\n\r"), max_size=30)


@settings(max_examples=200, deadline=None)
@given(params=st.dictionaries(_KEY, _VALUE, min_size=1, max_size=8))
def test_any_params_round_trip(params):
    line = format_infotext("p", "", params).split("\n")[-1]
    parsed = parse_params_line(line)
    # Quoted values come back exactly; plain ones lose surrounding spaces, as in A1111.
    expected = {key: value if any(ch in value for ch in ',:"') else value.strip() for key, value in params.items()}
    assert parsed == expected


def test_params_line_refuses_what_is_not_one():
    assert parse_params_line("a cat, on a mat") is None
    assert parse_params_line("Steps: 1,Seed: 2") is None
    assert parse_params_line('Steps: "1", Seed: 5" wide') == {"Steps": "1", "Seed": '5" wide'}
    assert parse_infotext("p\nClip skip: 9" + "9" * 5000 + ", Size: " + "1" * 5000 + "x2")["params"]
