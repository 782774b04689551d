"""The GPU fast path's Triton kernels, compiled here for GPUs this machine does not have (Triton's
wheel carries ptxas): every launch of a 1024 px edit fits an H100, an RTX 40 and an RTX 50
without spills.

Triton's CPU interpreter (tests/runtime/kernels/test_synthesis.py) checks what the kernels
compute but not whether they compile for a GPU, how many registers they take or whether their
shared memory fits; a launch that needs more than the GPU has fails only there."""

import shutil

import pytest

from benchmarks.triton_aot import TARGETS, compile_launch, launches, named, occupancy


def _compiler():
    triton = pytest.importorskip(
        "triton", reason="Triton is not installed (it comes with torch's CUDA wheels)"
    )
    try:
        from triton.backends.nvidia.compiler import get_ptxas

        ptxas = get_ptxas(90).path
    except Exception as exc:  # noqa: BLE001 (any way the NVIDIA backend is missing)
        pytest.skip(f"Triton's NVIDIA backend or its ptxas is missing: {exc}")
    if not shutil.which(ptxas):
        pytest.skip(f"Triton's ptxas is missing ({ptxas})")
    from triton.runtime import jit

    if not (hasattr(jit, "create_function_from_signature") and hasattr(jit.JITFunction,
                                                                       "_pack_args")):  # fmt: skip
        pytest.skip(f"Triton {triton.__version__}: benchmarks/triton_aot.py specializes launches "
                    "through Triton 3.8's internal binder, which this version lacks")  # fmt: skip
    return triton


def test_occupancy_arithmetic():
    # registers are allocated per warp in units of 256: 255 regs x 32 lanes -> 8192 a warp
    assert occupancy(90, 255, 4, 0) == 2 * 4 / 64
    assert occupancy(90, 64, 8, 4096) == 4 * 8 / 64
    assert occupancy(89, 64, 8, 4096) == pytest.approx(4 * 8 / 48, abs=1e-3)
    assert occupancy(90, 32, 4, 0) == 1.0  # 16 blocks of 4 warps: the SM's 64 warps
    assert occupancy(90, 100, 4, 300 * 1024) == 0.0  # more shared memory than a block may have
    assert occupancy(120, 64, 4, 110 * 1024) == 0.0  # an RTX 50's SM has 128 kB, a block 99
    assert occupancy(86, 64, 4, 60 * 1024) == pytest.approx(4 / 48, abs=1e-3)  # one block fits


@pytest.mark.parametrize("form", ["subpixel", "phases"])
def test_epilogue_launches_of_a_1024_edit_fit(form):
    """ffhq-1024, batch 8: the GPU default form (2x2 phases shuffled and blurred in the
    kernel) and --no-phase-conv (sub-pixel phases read in place), for an H100, an RTX 40 and an
    RTX 50."""
    _compiler()
    from mcaclip.runtime.kernels import triton_ops

    epilogues, heads = launches("ffhq-1024", 8, 1, form, None)
    assert len(epilogues) == len(heads) == 17  # one per styled conv
    assert [e[3]["PHASE_BLUR"] for e in epilogues].count(True) == (8 if form == "phases" else 0)
    seen = set()
    for layer, grid, args, meta in epilogues:
        # the launch covers every pixel of every edited sample
        assert grid[0] * meta["BLOCK_P"] == 8 * named(triton_ops._EPILOGUE, args)["hw"]
        ints = tuple((a == 1, a % 16 == 0) for a in args if isinstance(a, int))
        key = (tuple(sorted(meta.items())), ints)  # how Triton specializes a launch
        if key in seen:  # compiled already
            continue
        seen.add(key)
        for cap in (90, 89, 120):
            r = compile_launch(triton_ops._EPILOGUE, args, meta, cap)
            where = f"{form} layer {layer} on {TARGETS[cap][0]}: {r}"
            # under the register cap of 8 warps (three blocks an SM) a few bytes spill
            spill = 32 if "maxnreg" in meta else 0
            assert r["spill_store_bytes"] <= spill and r["spill_load_bytes"] <= spill, where
            assert r["registers"] <= meta.get("maxnreg", 255), where
            assert r["shared_bytes"] < 64 * 1024, where
            assert r["occupancy"] >= 0.25, where
    assert len(seen) >= 4


