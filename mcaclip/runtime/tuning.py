"""Tuning profiles: the forms the fast path runs on this machine, kept in one place.

A *form* is a speed setting of a backend: the torch backend's switches (``TORCH_SWITCHES``:
``fold_blur``, ``triton_epilogues``, ...), ``cuda_graphs``, ``compile``, ONNX Runtime's
``providers``, OpenVINO's ``threads`` and ``streams``, and how pictures are written
(``writers``, ``png_level``, ``jpeg_quality``).
Everyday commands never name them: every form has a measured default. Where to set one:

1. ``mcarun tune --engine B`` times the configurations this machine can run (those
   ``mcarun bench --all-backends`` times) and writes ``B/tuning.json``: the machine (GPU or
   CPU name), versions, the fastest configuration's backend, precision and forms, and what was
   measured. ``mcarun edit`` and ``bench`` read it when it was made on this machine.
2. ``--tuning FILE``: another profile instead.
3. ``--form K=V`` (repeatable): one form, over the profile (``--form triton_convs=auto``,
   ``--form cuda_graphs=off``, ``--form providers=CUDAExecutionProvider,CPUExecutionProvider``).
"""

from __future__ import annotations

import datetime
import json
import logging
from pathlib import Path
from typing import Any

from mcaclip.errors import McaError
from mcaclip.fileio import atomic_write
from mcaclip.runtime.backends import TORCH_SWITCHES

log = logging.getLogger(__name__)
PROFILE = "tuning.json"
FORMAT = "mcaclip-tuning"
ON, OFF = ("on", "true", "yes", "1"), ("off", "false", "no", "0")
# form -> kind of value: "bool", "int", "list" (comma-separated), or the allowed words
FORMS: dict[str, Any] = {
    **{name: "bool" for name in TORCH_SWITCHES},
    "triton_convs": ("on", "off", "auto"),
    "cuda_graphs": "bool",
    "compile": ("off", "default", "max-autotune"),
    "providers": "list",
    "threads": "int",  # openvino: INFERENCE_NUM_THREADS (0: every core)
    "streams": "int",  # openvino: NUM_STREAMS
    "writers": "int",
    "png_level": "int",
    "jpeg_quality": "int",
}


class TuningError(McaError):
    """A tuning profile or a --form is unusable."""


def _value(name: str, text: str) -> Any:
    kind = FORMS[name]
    word = text.strip().lower()
    if kind == "bool" or (name == "triton_convs" and word in ON + OFF):
        if word in ON or word in OFF:
            return word in ON
        raise TuningError(f"--form {name}={text}: use on or off")
    if kind == "int":
        try:
            return int(word)
        except ValueError:
            raise TuningError(f"--form {name}={text}: a whole number") from None
    if kind == "list":
        return [p.strip() for p in text.split(",") if p.strip()]
    if word not in kind:
        raise TuningError(f"--form {name}={text}: choose {', '.join(kind)}")
    if name == "compile":
        return False if word == "off" else word
    return word


def parse_forms(items: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """``("fold_blur=off", "compile=default")`` -> ``{"fold_blur": False, "compile": ...}``."""
    forms: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not text.strip():
            raise TuningError(f"--form {item!r}: write NAME=VALUE, e.g. --form fuse_tails=off")
        if name not in FORMS:
            raise TuningError(f"--form {name}: unknown; known forms: {', '.join(sorted(FORMS))}")
        forms[name] = _value(name, text)
    return forms


def machine_key() -> str:
    """What a profile is valid for: the GPU's name, or the CPU's on a machine without one."""
    import torch

    from mcaclip.runtime.bench import cpu_name

    if torch.cuda.is_available():
        return f"gpu:{torch.cuda.get_device_name(0)}"
    return f"cpu:{cpu_name()}"


def read_profile(path: str | Path) -> dict:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise TuningError(f"{path}: cannot read the tuning profile ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise TuningError(f"{path}: not a tuning profile (malformed JSON: {exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise TuningError(f"{path}: not a tuning profile (mcarun tune writes them)")
    unknown = sorted(set(data.get("forms", {})) - set(FORMS))
    if unknown:
        raise TuningError(f"{path}: unknown forms {unknown}; rerun mcarun tune")
    return data


def profile_for(engine: Path, tuning: Path | None = None) -> dict:
    """The profile to run ``engine`` with: ``tuning`` if given, else ``engine/tuning.json``
    when it was made on this machine (another machine's is ignored, with a warning); {}."""
    if tuning is not None:
        return read_profile(tuning)
    path = Path(engine) / PROFILE
    if not path.is_file():
        return {}
    data = read_profile(path)
    if data.get("machine") != machine_key():
        log.warning(
            "%s was tuned on %s, not this machine (%s): ignored; run mcarun tune here",
            path,
            data.get("machine"),
            machine_key(),
        )
        return {}
    return data


def choose(payload: dict, batch: int) -> tuple[str, dict]:
    """The fastest variant of a ``bench_variants`` payload at ``batch``, by the latency of a
    whole edit to uint8 pictures (what ``mcarun edit`` does)."""
    best = None
    for name, v in payload["variants"].items():
        rows = {r["stage"]: r for r in v["rows"] if r["batch"] == batch}
        row = rows.get("end_to_end_pixels") or rows.get("end_to_end")
        if row is not None and (best is None or row["p50_ms"] < best[0]):
            best = (row["p50_ms"], name, v)
    if best is None:
        raise TuningError("no configuration could be timed on this machine")
    return best[1], best[2]


def write_profile(engine: Path, payload: dict, batch: int) -> tuple[Path, dict]:
    """``engine/tuning.json`` from a ``bench_variants`` payload: the fastest variant at
    ``batch`` with its backend, device, precision and forms."""
    name, v = choose(payload, batch)
    keys = (*TORCH_SWITCHES, "cuda_graphs", "compile", "threads", "streams")
    forms = {k: v[k] for k in keys if v.get(k) is not None}
    if v.get("providers"):
        forms["providers"] = v["providers"]
    p50 = {
        n: next((r["p50_ms"] for r in x["rows"] if r["batch"] == batch and
                 r["stage"] in ("end_to_end_pixels", "end_to_end")), None)
        for n, x in payload["variants"].items()
    }  # fmt: skip
    profile = {
        "format": FORMAT,
        "version": 1,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_key(),
        "versions": payload.get("machine", {}),
        "batch": batch,
        "chosen": name,
        "backend": v["backend"],
        "device": v.get("device"),
        "precision": v.get("precision"),
        "mode": v.get("mode"),
        "forms": forms,
        "edit_p50_ms": p50,
        "not_measured": payload.get("skipped", {}),
    }
    path = Path(engine) / PROFILE
    atomic_write(path, lambda t: Path(t).write_text(json.dumps(profile, indent=2) + "\n"))
    return path, profile
