import json

import numpy as np
import pytest

from mcaclip.bundle import Bundle
from mcaclip.errors import McaError, PromptError
from mcaclip.runtime.io import to_uint8
from mcaclip.runtime.pipeline import EditPipeline


@pytest.fixture
def latents(tiny_bundle):
    with EditPipeline(tiny_bundle) as p:
        return p.seeds_to_latents([0, 1, 2])


def test_onnxruntime_matches_pytorch(tiny_bundle, latents):
    prompts = ["blue goatee", "glasses"]  # one cached, one through the text encoder
    with EditPipeline(tiny_bundle) as ort_p, EditPipeline(tiny_bundle, backend="torch") as torch_p:
        a = next(ort_p.edit(latents, prompts, batch_size=3))
        b = next(torch_p.edit(latents, prompts, batch_size=3))
        assert a.images.shape == (3, 2, 3, 32, 32) and a.originals.shape == (3, 3, 32, 32)
        assert len(a.masks) == 7 and a.masks[-1].shape == (3, 2, 1, 32, 32)
        assert np.abs(a.images - b.images).max() <= 1e-4
        assert np.abs(a.originals - b.originals).max() <= 1e-4
        assert max(np.abs(x - y).max() for x, y in zip(a.masks, b.masks)) <= 1e-5
        assert ort_p.runner("fusion").providers == ["CPUExecutionProvider"]
        # without masks (mcarun edit with neither --save-masks nor --grid): same pictures
        for p in (ort_p, torch_p):
            c = next(p.edit(latents, prompts, batch_size=3, masks=False))
            assert c.masks == [] and np.abs(c.images - a.images).max() <= 1e-4
        # a runner fetches only the outputs asked for, and names an unknown one
        for p in (ort_p, torch_p):
            r = p.runner("masked_generator")
            feed = {"w": latents, "w_edit": latents[:, None], "e_t": p.embed(["glasses"])[None]}
            feed["e_t"] = np.repeat(feed["e_t"], len(latents), 0)
            out = r.infer(feed, ["image", "original"])
            assert sorted(out) == ["image", "original"] and out["image"].shape[:2] == (3, 1)
            with pytest.raises(McaError, match="no output 'mask'"):
                r.infer(feed, ["mask"])


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_pixels_are_the_pictures_as_uint8(tiny_bundle, latents, backend):
    """pixels=True (what mcarun edit writes): the same bytes as converting the float pictures
    on the host; torch converts on its device."""
    prompts = ["blue goatee", "glasses"]
    with EditPipeline(tiny_bundle, backend=backend) as p:
        f = next(p.edit(latents, prompts, batch_size=3, masks=False))
        u = next(p.edit(latents, prompts, batch_size=3, masks=True, pixels=True))
    assert u.images.dtype == np.uint8 and u.images.shape == (3, 2, 32, 32, 3)
    assert u.originals.shape == (3, 32, 32, 3)
    assert np.array_equal(u.images, to_uint8(f.images))
    assert np.array_equal(u.originals, to_uint8(f.originals))
    assert len(u.masks) == 7 and u.masks[0].dtype == np.float32  # masks stay float


def test_device_pixels_match_host_conversion():
    import torch

    from mcaclip.runtime.backends.base import device_pixels, to_host

    x = np.random.default_rng(0).uniform(-1.2, 1.2, (2, 3, 3, 16, 16)).astype(np.float32)
    # values on the rounding boundaries (k + 0.5 levels) and at the clip limits
    x[0, 0, 0, 0, :6] = (np.array([0, 1, 127, 128, 254, 255], np.float32) - 127.5) / 127.5
    x[0, 0, 0, 1, :4] = [-1.0, 1.0, -5.0, 5.0]
    got = to_host([device_pixels(torch.from_numpy(x))])[0]
    assert got.shape == (2, 3, 16, 16, 3) and got.dtype == np.uint8
    assert np.array_equal(got, to_uint8(x))


def test_cached_embedding_equals_text_encoder(tiny_bundle):
    with EditPipeline(tiny_bundle) as p:
        cached = p.embed(["red hair"])
        tokens = p.tokenize(["red hair"])
        fresh = p.runner("text_encoder").infer({"tokens": tokens})["e_t"]
    assert np.abs(cached - fresh).max() <= 1e-5


def test_several_prompts_equal_single_edits(tiny_bundle, latents):
    prompts = ["blue goatee", "red hair", "glasses", "a smiling face"]
    with EditPipeline(tiny_bundle) as p:
        many = next(p.edit(latents[:2], prompts, batch_size=2))
        for j, prompt in enumerate(prompts):
            one = next(p.edit(latents[:2], [prompt], batch_size=2))
            assert np.abs(many.images[:, j] - one.images[:, 0]).max() <= 1e-5
            assert np.abs(many.originals - one.originals).max() <= 1e-6


