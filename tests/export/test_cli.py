from mcaclip.bundle import Bundle
from mcaclip.export.cli import main as mcaexport


def test_build_engine_without_text_encoder_then_inspect(cli, tmp_path):
    out = tmp_path / "bundle"
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# demo prompts\nblue goatee\n\nred hair\n")
    code, stdout, err = cli(
        mcaexport,
        "build-engine",
        "--random-weights",
        "--preset",
        "tiny-32",
        "--prompt",
        "glasses",
        "--prompts-file",
        prompts,
        "--no-text-encoder",
        "--max-batch",
        "2",
        "--opt-batch",
        "2",
        "--backend",
        "onnxruntime",
        "--out",
        out,
    )
    assert code == 0, err
    assert "wrote" in stdout and "3 cached prompts" in stdout
    b = Bundle.open(out)
    assert "text_encoder" not in b.graphs and b.manifest["prompts"] == [
        "glasses",
        "blue goatee",
        "red hair",
    ]
    assert b.batch_profile == {"min": 1, "opt": 2, "max": 2, "max_prompts": 8}
    assert b.manifest["random_weights"] and b.manifest["backend"] == "onnxruntime"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temp dirs left"

    code, stdout, _ = cli(mcaexport, "inspect", out)
    assert code == 0
    assert "RANDOM" in stdout and "masked_generator" in stdout
    assert "hashes: OK" in stdout

    from mcaclip.runtime.cli import main as mcarun

    edit = ["edit", "--engine", out, "--seeds", "0", "--out", tmp_path / "edits"]
    code, stdout, err = cli(mcarun, *edit, "--prompt", "glasses")  # cached: works
    assert code == 0, err
    code, _, err = cli(mcarun, *edit, "--prompt", "a smile")
    assert code == 2 and "'a smile' is not in the bundle's cache" in err

    code, _, err = cli(
        mcaexport, "build-engine", "--random-weights", "--preset", "tiny-32", "--out", out
    )
    assert code == 2 and err == f"error: {out}: already exists; pass --overwrite to replace it\n"


def test_build_engine_needs_a_source(cli, tmp_path):
    code, _, err = cli(mcaexport, "build-engine", "--out", tmp_path / "b")
    assert code == 2 and "pass --checkpoint" in err and err.count("\n") == 1
    code, _, err = cli(mcaexport, "build-engine", "--random-weights", "--out", tmp_path / "b")
    assert code == 2 and "--random-weights needs --preset" in err
    code, _, err = cli(
        mcaexport,
        "build-engine",
        "--random-weights",
        "--preset",
        "tiny-32",
        "--prompt",
        "x " * 40,
        "--out",
        tmp_path / "b",
    )
    assert code == 2 and "over the text encoder's limit" in err
    code, _, err = cli(
        mcaexport,
        "build-engine",
        "--random-weights",
        "--preset",
        "tiny-32",
        "--backend",
        "tensorrt",
        "--out",
        tmp_path / "b",
    )
    assert code == 2 and "TensorRT is not installed" in err
    assert not (tmp_path / "b").exists()


def test_inspect_reports_corruption(cli, bundle_copy):
    (bundle_copy / "prompts.npz").write_bytes(b"garbage")
    code, stdout, err = cli(mcaexport, "inspect", bundle_copy)
    assert code == 2 and "prompts.npz: corrupt (sha256" in err and stdout == ""