@pytest.mark.parametrize("form, limits", [("subpixel", (0.40, 0.90)), ("phases", (0.45, 0.90))])
def test_the_1024_px_epilogues_issue_few_instructions(form, limits):
    """The 1024 px layer epilogues (batch 8; the sub-pixel form, and the 2x2 phases blurred in
    the kernel, the GPU default) compile for an H100 without loops into few enough
    instructions that every warp issuing each once takes at most ``limits`` ms on an H100 (the
    second one with ToRGB and the skip): the kernel is bound by the instructions it issues
    there (run 4 timed the kernel of then on an H200 at 1.36-1.44x that bound, 1.57x with the
    blur). Sub-pixel versions before: fd5b5f0 had 1016 and 1376 instructions and loops (at
    least 1.02 and 1.38 ms: 64-bit offsets per element, the channel count, the row width and
    the mask heads' width run-time values); 941612b 952 and 1064 (0.48 and 1.07 ms: the tails
    in float32, the skips channel by channel); 4c45f9f 632 and 888 (0.32 and 0.89 ms: the
    features and ToRGB's products moved to the mask's layout for the blend). The blurred
    launch, 9e75a71: 784 instructions a program of 32 pixels and two loops over the 4x4 taps
    (1516 issued, 1.52 ms); with the 3x3 taps in FP16, 944 at 64 pixels (0.47 ms); with both
    streams' taps in one loop, 792 (0.40 ms)."""
    _compiler()
    from benchmarks.triton_aot import issue_ms
    from mcaclip.runtime.kernels import triton_ops

    epilogues, _ = launches("ffhq-1024", 8, 1, form, None)
    for (layer, grid, args, meta), most in zip(epilogues[-2:], limits):
        r = compile_launch(triton_ops._EPILOGUE, args, meta, 90)
        if "sass_instructions" not in r:
            pytest.skip("Triton's nvdisasm is missing: no machine code to count")
        row = {"target": 90, "programs": grid[0], **r}
        warp_instructions = grid[0] * meta["num_warps"] * r["sass_instructions"]
        assert issue_ms(row) == pytest.approx(warp_instructions / (132 * 4 * 1.98e9) * 1e3,
                                              abs=1e-4)  # fmt: skip
        assert r["sass_loops"] == 0 and issue_ms(row) <= most, (layer, meta, r)
        assert r["spill_store_bytes"] == 0 and r["occupancy"] >= 0.375, (layer, r)


def test_mask_head_launches_fit():
    _compiler()
    from mcaclip.runtime.kernels import triton_ops

    _, heads = launches("ffhq-1024", 8, 2, "subpixel", "text")
    layer, grid, args, meta = heads[-1]  # 1024 px, text-conditioned, two prompts per latent
    assert meta["HAS_TERM"] and grid[0] * meta["BLOCK_P"] == 16 * 1024 * 1024
    for cap in (90, 89):
        r = compile_launch(triton_ops._KERNEL, args, meta, cap)
        assert r["spill_store_bytes"] == 0 and r["occupancy"] > 0, (cap, r)


@pytest.mark.parametrize("prompts", [1, 2])
def test_conv_launches_of_a_1024_edit_compile_without_spills(prompts):
    """--triton-convs: the four launches of a 1024 px edit that compute their conv in the
    kernel (512 and 1024 px: the sub-pixel up-sampling conv and the 3x3 conv after it, 64 and
    32 channels) compile for an H100, an RTX 40 and an RTX 50 without spills, every channel in
    one step, and can launch (their occupancy is lower than the other launches': 1/8 to 1/3);
    with two prompts per latent, the launches that compute the edited stream's conv only
    (the original's read from cuDNN's output) too."""
    _compiler()
    from mcaclip.runtime.kernels import triton_ops

    epilogues, _ = launches("ffhq-1024", 8, prompts, "convs", None)
    conv = [(layer, args, meta) for layer, _, args, meta in epilogues if meta["CONV"]]
    assert [layer for layer, *_ in conv] == [13, 14, 15, 16]
    assert [meta["PHASES"] for *_, meta in conv] == [True, False, True, False]
    assert all(meta["CONV_O"] == (prompts == 1) for *_, meta in conv)
    for layer, args, meta in conv:
        k = named(triton_ops._EPILOGUE, args)
        assert meta["ONE_STEP"] and k["C"] <= meta["BLOCK_C"]
        for cap in (90, 89, 120):
            r = compile_launch(triton_ops._EPILOGUE, args, meta, cap)
            where = f"conv layer {layer} on {TARGETS[cap][0]}: {r}"
            assert r["spill_store_bytes"] == 0 and r["spill_load_bytes"] == 0, where
            # both streams' input tiles in flight take 18-72 KiB (the most on sm_90): within
            # the smallest block limit of the five targets (99 KiB, the RTX cards')
            smallest = min(t[4] for t in TARGETS.values())
            assert r["shared_bytes"] <= smallest and r["occupancy"] >= 0.125, where
