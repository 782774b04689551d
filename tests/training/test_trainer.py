import json
import math
import subprocess
import sys
import textwrap

import pytest
import torch

from mcaclip.bundle import Bundle
from mcaclip.export.cli import main as mcaexport
from mcaclip.training.cli import main as mcatrain
from mcaclip.training.trainer import LossWeights, TrainConfig, Trainer

TERMS = ("id", "l2", "nce", "area", "tv", "bg")


def _config(out, **kw):
    base = dict(
        out=str(out),
        prompts=["blue goatee"],
        preset="tiny-32",
        steps=6,
        batch_size=2,
        random_weights=True,
        val_every=1000,
        ckpt_every=3,
        log_every=1,
        val_size=4,
    )
    base.update(kw)
    return TrainConfig(**base)


def _trained(trainer):
    return {
        k: v.clone()
        for k, v in trainer.editor.state_dict().items()
        if k.split(".")[0] in ("fusion", "mapper", "masknet")
    }


def test_fifty_steps_lower_the_loss_and_export(tmp_path, cli):
    trainer = Trainer(_config(tmp_path / "run", steps=50, val_every=25, ckpt_every=25))
    before = trainer.evaluate()
    trainer.fit()
    after = trainer.evaluate()
    assert after["total"] < before["total"]
    lines = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == list(range(1, 51))
    for r in lines:
        assert all(math.isfinite(r[t]) for t in TERMS + ("total", "lr", "step_time"))
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["train"]["weights"] == LossWeights().__dict__
    assert sorted(config["losses_on"]) == sorted(TERMS)
    assert (tmp_path / "run" / "samples" / "step_000050.png").is_file()
    assert (tmp_path / "run" / "checkpoints" / "latest").read_text() == "step_000050"
    code, _, err = cli(
        mcaexport,
        "build-engine",
        "--checkpoint",
        tmp_path / "run" / "editor.safetensors",
        "--prompt",
        "blue goatee",
        "--backend",
        "onnxruntime",
        "--out",
        tmp_path / "bundle",
    )
    assert code == 0, err
    b = Bundle.open(tmp_path / "bundle")
    assert not b.random_weights and b.manifest["sources"]["checkpoint"].endswith(
        "editor.safetensors"
    )


