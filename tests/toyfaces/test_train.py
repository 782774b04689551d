import pytest
import torch

from mcaclip.config import GeneratorConfig, load_preset
from mcaclip.nn.stylegan2 import Generator
from mcaclip.toyfaces.attributes import CHOICES, Face
from mcaclip.toyfaces.data import ATTRIBUTE_DIM, encode, make_set, train_and_heldout, visibility
from mcaclip.toyfaces.nets import AttributeProbe, ToyIdentity, ToyParser
from mcaclip.toyfaces.train import (
    attribute_z,
    degrade,
    face_shape_pixels,
    glasses_shape_pixels,
    pattern_pixels,
    train_generator,
    train_identity,
    train_parser,
    train_probe,
)


def test_heldout_faces_are_unseen():
    train, test = train_and_heldout(60, 20, size=32, seed=0)
    assert not set(train.faces) & set(test.faces)
    assert train.images.shape == (60, 3, 32, 32) and test.segmentation.shape == (20, 32, 32)


def test_encoding_is_one_hot_per_attribute():
    faces = [Face(), Face(beard="full", beard_colour="pink")]
    codes = encode(faces)
    assert codes.shape == (2, ATTRIBUTE_DIM) and torch.all(codes.sum(1) == len(CHOICES))
    assert not torch.equal(codes[0], codes[1])
    seen = visibility([Face(hair_style="bald", beard="none", glasses="none")])[0]
    names = list(CHOICES)
    assert not seen[names.index("hair_colour")] and seen[names.index("eye_colour")]


def test_networks_have_the_interfaces_they_stand_in_for():
    x = torch.rand(2, 3, 48, 48) * 2 - 1
    assert ToyParser().eval()(x).shape == (2, 7, 48, 48)  # BiSeNet-like logits, label 0 = bg
    emb = ToyIdentity().eval()(torch.rand(2, 3, 112, 112) * 2 - 1)
    assert emb.shape == (2, 64) and torch.allclose(emb.norm(dim=-1), torch.ones(2), atol=1e-5)
    probe = AttributeProbe().eval()
    assert probe.predict(x).shape == (2, len(CHOICES))


