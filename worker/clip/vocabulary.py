"""Write the CLIP tokenizer files (vocab.json, merges.txt, configs) that every SD text encoder uses.

The only input is OpenAI's BPE merge list, shipped beside this module. CLIP's 49,408-token
vocabulary is derived from it the way CLIP defines it: the 256 byte symbols, the same with
the end-of-word mark, one token per merge in merge order, then the start and end tokens.
"""

from __future__ import annotations

import gzip
import json
from functools import lru_cache
from pathlib import Path

BPE_FILE = Path(__file__).resolve().parent / "bpe_simple_vocab_16e6.txt.gz"
END_OF_WORD = "</w>"
START_TOKEN = "<|startoftext|>"
END_TOKEN = "<|endoftext|>"
CLIP_VOCAB_SIZE = 49408
CONTEXT_LENGTH = 77
# CLIP keeps the first 49,152 - 256 - 2 merges of the file (its vocabulary is capped at 49,408).
_MERGE_COUNT = CLIP_VOCAB_SIZE - 2 * 256 - 2


def byte_symbols() -> list[tuple[int, str]]:
    """(byte, stand-in) for the 256 printable stand-ins byte-level BPE uses (GPT-2 / CLIP scheme).

    The order is CLIP's vocabulary order: printable bytes first, then the rest shifted past 255.
    """
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    others = [byte for byte in range(256) if byte not in printable]
    return [(byte, chr(byte)) for byte in printable] + [(byte, chr(256 + n)) for n, byte in enumerate(others)]


@lru_cache(maxsize=1)
def clip_merges() -> tuple[tuple[str, str], ...]:
    """CLIP's BPE merges in priority order (the first line of the file is a version header)."""
    lines = gzip.decompress(BPE_FILE.read_bytes()).decode("utf-8").split("\n")
    return tuple(tuple(line.split()) for line in lines[1 : 1 + _MERGE_COUNT])  # type: ignore[misc]


def clip_vocabulary() -> dict[str, int]:
    """Token to id, exactly as OpenAI's CLIP numbers them (so checkpoint embeddings line up)."""
    alphabet = [symbol for _, symbol in byte_symbols()]
    tokens = alphabet + [symbol + END_OF_WORD for symbol in alphabet]
    tokens += ["".join(pair) for pair in clip_merges()] + [START_TOKEN, END_TOKEN]
    return {token: index for index, token in enumerate(tokens)}


def write_clip_tokenizer(out_dir: Path, pad_token: str = END_TOKEN) -> Path:
    """Write a CLIPTokenizer folder into out_dir.

    SD 1.x (and SDXL's first encoder) pad with the end token; OpenCLIP encoders (SD 2.x, SDXL's second) with "!".
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "vocab.json").write_text(json.dumps(clip_vocabulary(), ensure_ascii=False))
    merges = ["#version: 0.2"] + [" ".join(pair) for pair in clip_merges()]
    (out_dir / "merges.txt").write_text("\n".join(merges) + "\n", encoding="utf-8")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": CONTEXT_LENGTH,
        "do_lower_case": True,
        "bos_token": START_TOKEN,
        "eos_token": END_TOKEN,
        "unk_token": END_TOKEN,
        "pad_token": pad_token,
        "errors": "replace",
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    special = {key: config[key] for key in ("bos_token", "eos_token", "unk_token", "pad_token")}
    (out_dir / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    return out_dir
