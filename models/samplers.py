"""Sampler names people know (AUTOMATIC1111's and short ones) and the diffusers scheduler each means.

Pure data: the worker turns a `SamplerConfig` into a scheduler; the API validates names
against it without importing diffusers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SamplerConfig:
    """A diffusers scheduler class and the config overrides that make it the named sampler."""

    label: str
    scheduler_class: str
    overrides: dict[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()


_KARRAS = {"use_karras_sigmas": True}

SAMPLERS: tuple[SamplerConfig, ...] = (
    SamplerConfig("Euler a", "EulerAncestralDiscreteScheduler", aliases=("euler_a", "euler_ancestral")),
    SamplerConfig("Euler", "EulerDiscreteScheduler", aliases=("euler",)),
    SamplerConfig("Heun", "HeunDiscreteScheduler", aliases=("heun",)),
    SamplerConfig("LMS", "LMSDiscreteScheduler", aliases=("lms",)),
    SamplerConfig("LMS Karras", "LMSDiscreteScheduler", _KARRAS, aliases=("lms_karras",)),
    SamplerConfig("DPM2", "KDPM2DiscreteScheduler", aliases=("dpm2",)),
    SamplerConfig("DPM2 a", "KDPM2AncestralDiscreteScheduler", aliases=("dpm2_a",)),
    SamplerConfig(
        "DPM++ 2M",
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "solver_order": 2},
        aliases=("dpmpp_2m",),
    ),
    SamplerConfig(
        "DPM++ 2M Karras",
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "solver_order": 2, **_KARRAS},
        aliases=("dpmpp_2m_karras",),
    ),
    SamplerConfig(
        "DPM++ 2M SDE",
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "solver_order": 2},
        aliases=("dpmpp_2m_sde",),
    ),
    SamplerConfig(
        "DPM++ 2M SDE Karras",
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, **_KARRAS},
        aliases=("dpmpp_2m_sde_karras",),
    ),
    SamplerConfig(
        "DPM++ 2S a",
        "DPMSolverSinglestepScheduler",
        {"algorithm_type": "dpmsolver++", "solver_order": 2},
        aliases=("dpmpp_2s_a",),
    ),
    SamplerConfig("DPM++ SDE", "DPMSolverSDEScheduler", aliases=("dpmpp_sde",)),
    SamplerConfig("DPM++ SDE Karras", "DPMSolverSDEScheduler", _KARRAS, aliases=("dpmpp_sde_karras",)),
    SamplerConfig("DDIM", "DDIMScheduler", aliases=("ddim",)),
    SamplerConfig("PLMS", "PNDMScheduler", {"skip_prk_steps": True}, aliases=("pndm", "plms")),
    SamplerConfig("UniPC", "UniPCMultistepScheduler", aliases=("unipc",)),
    SamplerConfig("DEIS", "DEISMultistepScheduler", aliases=("deis",)),
)

DEFAULT_SAMPLER = "euler_a"

_BY_NAME: dict[str, SamplerConfig] = {}
for _sampler in SAMPLERS:
    for _name in (_sampler.label, *_sampler.aliases):
        _BY_NAME[_name.casefold()] = _sampler


def find_sampler(name: str) -> SamplerConfig | None:
    """Look a sampler up by any of its names, ignoring case; None when unknown."""
    return _BY_NAME.get(name.strip().casefold())


def sampler_names() -> list[str]:
    """Every accepted name, labels first, for error messages and `GET /api/v1/samplers`."""
    return [s.label for s in SAMPLERS] + [a for s in SAMPLERS for a in s.aliases]
