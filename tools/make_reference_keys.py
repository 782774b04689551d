"""Regenerate tests/data/{irse50,bisenet}_keys.json from the reference implementations.

    python tools/make_reference_keys.py --insightface /path/to/InsightFace_Pytorch \
        --face-parsing /path/to/face-parsing.PyTorch

Imports TreB1eN's ``model.py`` (Backbone(50, 0.6, 'ir_se'), the layout of model_ir_se50.pth)
and zllrunning's ``model.py`` (BiSeNet(19), the layout of 79999_iter.pth) from the given
checkouts (nothing is copied here) and writes every state-dict key with its shape, so that the
tests can prove our architectures load those files with strict key checking.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path


def _load(path: Path, name: str):
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--insightface", type=Path, required=True)
    parser.add_argument("--face-parsing", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path(__file__).parents[1] / "tests" / "data")
    args = parser.parse_args()

    insight = _load(args.insightface / "model.py", "insight_model")
    irse = insight.Backbone(50, 0.6, "ir_se")
    resnet = _load(args.face_parsing / "resnet.py", "resnet")
    resnet.Resnet18.init_weight = lambda self: None  # it downloads ImageNet weights
    parsing = _load(args.face_parsing / "model.py", "parsing_model")
    bisenet = parsing.BiSeNet(19)
    for name, net in (("irse50", irse), ("bisenet", bisenet)):
        keys = {k: list(v.shape) for k, v in net.state_dict().items()}
        (args.out / f"{name}_keys.json").write_text(json.dumps(keys) + "\n")
        print(f"{name}: {len(keys)} keys")


if __name__ == "__main__":
    main()
