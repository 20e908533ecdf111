"""Build a CLIP byte-level BPE tokenizer whose vocabulary holds a chosen list of words.

Real Stable Diffusion uses OpenAI's 49,408-token CLIP vocabulary (`worker/clip`). The
demo model is trained with a miniature one instead, a BPE learned on the words of its
captions, which keeps its embedding table small: every one of those words becomes a single
token, and any other text still tokenizes (into bytes), exactly as with the real tokenizer.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from transformers import CLIPTokenizer

from worker.clip.vocabulary import END_OF_WORD, END_TOKEN, START_TOKEN, byte_symbols


def _byte_alphabet() -> list[str]:
    """The 256 byte stand-ins in byte order (the tiny vocabulary's own numbering)."""
    return [symbol for _, symbol in sorted(byte_symbols())]


def _learn_merges(words: list[str]) -> list[tuple[str, str]]:
    """Learn BPE merges until every word is one symbol; ties broken alphabetically for determinism."""
    segmented = {w: list(w[:-1]) + [w[-1] + END_OF_WORD] for w in sorted(set(words))}
    merges: list[tuple[str, str]] = []
    while True:
        pairs: Counter[tuple[str, str]] = Counter()
        for symbols in segmented.values():
            pairs.update(zip(symbols, symbols[1:], strict=False))
        if not pairs:
            return merges
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        merges.append(best)
        for word, symbols in segmented.items():
            merged: list[str] = []
            i = 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    merged.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            segmented[word] = merged


def build_clip_tokenizer(words: list[str], out_dir: Path, max_length: int = 77) -> CLIPTokenizer:
    """Write vocab.json and merges.txt for `words` into out_dir and return the loaded tokenizer."""
    words = [w.lower() for w in words if w.strip()]
    alphabet = _byte_alphabet()
    merges = _learn_merges(words)
    vocab: dict[str, int] = {}
    for token in alphabet + [ch + END_OF_WORD for ch in alphabet] + [a + b for a, b in merges]:
        vocab.setdefault(token, len(vocab))
    for special in (START_TOKEN, END_TOKEN):
        vocab.setdefault(special, len(vocab))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, indent=0))
    merge_lines = ["#version: 0.2 (sdfarm tiny BPE)"] + [f"{a} {b}" for a, b in merges]
    (out_dir / "merges.txt").write_text("\n".join(merge_lines) + "\n")
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length)
    tokenizer.save_pretrained(out_dir)
    return tokenizer