def test_degrade_is_seeded_and_bounded():
    x = make_set([Face()], 32).images.repeat(4, 1, 1, 1)
    a = degrade(x, torch.Generator().manual_seed(0))
    b = degrade(x, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.abs().max() <= 1 and not torch.equal(a, x)


def test_pattern_pixels_are_the_background_pattern():
    faces = [Face(background_pattern=p) for p in ("plain", "stripes", "dots")]
    data = make_set(faces, 64)
    pattern = pattern_pixels(data)
    share = pattern.float().mean((1, 2))
    assert share[0] < 0.03  # plain: only anti-aliased edges of the head
    assert share[1] > 0.2 and share[2] > 0.08  # stripes cover half the background, dots a fifth
    assert not (pattern & (data.segmentation != 0)).any()
    # a dot centre is a pattern pixel (16 px cells at 64 px: the first dot sits at pixel 8, 8)
    assert pattern[2, 8, 8] and not pattern[0, 8, 8]


def test_glasses_shape_pixels_tell_round_from_square():
    kinds = ("round", "square", "none")
    data = make_set([Face(glasses=k) for k in kinds], 64)
    shape = glasses_shape_pixels(data)
    frames = data.segmentation == 6
    assert shape.any() and not (shape & ~(frames[0] | frames[1])).any()
    # some of each kind's frame, not all of it: the shared parts (bridge, sides) are excluded
    for i in (0, 1):
        assert 0 < (shape & frames[i]).sum() < frames[i].sum()
    assert not glasses_shape_pixels(make_set([Face(glasses="round")] * 2, 64)).any()


def test_face_shape_pixels_are_the_outline_where_shapes_differ():
    shapes = ("round", "oval", "square")
    data = make_set([Face(face_shape=s, hair_style="bald") for s in shapes], 64)
    band = face_shape_pixels(data)
    face = (data.segmentation != 0) & (data.segmentation != 2)
    # every band pixel is face for some shape and not for another; the face's centre is not
    assert band.any() and not band[32, 32]
    assert torch.equal(band, face.any(0) & ~face.all(0))
    assert not face_shape_pixels(make_set([Face(face_shape="oval")] * 2, 64)).any()


def test_micro_training_learns_something():
    train, test = train_and_heldout(256, 64, size=32, seed=0)
    probe, pm = train_probe(train, test, steps=60, batch=32, width=8)
    assert pm["accuracy"]["background_colour"] > 0.5  # 8 classes: chance is 0.125
    parser, sm = train_parser(train, test, steps=40, batch=16, width=8)
    assert sm["pixel_accuracy"] > 0.5
    ident, im = train_identity(train, test, steps=40, batch=32, width=8)
    assert im["accuracy"] > 1 / 12 and im["cos_same"] > im["cos_different"]
    cfg = GeneratorConfig(
        size=32, style_dim=96, n_mlp=2, channel_max=16, channel_base=512, lr_mlp=0.1
    )
    torch.manual_seed(0)
    G = Generator(cfg)
    with torch.no_grad():
        z = attribute_z(encode(test.faces), 96)
        before = (G.synthesis(G.broadcast(G.mapping(z)), noise_mode="none") - test.images).abs()
    G, gm, out = train_generator(
        G,
        train,
        test,
        steps=40,
        batch=8,
        lr=3e-3,
        log_every=10,
        part_weight=4.0,
        pattern_weight=4.0,
        eye_weight=6.0,
        glasses_shape_weight=8.0,
        face_shape_weight=3.0,
    )
    assert out.shape == (64, 3, 32, 32) and len(gm["history"]) == 4
    assert gm["heldout_l1"] < float(before.mean())


def test_face_shape_hair_limits_the_outline_weight_to_those_faces():
    train, test = train_and_heldout(64, 8, size=32, seed=0)
    cfg = GeneratorConfig(size=32, style_dim=96, n_mlp=2, channel_max=8, channel_base=256)

    def losses(**kw):
        torch.manual_seed(0)
        _, m, _ = train_generator(Generator(cfg), train, test, steps=4, batch=8, log_every=1, **kw)
        return [h["l1"] for h in m["history"]]

    plain = losses(face_shape_weight=1.0)
    every = losses(face_shape_weight=6.0)
    assert every != plain  # the band is weighted
    assert losses(face_shape_weight=6.0, face_shape_hair=("bald", "short", "long")) == every
    assert losses(face_shape_weight=6.0, face_shape_hair=()) == plain  # no face banded
    long_only = losses(face_shape_weight=6.0, face_shape_hair=("long",))
    assert long_only not in (plain, every)
    with pytest.raises(ValueError, match="hair styles are"):
        losses(face_shape_weight=6.0, face_shape_hair=("curly",))


def test_clip_training_micro():
    from mcaclip.config import load_preset
    from mcaclip.nn.text import ClipTowers
    from mcaclip.toyfaces.clip import (
        counterfactual,
        counterfactual_texts,
        describe,
        phrase_groups,
        phrases,
        train_clip,
    )

    face = Face(beard="goatee", beard_colour="blue", glasses="none")
    assert "a blue goatee" in phrases(face) and "no glasses" in phrases(face)
    import numpy as np

    texts = {describe(face, np.random.default_rng(i)) for i in range(20)}
    assert face.caption() in texts and any(t.startswith("a face with ") for t in texts)
    # the short form names what edit prompts name
    black = face.replace(hair_colour="black", glasses="round", glasses_colour="red")
    assert phrase_groups(black)["hair"] == "short black hair"
    assert phrase_groups(black, short=True)["hair"] == "black hair"
    assert phrase_groups(black, short=True)["glasses"] == "red glasses"
    # hard negatives: one part's phrase changes, and the two texts differ only there
    rng = np.random.default_rng(0)
    for _ in range(50):
        other, part = counterfactual(face, rng)
        changed = [k for k, v in phrase_groups(face).items() if phrase_groups(other)[k] != v]
        assert changed == [part] and other != face
        first, second = counterfactual_texts(face, other, part, rng)
        assert first != second and first.startswith("a face with ")
        assert phrase_groups(face)[part].split()[-1] in first
    # a change the short form cannot name (hair style, glasses kind) is always named in full
    for change in ({"hair_style": "long"}, {"glasses": "square"}):
        styled = black.replace(**change)
        for _ in range(20):
            first, second = counterfactual_texts(
                black, styled, "hair" if "hair_style" in change else "glasses", rng
            )
            assert first != second
    train, test = train_and_heldout(256, 128, size=32, seed=0)
    torch.manual_seed(0)
    towers = ClipTowers.create(load_preset("tiny-32").clip, random_weights=True)
    towers, metrics = train_clip(towers, train, test, steps=30, batch=32)
    torch.manual_seed(0)
    every = ClipTowers.create(load_preset("tiny-32").clip, random_weights=True)
    options = dict(template_odds=0.5, perspective_odds=0.5, swap_pairs=3)
    every, _ = train_clip(
        every,
        train,
        test,
        steps=2,
        batch=32,
        **options,
        multi_positive=True,
        direction_weight=1.0,
        attribute_weight=1.0,
    )
    with pytest.raises(ValueError, match="no room"):
        train_clip(every, train, test, steps=1, batch=8, swap_pairs=2)
    assert not any(p.requires_grad for p in towers.parameters())
    assert 0 <= metrics["retrieval_top1_of_100"] <= 1
    # background colour is the easiest attribute: clearly above chance (1/8) after 30 steps
    assert metrics["zero_shot_accuracy"]["background_colour"] > 0.2
    # the parts the benchmark edits are scored in the prompts' own wording
    assert {"beard", "beard_colour", "glasses", "glasses_colour", "eye_colour"} <= set(
        metrics["zero_shot_accuracy"]
    )
    assert all(0 <= v <= 1 for v in metrics["pair_accuracy"].values())
    assert {"lip_colour", "beard_colour"} <= set(metrics["pair_accuracy"])


def test_clip_teaching_what_editing_needs():
    import numpy as np

    from mcaclip.toyfaces.clip import (
        _attribute_loss,
        _changed,
        _direction_loss,
        mentioned,
        swap_texts,
        swapped,
        templated,
        true_of,
    )

    rng = np.random.default_rng(0)
    face = Face(beard="goatee", beard_colour="blue", eye_colour="red", glasses="none")
    # swaps: two visible parts trade colours; the texts use the same words bound the other way
    for _ in range(30):
        other, parts = swapped(face, rng)
        assert "glasses" not in parts and len(set(parts)) == 2
        assert sorted(other.to_indices()) == sorted(face.to_indices())  # the same colours
        first, second = swap_texts(face, other, parts, rng)
        assert first != second and true_of(first, face) and not true_of(first, other)
        assert true_of(second, other) and not true_of(second, face)
        if " and " in first:
            assert sorted(first.split()) == sorted(second.split())
    plain = Face(hair_style="bald", eye_colour="red", lip_colour="red", background_colour="red")
    assert swapped(plain, rng) is None  # every visible part has one colour
    # multi-positive truth: phrases in either form, captions only of their own face
    assert true_of("a face with a blue goatee and red eyes", face)
    assert true_of("a face with black hair", face) and true_of("a face with short black hair", face)
    assert not true_of("a face with a blue beard", face)
    assert true_of(face.caption(), face) and not true_of(face.caption(), other)
    # CLIP-NCE's wording
    template = "a photo of a {}."
    assert templated("a face with a blue goatee", template, False) == "a photo of a blue goatee."
    assert templated("a face with red eyes", template, True) == "a photo of a face with red eyes."
    assert templated(face.caption(), template, True) == face.caption()
    assert _changed("a face with red eyes and no hair", "a face with blue eyes and no hair") == (
        ("red eyes",),
        ("blue eyes",),
    )
    # what a text names (the attribute read-out's targets): the long form names the hair's
    # style, the short form only its colour; a caption names every visible attribute
    hair = face.replace(hair_style="short", hair_colour="black")
    named = mentioned("a face with short black hair and no glasses", hair)
    assert named == {"hair_style": "short", "hair_colour": "black", "glasses": "none"}
    assert mentioned("a face with black hair", hair) == {"hair_colour": "black"}
    assert "glasses_colour" not in mentioned(hair.caption(), hair)  # no glasses: not shown
    head = torch.nn.Linear(16, sum(len(v) for v in CHOICES.values()))
    emb = torch.randn(2, 16)
    assert _attribute_loss(head, emb, [{}, {}]) == 0  # nothing named, nothing to learn
    assert _attribute_loss(head, emb, [named, {"eye_colour": "red"}]) > 0
    # direction InfoNCE: image changes that match their text changes score lower
    torch.manual_seed(0)
    txt = torch.nn.functional.normalize(torch.randn(8, 16), dim=-1)
    keys = [(("a",), (str(k),)) for k in range(4)]
    matched = _direction_loss(txt.clone(), txt, keys, 10.0)
    shuffled = _direction_loss(txt[[2, 3, 4, 5, 6, 7, 0, 1]], txt, keys, 10.0)
    assert matched < shuffled
    same = [keys[0]] * 4  # every pair the same change: no negatives left
    assert _direction_loss(txt[[2, 3, 4, 5, 6, 7, 0, 1]], txt, same, 10.0) < 1e-3


def test_micro_build_writes_every_network(tmp_path):
    import json

    from mcaclip.nn.stylegan2 import Generator as G
    from mcaclip.toyfaces.build import MICRO, build

    metrics = build(tmp_path, MICRO, seed=0)
    for name in ("generator", "clip", "probe", "parser", "identity"):
        assert (tmp_path / f"{name}.safetensors").is_file()
    latents = torch.load(tmp_path / "test_latents.pt", weights_only=True)
    assert latents.shape == (MICRO.n_test, 8, 64)
    assert len(json.loads((tmp_path / "test_faces.json").read_text())) == MICRO.n_test
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["probe"]["accuracy"].keys() == metrics["probe"]["accuracy"].keys()
    assert set(saved["seconds"]) >= {"probe", "parser", "identity", "clip", "generator", "total"}
    assert "probe_accuracy_on_renders" in saved["generator"]
    g = G.from_checkpoint(tmp_path / "generator.safetensors", preset="tiny-32")
    assert g.n_latent == 8

    # --reuse: the earlier build's networks and metrics, a generator trained again (same seed:
    # the same generator); other settings are refused
    again = build(tmp_path / "again", MICRO, seed=0, reuse=tmp_path)
    for name in ("clip", "probe", "parser", "identity", "generator"):
        a, b = (
            (tmp_path / f"{name}.safetensors").read_bytes(),
            (tmp_path / "again" / f"{name}.safetensors").read_bytes(),
        )
        assert a == b, name
    assert again["probe"] == saved["probe"] and again["reused_from_earlier_build"]
    with pytest.raises(ValueError, match="seed 0"):
        build(tmp_path / "other", MICRO, seed=1, reuse=tmp_path)

    # the clip command: CLIP trained again into the build (seeded: the same bytes), the other
    # networks untouched, metrics.json's clip entry and settings rewritten; another seed refused
    from mcaclip.toyfaces.build import rebuild_clip

    clip_before = (tmp_path / "clip.safetensors").read_bytes()
    generator_before = (tmp_path / "generator.safetensors").read_bytes()
    (tmp_path / "clip.safetensors").write_bytes(b"stale")
    rebuilt = rebuild_clip(tmp_path, MICRO, seed=0)
    assert (tmp_path / "clip.safetensors").read_bytes() == clip_before
    assert (tmp_path / "generator.safetensors").read_bytes() == generator_before
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["clip"] == rebuilt["clip"] and "binding_accuracy" in saved["clip"]
    assert saved["scale"]["clip_swap_pairs"] == MICRO.clip_swap_pairs
    with pytest.raises(ValueError, match="another seed"):
        rebuild_clip(tmp_path, MICRO, seed=1)

    # the encoder command: e4e trained on the build's renders, its held-out quality written
    from mcaclip.nn.encoder import load_encoder
    from mcaclip.toyfaces.encoder import ENCODER, METRICS, EncoderRecipe, train_encoder

    path = train_encoder(EncoderRecipe(steps=3, batch_size=4), tmp_path)
    assert path == tmp_path / ENCODER
    encoder = load_encoder(path, load_preset("tiny-32").encoder, 8, 64)
    assert encoder(torch.zeros(1, 3, 32, 32)).shape == (1, 8, 64)
    held_out = json.loads((tmp_path / METRICS).read_text())["held_out"]
    assert held_out["faces"] == MICRO.n_test
    assert 0 <= held_out["attributes_kept"] <= 1 and -1 <= held_out["identity_cosine"] <= 1
