"""Seconds per training step on CPU at the tiny-32 and toy-64 presets, and the share of the
step each part takes (editor forward, each loss term, backward + optimizer).

Random frozen networks; at these presets the identity network and the face parser are the
small stand-ins (the real IR-SE50 and BiSeNet take 112 px and 512 px inputs and cost more).

    python -m benchmarks.train_step_cpu [--steps 20]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from collections import defaultdict
from pathlib import Path

from benchmarks.common import write_result
from mcaclip.training.trainer import TrainConfig, Trainer


def measure(preset: str, steps: int, batch: int, workdir: Path) -> dict:
    config = TrainConfig(
        out=str(workdir / preset),
        prompts=["blue goatee"],
        preset=preset,
        steps=steps + 2,
        batch_size=batch,
        random_weights=True,
        val_every=10**9,
        ckpt_every=10**9,
        log_every=10**9,
    )
    trainer = Trainer(config)
    for _ in range(2):  # warm-up
        trainer.train_step()
    times, parts = [], defaultdict(float)
    for _ in range(steps):
        record = trainer.train_step()
        times.append(record["step_time"])
        for k, v in record["times"].items():
            parts[k] += v
    total = sum(times)
    share = {k: v / total for k, v in sorted(parts.items(), key=lambda kv: -kv[1])}
    share["other (data, bookkeeping)"] = 1 - sum(share.values())
    return {
        "preset": preset,
        "batch": batch,
        "precision": "fp32",
        "steps": steps,
        "s_per_step_p50": statistics.median(times),
        "s_per_step_mean": statistics.fmean(times),
        "share_of_step": share,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=2)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in ("tiny-32", "toy-64"):
            row = measure(preset, args.steps, args.batch_size, Path(tmp))
            rows.append(row)
            parts = ", ".join(f"{k} {v:.0%}" for k, v in row["share_of_step"].items())
            print(f"{preset}: {row['s_per_step_p50']:.3f} s/step (batch {row['batch']}); {parts}")
    print(f"wrote {write_result('train_step_cpu', {'rows': rows})}")


if __name__ == "__main__":
    main()
