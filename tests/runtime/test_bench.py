from mcaclip.runtime import bench


def test_a_failing_variant_is_reported_not_fatal(tiny_bundle, monkeypatch):
    """A configuration that fails with any error (a Triton compile error is no RuntimeError) is
    listed under ``skipped`` with FAILED and the error; the others are still timed."""

    class CompileError(Exception):
        pass

    real = bench.bench_pipeline

    def flaky(pipeline, *args):
        if pipeline.device_editor is not None and pipeline.device_editor.fuse_tails is False:
            raise CompileError("stand-in for a kernel that does not compile")
        return real(pipeline, *args)

    monkeypatch.setattr(bench, "bench_pipeline", flaky)
    base = {"backend": "torch", "device": "cpu", "precision": "fp32"}
    variants = [base, {**base, "fuse_tails": False}]
    result = bench.bench_variants(tiny_bundle, variants, [1], iters=1, warmup=0)
    assert list(result["variants"]) == ["torch-cpu-fp32-eager"]
    (reason,) = result["skipped"].values()
    assert reason.startswith("FAILED: CompileError: stand-in")
