"""The worker's own code against the plain loop, in one process: `python -m bench.worker_in_process`.

`sdfarm bench gpu-farm` compares the plain diffusers loop with the whole farm (separate API and
worker processes). This narrows a gap down: the worker's `RenderService`, built by its real
`WorkerContext` (claims in SQLite, Redis messages, chained batches, each one's successor claimed
during its render with `--overlap true`, PNGs, thumbnails and rows saved) renders in the bench's
own process, in blocks that alternate with blocks of the plain loop, so both sides meet the same
neighbours. A ratio near 1 here and lower in `gpu-farm` puts the loss in running as separate
processes, not in the worker's code.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from api import create_app
from bench.farm_overhead import PROMPTS
from bench.gpu_farm import PlainLoop, build_model
from bench.local_farm import BenchFarm
from models.queue import make_celery
from worker.context import WorkerContext

STEPS, SIZE = 10, 64


def measure(blocks: int, batches: int, batch: int, overlap: str) -> dict:
    """Seconds and CPU seconds of each side over `blocks` alternating blocks of `batches` batches."""
    with tempfile.TemporaryDirectory(prefix="sdfarm-worker-in-process-") as scratch:
        work = Path(scratch)
        model_dir = build_model(work / "models", "cpu")
        farm = BenchFarm(work / "farm", model=str(model_dir), max_batch=batch, overlap=overlap)
        context = WorkerContext(farm.settings, make_celery(farm.settings), "bench@in-process", model_dir.name, batch)
        api = create_app(farm.settings).test_client()
        try:
            context.start()
            service = context.wait_ready()
            plain = PlainLoop(model_dir, "cpu")
            plain.render([PROMPTS[0]] * batch, list(range(batch)), 2, SIZE)  # its warm-up, as the worker's
            spent = {"plain": 0.0, "worker": 0.0}
            cpu = {"plain": 0.0, "worker": 0.0}
            for block in range(blocks):
                for side in ("plain", "worker") if block % 2 else ("worker", "plain"):
                    if side == "worker":  # submitted through the API (in process) before the clock starts
                        body = {"prompts": PROMPTS, "num_images": batch * batches // len(PROMPTS), "steps": STEPS}
                        body.update(width=SIZE, height=SIZE, seed=1, scheduler="pndm")
                        answer = api.post("/api/v1/jobs", json=body)
                        assert answer.status_code == 202, answer.json
                    started, cpu_started = time.perf_counter(), time.process_time()
                    if side == "plain":
                        for call in range(batches):
                            seeds = list(range(call * batch, (call + 1) * batch))
                            plain.render([PROMPTS[seed % len(PROMPTS)] for seed in seeds], seeds, STEPS, SIZE)
                    else:
                        rendered = 0
                        while rendered < batch * batches:  # each call chains batches for up to 10 s
                            just_rendered = service.run_next(model_dir.name)
                            if not just_rendered:
                                raise RuntimeError("the worker found nothing to render: see the log above")
                            rendered += just_rendered
                        service.flush()
                    spent[side] += time.perf_counter() - started
                    cpu[side] += time.process_time() - cpu_started
        finally:
            context.shutdown()
            farm.close()
    images = blocks * batches * batch
    return {
        "overlap": overlap,
        "images_per_side": images,
        "images_per_second": {side: round(images / seconds, 2) for side, seconds in spent.items()},
        "cpu_ms_per_image": {side: round(used / images * 1000, 1) for side, used in cpu.items()},
        "worker_over_plain": round(spent["plain"] / spent["worker"], 3),
    }


def main() -> None:
    """Parse the options, measure, print the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=4, help="alternating blocks per side")
    parser.add_argument("--batches", type=int, default=24, help="batches per block")
    parser.add_argument("--batch", type=int, default=8, help="images per batch")
    parser.add_argument("--overlap", default="auto", help="the worker's SDFARM_OVERLAP")
    options = parser.parse_args()
    print(json.dumps(measure(options.blocks, options.batches, options.batch, options.overlap), indent=2))


if __name__ == "__main__":
    main()
