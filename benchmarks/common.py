"""Shared by the benchmark scripts: results as JSON with machine and versions."""

from __future__ import annotations

import json
from pathlib import Path

from mcaclip.runtime.bench import machine_info, time_call

__all__ = ["RESULTS", "machine_info", "time_call", "write_result"]

RESULTS = Path(__file__).parent / "results"


def write_result(name: str, payload: dict) -> Path:
    """Write ``benchmarks/results/NAME.json`` (machine info first), atomically."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"machine": machine_info(), **payload}, indent=2) + "\n")
    tmp.replace(path)
    return path
