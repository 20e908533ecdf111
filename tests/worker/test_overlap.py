"""SDFARM_OVERLAP: work beside the render on a GPU, in line on the CPU (BENCHMARKS.md measures why)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from models.settings import Settings
from worker.context import overlaps


@pytest.mark.parametrize(
    ("setting", "device", "expected"),
    [("auto", "cuda:0", True), ("auto", "cpu", False), ("true", "cpu", True), ("false", "cuda", False)],
)
def test_auto_overlaps_on_a_gpu_only_and_an_explicit_setting_wins(setting, device, expected):
    assert overlaps(setting, device) is expected


def test_an_unknown_overlap_setting_is_refused_by_name():
    with pytest.raises(ValidationError, match="SDFARM_OVERLAP must be auto, true or false"):
        Settings(overlap="sometimes")
