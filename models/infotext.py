"""AUTOMATIC1111's "infotext": the `parameters` PNG text chunk that SD tools read and write.

Format::

    a photo of a cat
    Negative prompt: blurry
    Steps: 30, Sampler: Euler a, CFG scale: 7.5, Seed: 123, Size: 512x512, Model hash: 6ce0161689, Model: v1-5

Values that contain a comma, a colon or a quote are written as JSON strings, as A1111 does.
"""

from __future__ import annotations

import json
import re
from typing import Any

NEGATIVE_PREFIX = "Negative prompt:"
_PARAM = re.compile(r'\s*([\w ]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_PARAMS_LINE = re.compile(r"^(?:[\w ]+: (?:\"(?:\\.|[^\\\"])*\"|[^,]*))(?:, [\w ]+: (?:\"(?:\\.|[^\\\"])*\"|[^,]*))*$")


def _quote(value: Any) -> str:
    text = str(value)
    if any(ch in text for ch in ',:"\n'):
        return json.dumps(text, ensure_ascii=False)
    return text


def format_infotext(prompt: str, negative_prompt: str, params: dict[str, Any]) -> str:
    """Render the three-part infotext; params keep their order and None values are left out."""
    lines = [prompt]
    if negative_prompt:
        lines.append(f"{NEGATIVE_PREFIX} {negative_prompt}")
    lines.append(", ".join(f"{key}: {_quote(value)}" for key, value in params.items() if value is not None))
    return "\n".join(lines)


def parse_infotext(text: str) -> dict[str, Any]:
    """Parse infotext into prompt, negative_prompt and the raw `params` dict (string values).

    Also fills the common typed fields (steps, sampler, cfg_scale, seed, width, height,
    model, model_hash) when present, for "make more like this" and `png-info`.
    """
    lines = text.strip().split("\n")
    params: dict[str, str] = {}
    if lines and _PARAMS_LINE.match(lines[-1].strip()) and ":" in lines[-1]:
        for key, value in _PARAM.findall(lines.pop().strip()):
            value = value.strip()
            if value.startswith('"') and value.endswith('"'):
                try:
                    value = json.loads(value)
                except json.JSONDecodeError:
                    value = value[1:-1]
            params[key.strip()] = value
    prompt_lines: list[str] = []
    negative_lines: list[str] = []
    target = prompt_lines
    for line in lines:
        if line.startswith(NEGATIVE_PREFIX):
            target = negative_lines
            line = line[len(NEGATIVE_PREFIX) :].strip()
        target.append(line)
    result: dict[str, Any] = {
        "prompt": "\n".join(prompt_lines).strip(),
        "negative_prompt": "\n".join(negative_lines).strip(),
        "params": params,
    }
    result.update(_typed_fields(params))
    return result


def _typed_fields(params: dict[str, str]) -> dict[str, Any]:
    typed: dict[str, Any] = {}
    converters = {"Steps": ("steps", int), "Seed": ("seed", int), "CFG scale": ("guidance_scale", float)}
    for key, (name, convert) in converters.items():
        if key in params:
            try:
                typed[name] = convert(params[key])
            except ValueError:
                pass
    if "Sampler" in params:
        sampler = params["Sampler"]
        if params.get("Schedule type") == "Karras" and "Karras" not in sampler:
            sampler += " Karras"
        typed["sampler"] = sampler
    size = re.fullmatch(r"(\d+)x(\d+)", params.get("Size", ""))
    if size:
        typed["width"], typed["height"] = int(size.group(1)), int(size.group(2))
    for key, name in (("Model", "model"), ("Model hash", "model_hash"), ("Denoising strength", "strength")):
        if key in params:
            typed[name] = params[key]
    if "Clip skip" in params and params["Clip skip"].isdigit():
        typed["clip_skip"] = int(params["Clip skip"])
    return typed
