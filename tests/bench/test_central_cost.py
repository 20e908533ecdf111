"""`sdfarm bench control-plane --central` at tiny scale: real PostgreSQL, Redis and API; simulated GPUs."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from sdfarm.cli import main
from sdfarm.postgres_server import postgres_bin_dir

pytestmark = pytest.mark.skipif(postgres_bin_dir() is None, reason="PostgreSQL server binaries not installed")


def test_central_cost_counts_central_cpu_per_recorded_image(tmp_path):
    out = tmp_path / "central.json"
    result = CliRunner().invoke(
        main,
        [
            "bench",
            "control-plane",
            "--central",
            "--simulated-gpus",
            "3",
            "--seconds",
            "4",
            "--pollers",
            "3",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "3 simulated GPUs" in result.output
    [scale] = json.loads(out.read_text())["parts"]["central_cost"]["scales"]
    assert scale["fleet_errors"] == []
    assert scale["recorded_images"] > 0
    assert scale["fleet_calls"]["batches"] > 0 and scale["fleet_calls"]["heartbeats"] > 0
    by_part = scale["central_ms_per_image_by_part"]
    assert set(by_part) == {"postgres", "redis", "api"}
    # CPU times come in 10 ms clock ticks: Redis's few commands in 4 s may not reach one.
    assert by_part["postgres"] > 0 and by_part["redis"] >= 0
    assert scale["central_ms_per_image"] == pytest.approx(sum(by_part.values()), abs=0.01)
    paced, flat_out = scale["status_poll_latency"]
    assert paced["interval_seconds"] == 1.0 and paced["requests"] > 0 and paced["failures"] == 0
    assert flat_out["requests"] > paced["requests"]


def test_simulated_gpus_must_be_numbers():
    result = CliRunner().invoke(main, ["bench", "control-plane", "--central", "--simulated-gpus", "ten"])
    assert result.exit_code != 0
    assert "--simulated-gpus" in result.output and "whole numbers" in result.output
