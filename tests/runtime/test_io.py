import numpy as np
import pytest
import torch

from mcaclip.errors import ShapeError
from mcaclip.runtime.io import (
    InputError,
    load_latents,
    parse_seeds,
    prompt_slugs,
    save_png,
    seed_latents,
)


@pytest.mark.parametrize("shape, n", [((3, 8, 64), 3), ((8, 64), 1), ((5, 64), 5)])
@pytest.mark.parametrize("fmt", ["pt", "npy"])
def test_latent_shapes(tmp_path, shape, n, fmt):
    data = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    path = tmp_path / f"w.{fmt}"
    if fmt == "pt":
        torch.save(torch.from_numpy(data), path)
    else:
        np.save(path, data)
    w = load_latents(path, 8, 64)
    assert w.shape == (n, 8, 64) and w.dtype == np.float32
    if shape == (5, 64):  # W broadcast to every layer
        assert np.array_equal(w[:, 3], data)


def test_e4e_dict_with_one_tensor(tmp_path):
    torch.save({"latents": torch.zeros(2, 8, 64)}, tmp_path / "e4e.pt")
    assert load_latents(tmp_path / "e4e.pt", 8, 64).shape == (2, 8, 64)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_latents(tmp_path, bad):
    data = np.zeros((4, 8, 64), np.float32)
    data[2, 1, 5] = bad
    np.save(tmp_path / "w.npy", data)
    with pytest.raises(InputError, match=r"1 NaN/Inf values in latents \[2\]"):
        load_latents(tmp_path / "w.npy", 8, 64)


def test_wrong_shape(tmp_path):
    np.save(tmp_path / "w.npy", np.zeros((2, 18, 512), np.float32))
    with pytest.raises(ShapeError, match=r"shape \[2, 18, 512\]; this bundle takes \[N, 8, 64\]"):
        load_latents(tmp_path / "w.npy", 8, 64)


class _Payload:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickle_payloads_refused(tmp_path):
    torch.save({"w": _Payload()}, tmp_path / "evil.pt")
    with pytest.raises(InputError, match="refused: not a weights-only tensor file"):
        load_latents(tmp_path / "evil.pt", 8, 64)
    np.save(tmp_path / "evil.npy", np.array([_Payload()], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="refused"):
        load_latents(tmp_path / "evil.npy", 8, 64)


def test_missing_and_unknown_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_latents(tmp_path / "none.npy", 8, 64)
    (tmp_path / "w.txt").write_text("1 2 3")
    with pytest.raises(InputError, match=".pt or .npy"):
        load_latents(tmp_path / "w.txt", 8, 64)


def test_seeds():
    assert parse_seeds("0-3,7, 9-10") == [0, 1, 2, 3, 7, 9, 10]
    for bad in ("a", "3-1", "1,,2"):
        with pytest.raises(InputError):
            parse_seeds(bad)
    z = seed_latents([0, 1, 0], 64)
    assert np.array_equal(z[0], z[2]) and not np.array_equal(z[0], z[1])


def test_slugs_are_distinct():
    slugs = prompt_slugs(["Blue goatee!", "blue  goatee", "red hair"])
    assert slugs[2] == "red-hair"
    assert slugs[0] != slugs[1] and all(s.startswith("blue-goatee") for s in slugs[:2])


def test_png_written_atomically(tmp_path):
    save_png(tmp_path / "a.png", np.zeros((4, 4, 3), np.uint8))
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]
