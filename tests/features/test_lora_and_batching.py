"""LoRA adapters change the output (weight 0 does not) and batches never mix adapters, weights or samplers."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from models import lifecycle
from models.catalog import short_hash
from models.db import make_engine, make_session_factory
from models.image import Image
from tests.features.helpers import difference, render, runner_for
from worker.runner import ModelLoadError


def test_lora_changes_the_output_and_weight_zero_does_not(feature_models, lora_dir):
    runner = runner_for(feature_models, "tiny-sd1", lora_dir)
    (base,) = render(runner)
    (styled,) = render(runner, loras=[{"name": "shapes-style", "weight": 1.0}])
    (zero,) = render(runner, loras=[{"name": "shapes-style", "weight": 0.0}])
    (half,) = render(runner, loras=[{"name": "shapes-style", "weight": 0.5}])
    (both,) = render(runner, loras=[{"name": "shapes-style", "weight": 1.0}, {"name": "other-style", "weight": 1.0}])
    (back,) = render(runner)
    assert difference(base, styled) > 1
    assert difference(base, zero) == 0
    assert 0 < difference(base, half) < difference(base, styled) * 1.5
    assert difference(both, styled) > 1
    # Switching back to no adapter gives the base model exactly: adapters are switched, never merged.
    assert difference(base, back) == 0
    assert len(runner._loras._loaded) == 2  # each adapter loaded once


def test_a_lora_in_kohya_format_renders_like_the_same_lora_in_peft_format(feature_models, lora_dir, tmp_path):
    import shutil

    from tests.features.lora_factory import to_kohya_format

    kohya_dir = tmp_path / "loras"
    kohya_dir.mkdir()
    shutil.copy(lora_dir / "shapes-style.safetensors", kohya_dir / "peft.safetensors")
    to_kohya_format(lora_dir / "shapes-style.safetensors", kohya_dir / "kohya.safetensors")
    runner = runner_for(feature_models, "tiny-sd1", kohya_dir)
    (base,) = render(runner)
    (peft,) = render(runner, loras=[{"name": "peft", "weight": 0.8}])
    (kohya,) = render(runner, loras=[{"name": "kohya", "weight": 0.8}])
    assert difference(base, kohya) > 1
    assert difference(peft, kohya) < 0.5


def test_unknown_lora_on_the_worker_is_a_clear_error(feature_models, lora_dir):
    runner = runner_for(feature_models, "tiny-sd1", lora_dir)
    with pytest.raises(ModelLoadError, match="missing"):
        render(runner, loras=[{"name": "missing", "weight": 1.0}])


def test_api_rejects_unknown_loras_and_records_hashes(client, lora_dir):
    response = client.post("/api/v1/jobs", json={"prompts": ["a"], "model": "tiny-sd1", "loras": [{"name": "nope"}]})
    assert response.status_code == 422
    assert response.json["error"]["fields"][0]["field"] == "loras.0.name"
    assert "shapes-style" in response.json["error"]["fields"][0]["reason"]
    twice = [{"name": "shapes-style"}, {"name": "shapes-style", "weight": 0.5}]
    assert client.post("/api/v1/jobs", json={"prompts": ["a"], "loras": twice}).status_code == 422
    escape = client.post("/api/v1/jobs", json={"prompts": ["a"], "loras": [{"name": "../loras/shapes-style"}]})
    assert escape.status_code == 422
    job = client.post(
        "/api/v1/jobs", json={"prompts": ["a"], "model": "tiny-sd1", "loras": [{"name": "shapes-style", "weight": 0.7}]}
    )
    assert job.status_code == 202
    image = client.get(f"/api/v1/images?job_id={job.json['id']}").json["images"][0]
    expected = short_hash(lora_dir / "shapes-style.safetensors")
    assert image["loras"] == [{"name": "shapes-style", "weight": 0.7, "hash": expected}]


def test_batches_never_mix_adapters_weights_or_samplers(client, settings):
    variants = [
        {},
        {"loras": [{"name": "shapes-style"}]},
        {"loras": [{"name": "shapes-style", "weight": 0.5}]},
        {"loras": [{"name": "other-style"}]},
        {"scheduler": "DPM++ 2M Karras"},
        {"scheduler": "dpmpp_2m_karras"},  # another name for the same sampler: may share a batch
    ]
    for variant in variants:
        body = {"prompts": ["a cat", "a dog"], "model": "tiny-sd1", "steps": 3, **variant}
        assert client.post("/api/v1/jobs", json=body).status_code == 202
    sessions = make_session_factory(make_engine(settings.resolved_database_url))
    seen: set[int] = set()
    while claim := lifecycle.claim(sessions, model="tiny-sd1", worker="test-worker", max_batch=8, lease_seconds=30):
        loras = {str(item.loras) for item in claim.items}
        samplers = {item.batch_key for item in claim.items}
        assert len(loras) == 1 and len(samplers) == 1
        seen.update(item.id for item in claim.items)
    with sessions() as session:
        rows = list(session.scalars(select(Image).where(Image.model == "tiny-sd1")))
    assert seen == {row.id for row in rows}
    keys = {row.job_id: row.batch_key for row in rows}
    assert len(set(keys.values())) == 5  # the two names of DPM++ 2M Karras share a key
