"""AUTOMATIC1111's "infotext": the `parameters` PNG text chunk that SD tools read and write.

Format::

    a photo of a cat
    Negative prompt: blurry
    Steps: 30, Sampler: Euler a, CFG scale: 7.5, Seed: 123, Size: 512x512, Model hash: 6ce0161689, Model: v1-5

Values that contain a comma, a colon or a quote are written as JSON strings, as A1111 does.

The text comes from pictures anyone may upload, so it is read by a hand-written scanner that looks
at each character a bounded number of times: parsing takes time linear in the text's length,
whatever the text (a backtracking regular expression over it once took a minute for 368 bytes).
"""

from __future__ import annotations

import json
import re
from typing import Any

NEGATIVE_PREFIX = "Negative prompt:"
# Bigger `parameters` texts are refused before parsing (api/pictures.py); A1111 writes a few KB.
MAX_INFOTEXT_BYTES = 64 * 1024


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


def _is_key_char(ch: str) -> bool:
    return ch == " " or ch == "_" or ch.isalnum()


def _quoted_end(line: str, start: int) -> int:
    """Index just past the JSON string opening at `start`, or -1 if it never closes.

    It stops at the first unescaped quote, so scans from two different values never overlap:
    the whole line is walked at most twice.
    """
    position = start + 1
    while position < len(line):
        ch = line[position]
        if ch == "\\":
            position += 2
        elif ch == '"':
            return position + 1
        else:
            position += 1
    return -1


def parse_params_line(line: str) -> dict[str, str] | None:
    """`Key: value, Key: "quoted, value", ...` as a dict, or None when the line is not of that form."""
    params: dict[str, str] = {}
    position, end = 0, len(line)
    while True:
        key_start = position
        while position < end and _is_key_char(line[position]):
            position += 1
        if position == key_start or not line.startswith(": ", position):
            return None
        key = line[key_start:position].strip()
        position += 2
        value_end = -1
        if position < end and line[position] == '"':
            value_end = _quoted_end(line, position)
            if value_end != -1 and value_end != end and line[value_end] != ",":
                value_end = -1  # a quote inside a plain value, such as `5" wide`
        if value_end == -1:
            value_end = line.find(",", position)
            value_end = end if value_end == -1 else value_end
        params[key] = _unquote(line[position:value_end].strip())
        if value_end == end:
            return params
        if not line.startswith(", ", value_end):
            return None
        position = value_end + 2


def _unquote(value: str) -> str:
    if len(value) >= 2 and value.startswith('"') and value.endswith('"'):
        try:
            decoded = json.loads(value)
        except (json.JSONDecodeError, RecursionError):
            return value[1:-1]
        return decoded if isinstance(decoded, str) else value[1:-1]
    return value


def parse_infotext(text: str) -> dict[str, Any]:
    """Parse infotext into prompt, negative_prompt and the raw `params` dict (string values).

    Also fills the common typed fields (steps, sampler, cfg_scale, seed, width, height,
    model, model_hash) when present, for "make more like this" and `png-info`.
    """
    lines = text.strip().split("\n")
    params: dict[str, str] = {}
    if lines and ":" in lines[-1]:
        found = parse_params_line(lines[-1].strip())
        if found is not None:
            params = found
            lines.pop()
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
    size = re.fullmatch(r"([0-9]{1,6})x([0-9]{1,6})", params.get("Size", ""))
    if size:
        typed["width"], typed["height"] = int(size.group(1)), int(size.group(2))
    for key, name in (("Model", "model"), ("Model hash", "model_hash"), ("Denoising strength", "strength")):
        if key in params:
            typed[name] = params[key]
    if "Clip skip" in params and params["Clip skip"].isascii() and params["Clip skip"].isdigit():
        try:
            typed["clip_skip"] = int(params["Clip skip"])
        except ValueError:  # more digits than int() converts
            pass
    return typed
