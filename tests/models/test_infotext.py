"""AUTOMATIC1111 infotext: our format round-trips, and a real A1111 string parses."""

from __future__ import annotations

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
