import json

import pytest

from mcaclip.bundle import SCHEMA_VERSION, Bundle, BundleError
from mcaclip.nn.graphs import GRAPH_NAMES


def test_open_and_verify(tiny_bundle):
    b = Bundle.open(tiny_bundle)
    assert b.manifest["schema_version"] == SCHEMA_VERSION
    assert b.random_weights
    assert set(b.graphs) == set(GRAPH_NAMES)  # every graph: the tiny editor has an encoder
    assert b.manifest["photos"] == {"finder": "toy", "encoder_size": 32}
    assert all(f"onnx/{n}.onnx" in b.files() for n in b.graphs)
    cache = b.prompt_cache()
    assert sorted(cache) == ["blue goatee", "red hair"] and cache["red hair"].shape == (64,)


def test_missing_file(bundle_copy):
    (bundle_copy / "onnx" / "fusion.onnx").unlink()
    with pytest.raises(BundleError, match="fusion.onnx: missing from the bundle; rebuild"):
        Bundle.open(bundle_copy)


def test_corrupt_file(bundle_copy):
    path = bundle_copy / "onnx" / "mapper.onnx"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="mapper.onnx: corrupt .sha256"):
        Bundle.open(bundle_copy)


def test_newer_schema(bundle_copy):
    path = bundle_copy / "manifest.json"
    m = json.loads(path.read_text())
    m["schema_version"] = SCHEMA_VERSION + 1
    path.write_text(json.dumps(m))
    with pytest.raises(BundleError, match="newer than this mcaclip reads.*upgrade mcaclip"):
        Bundle.open(bundle_copy)


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="no such bundle directory"):
        Bundle.open(tmp_path / "nope")
    with pytest.raises(BundleError, match="manifest.json is missing"):
        Bundle.open(tmp_path)
    (tmp_path / "manifest.json").write_text("{oops")
    with pytest.raises(BundleError, match="corrupt manifest"):
        Bundle.open(tmp_path)