def test_batches_cover_every_latent(tiny_bundle, latents):
    with EditPipeline(tiny_bundle) as p:
        batches = list(p.edit(latents, ["red hair"], batch_size=2))
        whole = next(p.edit(latents, ["red hair"], batch_size=3))
    assert [b.indices for b in batches] == [[0, 1], [2]]
    split = np.concatenate([b.images for b in batches])
    assert np.abs(split - whole.images).max() <= 1e-5


def test_padded_last_batch_gives_the_same_edits(tiny_bundle, latents, monkeypatch):
    """pad_batches (on with CUDA graphs or compile): a last, smaller batch is filled up to the
    batch size, so every device call has one shape; the edits are those of unpadded calls."""
    with EditPipeline(tiny_bundle, backend="torch") as p:
        assert not p.pad_batches  # the CPU torch backend has no graphs to capture
        ref = list(p.edit(latents, ["red hair"], batch_size=2))
    with EditPipeline(tiny_bundle, backend="torch", pad_batches=True) as p:
        shapes = []
        editor = p.device_editor
        real = editor.edit

        def spy(w, e, masks, pixels, keep):
            shapes.append(w.shape[0])
            return real(w, e, masks, pixels, keep)

        monkeypatch.setattr(editor, "edit", spy)
        got = list(p.edit(latents, ["red hair"], batch_size=2))
        one = list(p.edit(latents[:1], ["red hair"], batch_size=2))  # fewer than a batch
    assert shapes == [2, 2, 1]  # the last batch of 1 went out as 2; a lone latent as 1
    assert [b.indices for b in got] == [[0, 1], [2]] and one[0].images.shape[0] == 1
    for a, b in zip(got, ref):
        assert a.images.shape == b.images.shape and a.originals.shape == b.originals.shape
        assert np.abs(a.images - b.images).max() <= 1e-5
        assert all(x.shape == y.shape for x, y in zip(a.masks, b.masks))


def test_padded_seed_mapping_gives_the_same_latents(tiny_bundle):
    """With pad_batches, the mapping network's last, smaller chunk of seeds is filled up too
    (one captured shape); the latents are those of unpadded calls."""
    with EditPipeline(tiny_bundle, backend="torch") as p:
        seeds = list(range(p.max_batch + 1))
        ref = p.seeds_to_latents(seeds)
    with EditPipeline(tiny_bundle, backend="torch", pad_batches=True) as p:
        runner = p.runner("mapping")
        real, shapes = runner.infer, []

        def spy(feed):
            shapes.append(len(feed["z"]))
            return real(feed)

        runner.infer = spy
        got = p.seeds_to_latents(seeds)
        alone = p.seeds_to_latents([3])  # fewer than a batch: not padded
    assert shapes == [p.max_batch, p.max_batch, 1]
    assert got.shape == ref.shape and np.abs(got - ref).max() <= 1e-6
    np.testing.assert_allclose(alone[0], ref[3], atol=1e-6)


def test_request_errors(tiny_bundle, latents):
    with EditPipeline(tiny_bundle) as p:
        with pytest.raises(
            McaError, match="batch size 5 is outside the bundle's batch profile 1..4"
        ):
            next(p.edit(latents, ["red hair"], batch_size=5))
        with pytest.raises(McaError, match="5 prompts per latent is above the bundle's 4"):
            next(p.edit(latents, ["a", "b", "c", "d", "e"], batch_size=1))
        with pytest.raises(PromptError, match="over the text encoder's limit of 30"):
            p.embed(["very " * 40 + "blue goatee"])
        bad = latents.copy()
        bad[1, 0, 0] = np.nan
        with pytest.raises(McaError, match=r"NaN/Inf values in latents \[1\]"):
            next(p.edit(bad, ["red hair"], batch_size=1))


def test_unknown_prompt_without_text_encoder(bundle_copy):
    path = bundle_copy / "manifest.json"
    m = json.loads(path.read_text())
    del m["graphs"]["text_encoder"]
    del m["files"]["onnx/text_encoder.onnx"]
    (bundle_copy / "onnx" / "text_encoder.onnx").unlink()
    path.write_text(json.dumps(m))
    with EditPipeline(Bundle.open(bundle_copy)) as p:
        assert p.embed(["red hair"]).shape == (1, 64)
        with pytest.raises(PromptError, match="'glasses' is not in the bundle's cache.*--prompt"):
            p.embed(["glasses"])