def test_resume_equals_uninterrupted_run(tmp_path):
    straight = Trainer(_config(tmp_path / "a"))
    straight.fit()
    first = Trainer(_config(tmp_path / "b", steps=3))
    first.fit()
    resumed = Trainer(_config(tmp_path / "b", steps=6), resume=True)
    assert resumed.step == 3
    resumed.fit()
    a, b = _trained(straight), _trained(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    log_a = (tmp_path / "a" / "log.jsonl").read_text().splitlines()
    log_b = (tmp_path / "b" / "log.jsonl").read_text().splitlines()
    assert _without_times(log_a) == _without_times(log_b)


def _without_times(lines):
    return [
        {k: v for k, v in json.loads(x).items() if k not in ("step_time", "times")} for x in lines
    ]


def test_same_seed_same_weights_other_seed_not(tmp_path):
    runs = [
        Trainer(_config(tmp_path / n, steps=2, seed=s)) for n, s in (("a", 1), ("b", 1), ("c", 2))
    ]
    for r in runs:
        r.fit()
    a, b, c = (_trained(r) for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_a_second_run_in_the_same_directory_is_refused(tmp_path):
    Trainer(_config(tmp_path / "run", steps=3)).fit()
    from mcaclip.errors import McaError

    with pytest.raises(McaError, match="holds a run already; pass --resume"):
        Trainer(_config(tmp_path / "run", steps=3))


@pytest.mark.parametrize(
    "args, fusion, masks, losses",
    [
        (
            ["--fusion", "tem"],
            "TextEmbeddingMapping",
            True,
            {"id", "nce", "bg", "l2", "area", "tv"},
        ),
        (["--no-masks"], "FeatureFusion", False, {"id", "nce", "bg", "l2"}),
        (["--method", "styleclip-mapper"], "LatentOnly", False, {"clip", "l2", "id"}),
        (
            ["--fusion-tokens", "2", "--prompt", "red hair"],
            "FeatureFusion",
            True,
            {"id", "nce", "bg", "l2", "area", "tv"},
        ),
    ],
)
def test_variants_by_flag(tmp_path, cli, args, fusion, masks, losses):
    out = tmp_path / "run"
    code, stdout, err = cli(
        mcatrain,
        "--preset",
        "tiny-32",
        "--random-weights",
        "--prompt",
        "blue goatee",
        "--steps",
        "2",
        "--log-every",
        "1",
        "--out",
        out,
        "--device",
        "cpu",
        *args,
    )
    assert code == 0, err
    config = json.loads((out / "config.json").read_text())
    assert set(config["losses_on"]) == losses
    record = json.loads((out / "log.jsonl").read_text().splitlines()[-1])
    assert losses <= set(record) and all(math.isfinite(record[k]) for k in losses)
    editor = json.loads((out / "editor.json").read_text())["config"]["preset"]["editor"]
    assert editor["use_masks"] is masks
    from mcaclip.nn.editor import MCAEditor

    assert type(MCAEditor.load(out / "editor.safetensors").fusion).__name__ == fusion


def test_missing_weight_files_are_named(tmp_path, cli, rosinality_ckpt):
    from safetensors.torch import save_file

    from mcaclip.config import load_preset
    from mcaclip.nn.text import ClipTowers

    clip = ClipTowers.create(load_preset("tiny-32").clip, random_weights=True)
    save_file(
        {k: v.contiguous() for k, v in clip.model.state_dict().items()},
        tmp_path / "clip.safetensors",
    )
    base = [
        "--preset",
        "tiny-32",
        "--prompt",
        "blue goatee",
        "--steps",
        "1",
        "--out",
        tmp_path / "run",
    ]
    code, _, err = cli(mcatrain, *base)
    assert code == 2 and "--generator PATH is needed" in err
    real = ["--generator", rosinality_ckpt, "--clip-weights", tmp_path / "clip.safetensors"]
    code, _, err = cli(mcatrain, *base, *real)
    assert code == 2 and "--arcface PATH is needed" in err and "--id-weight 0" in err
    code, _, err = cli(mcatrain, *base, *real, "--id-weight", "0")
    assert code == 2 and "--parser PATH is needed" in err and "--bg-weight 0" in err
    code, _, err = cli(mcatrain, *base, *real, "--id-weight", "0", "--bg-weight", "0")
    assert code == 0, err
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["train"]["weights"]["id"] == 0 and "id" not in config["losses_on"]
    code, _, err = cli(
        mcatrain, *base[:-2], "--out", tmp_path / "r2", "--arcface", tmp_path / "none.pth", *real
    )
    assert code == 2 and "--arcface" in err and "file not found" in err


DDP_SCRIPT = textwrap.dedent(
    """
    import sys, torch, torch.distributed as dist
    from mcaclip.training.trainer import TrainConfig, Trainer
    dist.init_process_group("gloo")
    out = sys.argv[1]
    config = TrainConfig(out=out, prompts=["blue goatee"], preset="tiny-32", steps=3,
                         batch_size=2, random_weights=True, log_every=1, ckpt_every=3)
    trainer = Trainer(config)
    assert trainer.world == 2
    trainer.fit()
    flat = torch.cat([p.detach().flatten() for p in trainer.editor.trainable_parameters()])
    torch.save(flat, f"{out}.rank{dist.get_rank()}.pt")
    dist.destroy_process_group()
    """
)


def test_ddp_two_processes_gloo(tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    out = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            "29517",
            str(script),
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    a = torch.load(f"{out}.rank0.pt", weights_only=True)
    b = torch.load(f"{out}.rank1.pt", weights_only=True)
    assert torch.equal(a, b), "DDP keeps the replicas identical"
    single = Trainer(_config(tmp_path / "single", steps=3))
    single.fit()
    flat = torch.cat([p.detach().flatten() for p in single.editor.trainable_parameters()])
    assert not torch.equal(a, flat), "two ranks saw twice the data"
    lines = (out / "log.jsonl").read_text().splitlines()
    assert len(lines) == 3, "only rank 0 logs"
    assert (out / "checkpoints" / "latest").read_text() == "step_000003"


def test_trains_on_e4e_latent_files(tmp_path):
    latents = torch.randn(10, 8, 64) * 0.5
    torch.save(latents, tmp_path / "latents.pt")
    trainer = Trainer(_config(tmp_path / "run", steps=2, latents=str(tmp_path / "latents.pt")))
    assert torch.equal(trainer.data.validation, latents[6:])  # the last val_size are held out
    assert len(trainer.data.data) == 6
    trainer.fit()
    torch.save(torch.randn(10, 18, 512), tmp_path / "bad.pt")
    from mcaclip.errors import ShapeError

    with pytest.raises(ShapeError, match=r"latents must be \[N, 8, 64\], got \[10, 18, 512\]"):
        Trainer(_config(tmp_path / "run2", latents=str(tmp_path / "bad.pt")))


def test_mask_init_and_nce_distortion_flags_reach_the_run(tmp_path, cli):
    out = tmp_path / "run"
    code, _, err = cli(
        mcatrain,
        *("--preset", "tiny-32", "--random-weights", "--prompt", "blue goatee"),
        *("--steps", "1", "--out", out, "--device", "cpu"),
        *("--mask-init", "0.9", "--nce-distortion", "0.25"),
    )
    assert code == 0, err
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["nce_distortion"] == 0.25
    editor = json.loads((out / "editor.json").read_text())["config"]["preset"]["editor"]
    assert editor["mask_init"] == 0.9
    trainer = Trainer(_config(tmp_path / "b", steps=1, mask_init=0.9, nce_distortion=0.0))
    assert trainer.losses["nce"].distortion == 0.0


def test_mask_ramp_keeps_the_mask_terms_off_then_ramps_them_in(tmp_path, cli):
    c = _config(tmp_path / "a", steps=10, mask_ramp=(0.2, 0.6))
    assert [c.mask_scale(s) for s in (0, 1, 2, 4, 6, 9)] == pytest.approx([0, 0, 0, 0.5, 1, 1])
    assert _config(tmp_path / "b").mask_scale(0) == 1.0  # the paper: full from the start
    step = _config(tmp_path / "c", steps=10, mask_ramp=(0.5, 0.5))
    assert [step.mask_scale(s) for s in (4, 5)] == [0.0, 1.0]
    # the total leaves the mask terms out while the ramp is at 0, and counts them in full after
    weights = LossWeights(id=0, l2=0, nce=0, bg=0, area=1.0, tv=1.0)
    trainer = Trainer(_config(tmp_path / "d", steps=10, mask_ramp=(0.2, 0.6), weights=weights))
    w = trainer.data.sample(2, trainer.data_rng)
    idx = torch.zeros(2, dtype=torch.long)
    total, terms, _ = trainer.losses_for(w, idx)
    assert terms["area"] > 0 and float(total.detach()) == 0.0
    trainer.step = 8
    total, terms, _ = trainer.losses_for(w, idx)
    assert float(total.detach()) == pytest.approx(terms["area"] + terms["tv"], rel=1e-5)
    with pytest.raises(Exception, match="need 0 <= START <= END <= 1"):
        Trainer(_config(tmp_path / "e", mask_ramp=(0.7, 0.3)))
    out = tmp_path / "run"
    code, _, err = cli(
        mcatrain,
        *("--preset", "tiny-32", "--random-weights", "--prompt", "blue goatee"),
        *("--steps", "1", "--out", out, "--device", "cpu", "--mask-ramp", "0.3:0.7"),
    )
    assert code == 0, err
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["mask_ramp"] == [0.3, 0.7]
    code, _, err = cli(
        mcatrain,
        *("--preset", "tiny-32", "--random-weights", "--prompt", "blue goatee"),
        *("--steps", "1", "--out", tmp_path / "r2", "--mask-ramp", "0.7"),
    )
    assert code != 0 and "START:END" in err


def test_bg_region_part_reaches_the_loss_and_names_promptless_parts(tmp_path, cli, caplog):
    trainer = Trainer(_config(tmp_path / "a", steps=1, bg_region="part"))
    assert trainer.losses["bg"].region == "part"
    w = trainer.data.sample(2, trainer.data_rng)
    _, terms, _ = trainer.losses_for(w, torch.zeros(2, dtype=torch.long))
    assert math.isfinite(terms["bg"])
    with caplog.at_level("WARNING"):
        smiling = Trainer(_config(tmp_path / "b", bg_region="part", prompts=["a smiling face"]))
        smiling.losses_for(w, torch.zeros(2, dtype=torch.long))
    assert "names no face part" in caplog.text
    with pytest.raises(Exception, match="--bg-region 'face': choose one of background, part"):
        Trainer(_config(tmp_path / "c", bg_region="face"))
    out = tmp_path / "run"
    code, _, err = cli(
        mcatrain,
        *("--preset", "tiny-32", "--random-weights", "--prompt", "blue goatee"),
        *("--steps", "1", "--out", out, "--device", "cpu", "--bg-region", "part"),
    )
    assert code == 0, err
    assert json.loads((out / "config.json").read_text())["train"]["bg_region"] == "part"


def test_area_region_part_counts_the_masks_outside_the_part(tmp_path, cli):
    trainer = Trainer(_config(tmp_path / "a", steps=1, bg_region="part", area_region="part"))
    paper = Trainer(_config(tmp_path / "b", steps=1, bg_region="part"))
    w = trainer.data.sample(2, trainer.data_rng)
    idx = torch.zeros(2, dtype=torch.long)
    _, terms, _ = trainer.losses_for(w, idx)
    paper.editor.load_state_dict(trainer.editor.state_dict())
    _, full, _ = paper.losses_for(w, idx)
    assert 0 <= terms["area"] <= full["area"] and terms["bg"] == pytest.approx(full["bg"])
    with pytest.raises(Exception, match="--area-region 'face': choose one of all, part"):
        Trainer(_config(tmp_path / "c", area_region="face"))
    with pytest.raises(Exception, match="set --bg-weight above 0"):
        Trainer(_config(tmp_path / "d", area_region="part", weights=LossWeights(bg=0.0)))
    out = tmp_path / "run"
    code, _, err = cli(
        mcatrain,
        *("--preset", "tiny-32", "--random-weights", "--prompt", "blue goatee"),
        *("--steps", "1", "--out", out, "--device", "cpu", "--area-region", "part"),
    )
    assert code == 0, err
    assert json.loads((out / "config.json").read_text())["train"]["area_region"] == "part"
