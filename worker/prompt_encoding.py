"""Prompt embeddings for prompts longer than CLIP's 77 tokens, and for clip skip.

CLIP sees 77 tokens: a start token, 75 of text, an end token. Like AUTOMATIC1111 and
ComfyUI, a longer prompt is split into chunks of 75 tokens, each encoded on its own with
its own start and end tokens, and the chunks' hidden states are concatenated along the
sequence; the UNet's cross-attention takes any sequence length. Every prompt and negative
prompt of a batch is padded to the same number of chunks so they stack into one tensor.
Clip skip takes the hidden state that many layers from the end, through the final
LayerNorm, as diffusers does (done here because diffusers reaches the LayerNorm through a
`text_model` attribute that transformers 5 no longer has).
"""

from __future__ import annotations

from typing import Any

import torch

CHUNK = 75


def token_count(tokenizer, text: str) -> int:
    """Text tokens in `text`, without the start and end tokens."""
    return len(tokenizer(text, add_special_tokens=False, truncation=False).input_ids)


def needs_own_encoding(pipeline, texts: list[str], clip_skip: int | None, is_xl: bool) -> bool:
    """True when diffusers' encoder would cut a prompt or cannot apply clip skip to this encoder."""
    if clip_skip is not None and not is_xl:
        return True
    return any(token_count(pipeline.tokenizer, text) > CHUNK for text in set(texts) if text)


def _chunks(tokenizer, text: str, count: int) -> list[list[int]]:
    ids = tokenizer(text, add_special_tokens=False, truncation=False).input_ids
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    chunks = []
    for start in range(0, count * CHUNK, CHUNK):
        body = ids[start : start + CHUNK]
        chunk = [tokenizer.bos_token_id, *body, tokenizer.eos_token_id]
        chunks.append(chunk + [pad] * (CHUNK + 2 - len(chunk)))
    return chunks


def _encode(text_encoder, ids: torch.Tensor, layer: int | None, is_xl: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Hidden states of one chunk batch, and the pooled (projected) output."""
    output = text_encoder(ids.to(text_encoder.device), output_hidden_states=True)
    if is_xl:
        # SDXL always conditions on the penultimate layer, counting clip skip from there.
        hidden = output.hidden_states[-(layer + 2 if layer else 2)]
    elif layer:
        norm = getattr(text_encoder, "text_model", text_encoder).final_layer_norm
        hidden = norm(output.hidden_states[-(layer + 1)])
    else:
        hidden = output[0]
    return hidden, output[0]


def encode_prompts(pipeline, prompts: list[str], negatives: list[str], clip_skip: int | None) -> dict[str, Any]:
    """Keyword arguments for the pipeline call: prompt embeddings (and SDXL's pooled ones) for the batch."""
    is_xl = getattr(pipeline, "text_encoder_2", None) is not None
    pairs = [(pipeline.tokenizer, pipeline.text_encoder)]
    if is_xl:
        pairs.append((pipeline.tokenizer_2, pipeline.text_encoder_2))
    texts = prompts + negatives
    count = max(1, *(-(-token_count(pipeline.tokenizer, t) // CHUNK) for t in texts))
    per_encoder = []
    pooled = None
    for tokenizer, text_encoder in pairs:
        ids = torch.tensor([_chunks(tokenizer, text, count) for text in texts])  # (texts, chunks, 77)
        hidden_chunks = []
        for index in range(count):
            hidden, projected = _encode(text_encoder, ids[:, index], clip_skip, is_xl)
            hidden_chunks.append(hidden)
            if index == 0 and text_encoder is getattr(pipeline, "text_encoder_2", None):
                pooled = projected  # SDXL pools the first chunk, as other tools do
        per_encoder.append(torch.cat(hidden_chunks, dim=1))
    embeddings = torch.cat(per_encoder, dim=-1).to(pipeline.unet.dtype)
    batch = len(prompts)
    arguments: dict[str, Any] = {
        "prompt_embeds": embeddings[:batch],
        "negative_prompt_embeds": embeddings[batch:],
    }
    if is_xl:
        arguments["pooled_prompt_embeds"] = pooled[:batch].to(pipeline.unet.dtype)
        arguments["negative_pooled_prompt_embeds"] = pooled[batch:].to(pipeline.unet.dtype)
        if pipeline.config.get("force_zeros_for_empty_prompt", True):
            # SDXL's own rule for an empty negative prompt: zeros, not the encoding of "".
            empty = torch.tensor([not text for text in negatives])
            arguments["negative_prompt_embeds"][empty] = 0
            arguments["negative_pooled_prompt_embeds"][empty] = 0
    return arguments
