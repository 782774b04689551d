"""The GPU check's epilogue_tuning step (benchmarks/triton_tuning.py) in Triton's CPU interpreter:
every launch option it times computes what the chosen options compute."""

TUNING = """
import dataclasses
from benchmarks import triton_tuning
from mcaclip.config import load_preset

preset = load_preset("tiny-32")  # 64 channels at 32 px: channel blocks of 32 and 64 to try
generator = dataclasses.replace(preset.generator, channels=(64, 64, 64, 64))
preset = dataclasses.replace(preset, generator=generator)
result = triton_tuning.tune(preset, 1, ["phases"], "cpu", 1, 32 * 32, warmup=0)
rows = result["rows"]
# the 32 px launches of the 2x2-phase form: the in-kernel blur, then ToRGB
assert sorted({(r["layer"], r["phase_blur"], r["rgb"]) for r in rows}) == [
    (5, True, False), (6, False, True)], rows
for layer in (5, 6):
    mine = [r for r in rows if r["layer"] == layer]
    assert mine[0]["chosen"] and not any(r["chosen"] for r in mine[1:])
    tried = {(r["BLOCK_P"], r["BLOCK_C"], r["num_warps"], r["num_stages"]) for r in mine}
    assert len(tried) == len(mine) >= 6, tried  # 32 to 128 pixels, 32 and 64 channels
    assert {p for p, *_ in tried} == {32, 64, 128} and {c for _, c, *_ in tried} == {32, 64}
    for r in mine[1:]:  # same outputs (float32 sums in another order, stored as FP16)
        assert isinstance(r["max_abs_diff_vs_chosen"], float), r
        assert r["max_abs_diff_vs_chosen"] < 2e-2, r
    assert all(r["ms"] > 0 and r["mb_moved"] > 0 for r in mine)
assert result["failed"] == [] and result["chosen_failed"] == []
# under the interpreter the chosen blocks are its own big ones; what a GPU runs is among those
# tried: for the blurred 2x2 phases (a parity class of 16 x 16 pixels) and for the ToRGB layer
from mcaclip.runtime.kernels import triton_ops
triton_ops._INTERPRET = False
on_gpu = [triton_ops.epilogue_blocks(64, 32 * 32, blur) for blur in (True, False)]
triton_ops._INTERPRET = True
for layer, (p, c, w, s) in zip((5, 6), on_gpu):
    assert p == 32 and any((r["layer"], r["BLOCK_P"], r["BLOCK_C"], r["num_warps"]) ==
                           (layer, p, c, w) for r in rows), (layer, p, c, w)
assert set(result["chosen_over_best"]) == {"phases layer 5", "phases layer 6"}
assert all(v >= 1.0 for v in result["chosen_over_best"].values())
assert result["left_out_for_time"] == []
print("ok")
"""


def test_every_tuning_option_gives_the_chosen_outputs(triton_interpret):
    assert triton_interpret(TUNING).strip().endswith("ok")


CONV_TUNING = """
import dataclasses
from benchmarks import triton_tuning
from mcaclip.config import load_preset

preset = load_preset("tiny-32")
generator = dataclasses.replace(preset.generator, channels=(64, 64, 64, 64))
preset = dataclasses.replace(preset, generator=generator)
result = triton_tuning.tune(preset, 1, ["convs"], "cpu", 1, 32 * 32, warmup=0)
rows = result["rows"]
# the 32 px launches of --triton-convs: the sub-pixel conv in the kernel, then the 3x3 conv
assert sorted({(r["layer"], r["rgb"]) for r in rows}) == [(5, False), (6, True)], rows
for layer in (5, 6):
    mine = [r for r in rows if r["layer"] == layer]
    assert mine[0]["chosen"] and len(mine) >= 4, mine
    assert all(r["BLOCK_C"] == 64 for r in mine)  # every channel in one step
    assert len({(r["BLOCK_P"], r["num_warps"], r["num_stages"]) for r in mine}) == len(mine)
    for r in mine[1:]:
        assert isinstance(r["max_abs_diff_vs_chosen"], float), r
        assert r["max_abs_diff_vs_chosen"] < 2e-2, r
assert result["failed"] == [] and result["chosen_failed"] == []
# options the GPU refuses for its resources (Triton raises as it loads the kernel): recorded,
# the others still timed; here the chosen ones (8 warps) too: the first option that ran is the
# reference, and the launches are named in chosen_failed
from triton.runtime.errors import OutOfResources
real = triton_tuning.time_launch
def refuse(grid, args, meta, iters, warmup):
    if meta["num_stages"] == 3 or meta["num_warps"] == 8:
        raise OutOfResources(122880, 101376, "shared memory")
    return real(grid, args, meta, iters, warmup)
triton_tuning.time_launch = refuse
again = triton_tuning.tune(preset, 1, ["convs"], "cpu", 1, 32 * 32, warmup=0)
failed = [r for r in again["rows"] if "error" in r]
assert again["failed"] == failed and len(again["rows"]) == len(rows)
assert {(r["num_stages"] == 3 or r["num_warps"] == 8) for r in again["rows"]} == {True, False}
assert all(("error" in r) == (r["num_stages"] == 3 or r["num_warps"] == 8) for r in again["rows"])
assert all("shared memory" in r["error"] for r in failed)
assert again["chosen_failed"] == ["convs layer 5", "convs layer 6"]
for layer in (5, 6):
    ran = [r for r in again["rows"] if r["layer"] == layer and "ms" in r]
    assert ran[0].get("reference") and not any(r.get("reference") for r in ran[1:]), ran
    assert all(isinstance(r["max_abs_diff_vs_chosen"], float) for r in ran[1:]), ran
assert again["unequal"] == []
# anything else (a kernel bug, an illegal address) ends the run
def broken(grid, args, meta, iters, warmup):
    raise ValueError("a kernel bug")
triton_tuning.time_launch = broken
try:
    triton_tuning.tune(preset, 1, ["convs"], "cpu", 1, 32 * 32, warmup=0)
except ValueError:
    pass
else:
    raise AssertionError("a kernel bug was recorded as a refused option")
print("ok")
"""


def test_every_conv_tuning_option_gives_the_chosen_outputs(triton_interpret):
    """--triton-convs' launches: the GPU check tunes them with other pixel blocks, warps and
    stages (channels stay in one step); every option computes the same; an option that fails
    to launch is recorded and the rest go on."""
    assert triton_interpret(CONV_TUNING).strip().endswith("ok")
