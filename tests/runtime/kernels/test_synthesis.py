"""--triton-epilogues: the masked synthesis with one Triton kernel between two styled convs
gives the PyTorch form's images, originals and masks (Triton's CPU interpreter)."""

import shutil

import pytest

EPILOGUE_CHECK = """
import dataclasses
import torch
from mcaclip.config import load_preset
from mcaclip.nn.editor import MCAEditor
from mcaclip.nn.graphs import Fp16Graph, build_graph
from mcaclip.nn.stylegan2 import StyledConv, fold_blur, freeze_weights, phase_conv, subpixel
from mcaclip.runtime.kernels import triton_ops
from mcaclip.runtime.kernels.synthesis import triton_epilogues

calls = []
real = triton_ops.layer_epilogue
# (sub-pixel phases read in place, 2x2 phases shuffled and blurred in the kernel) per call
triton_ops.layer_epilogue = lambda *a: calls.append((a[2], a[3] is not None)) or real(*a)

def editor_for(condition, channels=None, hidden=8):
    preset = load_preset("tiny-32")
    editor = dataclasses.replace(preset.editor, mask_condition=condition, mask_hidden=hidden)
    generator = dataclasses.replace(preset.generator, channels=channels)
    preset = dataclasses.replace(preset, editor=editor, generator=generator)
    torch.manual_seed(0)
    editor = MCAEditor.from_preset(preset, random_weights=True).eval()
    for m in editor.modules():  # noise and biases that matter, masks away from 0 and 1
        if isinstance(m, StyledConv):
            m.noise.weight.data.fill_(0.3)
            m.activate.bias.data.normal_(0, 0.2)
    for h in editor.masknet.heads:
        for p in h.parameters():
            p.data.normal_(0, 0.3)
    return editor

def psnr(a, b):
    return (10 * torch.log10(4 / (a - b).square().mean())).item()

# (mask condition, up-sampling form, prompts per latent, channels per resolution, hidden):
# the tiny preset's 32 channels and 8 hidden (padded to 16), and wider maps whose channels
# take two blocks of 64, the second one partial, or fill one block of 64 (8 warps: the skips
# channel by channel, not as one tile), with 32 hidden
wide = (96, 64, 48, 32)
cases = [("text", "transposed", 3, None, 8), ("text", "subpixel", 1, None, 8),
         ("none", "phases", 2, None, 8), ("none", "subpixel", 3, None, 8),
         ("text", "subpixel", 2, wide, 32), ("none", "transposed", 1, wide, 32),
         ("text", "phases", 2, wide, 32)]
for condition, form, prompts, channels, hidden in cases:
    editor = editor_for(condition, channels, hidden)
    b, L, D = 2, editor.generator.n_latent, editor.generator.style_dim
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(b, L, D, generator=gen)
    w_edit = w[:, None] + 0.3 * torch.randn(b, prompts, L, D, generator=gen)
    e = torch.randn(b, prompts, editor.preset.clip.embed_dim, generator=gen)
    with torch.inference_mode():
        ref = build_graph(editor, "masked_generator").eval()(w, w_edit, e)  # FP32
        g = Fp16Graph(build_graph(editor, "masked_generator"), channels_last=True).eval()
        if form == "subpixel":
            subpixel(fold_blur(g))
        elif form == "phases":
            phase_conv(g)
        freeze_weights(g, channels_last=True)
        plain = g(w, w_edit, e)  # FP16, PyTorch
        calls.clear()
        triton_epilogues(g)
        got = g(w, w_edit, e)
        assert len(calls) == editor.generator.config.num_layers, (form, len(calls))
        assert any(c[0] for c in calls) == (form == "subpixel")
        assert any(c[1] for c in calls) == (form == "phases")
        triton_epilogues(g, on=False)
        calls.clear()
        again = g(w, w_edit, e)
        assert not calls and torch.equal(again[0], plain[0])  # switched off: the PyTorch form
    assert len(got) == len(plain) == len(ref)
    for i, (a, p, r) in enumerate(zip(got, plain, ref)):
        assert a.shape == p.shape and a.dtype == p.dtype and torch.isfinite(a).all()
        if i < 2:  # images and originals: as close to FP32 as the FP16 PyTorch form is
            assert psnr(a, r) > psnr(p, r) - 1 and psnr(a, p) > 45, (form, i, psnr(a, r))
        else:  # masks
            assert (a - p).abs().max() < 3e-3 and (a - r).abs().max() < 3e-3, (form, i)
    print(condition, form, prompts, channels, "psnr vs fp32 %.1f (fp16 torch %.1f)"
          % (psnr(got[0], ref[0]), psnr(plain[0], ref[0])))

# a conditioned mask net called without the text embedding: the PyTorch form's error
editor = editor_for("text")
g = Fp16Graph(build_graph(editor, "masked_generator"), channels_last=True).eval()
triton_epilogues(g)
try:
    with torch.inference_mode():
        g.inner.masked(w.half(), w_edit.flatten(0, 1).half(), prompts=prompts)
except Exception as exc:
    assert "text-conditioned" in str(exc), exc
else:
    raise AssertionError("no error without the text embedding")
# where the kernel cannot run, the PyTorch form does: FP32, and random noise per sample
editor = editor_for("none")
g = build_graph(editor, "masked_generator").eval()
triton_epilogues(g)
calls.clear()
with torch.inference_mode():
    g(w, w_edit, e[:, :, :0])
    synth = editor.masked
    w16 = Fp16Graph(build_graph(editor, "masked_generator"), channels_last=True).eval()
    triton_epilogues(w16)
    inner = w16.inner.masked
    noise = inner.synthesis.make_noise(b, "random")
    inner(w.half(), w_edit.flatten(0, 1).half(), noise=[n.half() for n in noise], prompts=prompts)
assert not calls
print("ok")
"""


def test_triton_epilogues_match_the_pytorch_form(triton_interpret):
    """Text-conditioned and plain mask heads, the three up-sampling forms (the sub-pixel phases
    read through the shuffle in place, the 2x2 phases shuffled and blurred in the kernel), 1-3
    prompts per latent, const noise; switched off or where it cannot run (FP32, per-sample
    noise), the PyTorch form runs. ~30 s."""
    assert triton_interpret(EPILOGUE_CHECK).strip().endswith("ok")


CONV_CHECK = (
    EPILOGUE_CHECK.split("# a conditioned mask net called")[0]
    .replace("triton_epilogues(g)\n", "triton_epilogues(g, convs=True)\n")
    .replace(
        "got = g(w, w_edit, e)\n",
        "got = g(w, w_edit, e)\n"
        "        fused = sum(c is not None for c in g.inner.masked.fast_path.plan.conv_w)\n"
        # the first conv, then per resolution the up-sampling conv (sub-pixel form only) and
        # the conv after it, where they have at most 64 channels (tiny-32: 32 at every size)
        "        cs = channels or (32,) * 4\n"
        "        ups = 2 if form == 'subpixel' else 1\n"
        "        assert fused == (cs[0] <= 64) + sum((c <= 64) * ups for c in cs[1:]), fused\n"
        # several prompts: the original's conv outside, once (the kernel's edited rows only)
        "        assert sum(c[2] for c in calls) == (fused if prompts > 1 else 0), calls\n",
    )
    .replace(
        "calls.append((a[2], a[3] is not None))",
        "calls.append((a[2], a[3] is not None, len(a) > 13 and a[13] is not None))",
    )
    .replace(  # four of the seven cases: every form and width, both conditions, 1-2 prompts
        "for condition, form, prompts, channels, hidden in cases:",
        "for condition, form, prompts, channels, hidden in [cases[i] for i in (1, 2, 4, 5)]:",
    )
    + "print('ok')\n"
)


def test_triton_convs_match_the_pytorch_form(triton_interpret):
    """--triton-convs: the epilogue kernel also computes the 3x3 and sub-pixel convs of up to
    64 output channels (an implicit GEMM on its input) and gives the PyTorch form's images,
    originals and masks, in every up-sampling form (the others' up-sampling convs stay
    cuDNN's), with one prompt per latent (both streams' convs in the kernel) and two (the
    original's conv outside, once, the edited stream's in the kernel). ~35 s."""
    assert "convs=True" in CONV_CHECK and "fused ==" in CONV_CHECK and "(1, 2, 4, 5)" in CONV_CHECK
    assert "a[13] is not None" in CONV_CHECK
    assert triton_interpret(CONV_CHECK).strip().endswith("ok")


COMPILE_CHECK = """
import torch
from mcaclip.nn.editor import MCAEditor
from mcaclip.nn.graphs import Fp16Graph, build_graph
from mcaclip.nn.stylegan2 import fold_blur, freeze_weights, phase_conv, stencil_blur, subpixel
from mcaclip.runtime.kernels import triton_ops
from mcaclip.runtime.kernels.synthesis import triton_epilogues

calls = []
real = triton_ops.layer_epilogue
triton_ops.layer_epilogue = lambda *a: calls.append(1) or real(*a)
torch.manual_seed(0)
editor = MCAEditor.from_preset("tiny-32", random_weights=True).eval()
w = torch.randn(2, 8, 64)
args = (w, w[:, None] + 0.1 * torch.randn(2, 2, 8, 64), torch.randn(2, 2, 64))
# what --compile runs on a GPU, with --triton-convs and with --phase-conv
for form in ("subpixel", "convs", "phases"):
    g = Fp16Graph(build_graph(editor, "masked_generator"), channels_last=True).eval()
    stencil_blur(phase_conv(g) if form == "phases" else subpixel(fold_blur(g)))
    freeze_weights(g, channels_last=True)
    triton_epilogues(g, convs=form == "convs")
    with torch.inference_mode():
        eager = g(*args)
        explained = torch._dynamo.explain(g)(*args)
        reasons = [str(r.reason).splitlines()[0] for r in explained.break_reasons]
        assert explained.graph_count == 1 and explained.graph_break_count == 0, reasons
        torch._dynamo.reset()
        calls.clear()
        compiled = torch.compile(g, dynamic=False)(*args)
        torch._dynamo.reset()
    assert len(calls) == editor.generator.config.num_layers  # traced through, one op per conv
    for a, b in zip(compiled, eager):  # the kernels are the same calls; the batched style
        # products are Inductor's (other sums: 1e-3 of the images, 5 FP16 steps of a mask)
        torch.testing.assert_close(a.float(), b.float(), atol=5e-3, rtol=2e-3)
# --triton-convs-auto: the choice at this shape (every other fitting conv) traced as one graph;
# a choice made later for another shape does not recompile this one
from torch._dynamo.testing import CompileCounter
from mcaclip.runtime.kernels.synthesis import epilogue_plans
g = Fp16Graph(build_graph(editor, "masked_generator"), channels_last=True).eval()
stencil_blur(subpixel(fold_blur(g)))
freeze_weights(g, channels_last=True)
triton_epilogues(g, convs="auto")
plan, = epilogue_plans(g)
fits = [c is not None for c in plan.conv_w]
mixed = tuple(f and j % 2 == 0 for j, f in enumerate(fits))
plan.chosen[(2, 2)] = mixed
seen = []
triton_ops.layer_epilogue = lambda *a: seen.append(a[12] is not None) or real(*a)
with torch.inference_mode():
    eager = g(*args)
    assert tuple(seen) == mixed, seen
    triton_ops.layer_epilogue = real  # (a list appended to while traced is guarded)
    explained = torch._dynamo.explain(g)(*args)
    assert explained.graph_count == 1 and explained.graph_break_count == 0
    torch._dynamo.reset()
    counter = CompileCounter()
    compiled = torch.compile(g, backend=counter, dynamic=False)
    first = compiled(*args)
    plan.chosen[(1, 2)] = fits  # tuned at another batch size
    again = compiled(*args)
    assert counter.frame_count == 1, counter.frame_count
    torch._dynamo.reset()
for a, b, c in zip(first, again, eager):
    assert torch.equal(a, b) and torch.equal(a, c)
print("ok")
"""


@pytest.mark.skipif(
    shutil.which("c++") is None and shutil.which("g++") is None,
    reason="needs a C++ compiler (torch.compile's CPU code generator)",
)
def test_triton_epilogues_trace_and_compile(triton_interpret):
    """--compile --triton-epilogues (sub-pixel or 2x2-phase up-sampling convs, and with
    --triton-convs, and --triton-convs-auto's mixed choice): the masked
    generator with the kernels (PyTorch custom ops) traces as one graph, compiles (Inductor on
    the CPU, the kernels in Triton's interpreter) and gives the eager result; a choice made
    for another batch shape does not recompile the one compiled. ~45 s."""
    assert triton_interpret(COMPILE_CHECK).strip().endswith("ok")


AUTO_CHECK = """
import dataclasses
import logging
import torch
from triton.runtime.errors import OutOfResources
from mcaclip.nn.editor import MCAEditor
from mcaclip.nn.graphs import Fp16Graph, build_graph
from mcaclip.nn.stylegan2 import fold_blur, freeze_weights, subpixel
from mcaclip.runtime.kernels import triton_ops, tuning
from mcaclip.runtime.kernels.synthesis import epilogue_plans, triton_epilogues

calls = []
real = triton_ops.layer_epilogue
triton_ops.layer_epilogue = lambda *a: calls.append(a[12] is not None) or real(*a)
torch.manual_seed(0)
editor = MCAEditor.from_preset("tiny-32", random_weights=True).eval()
b, L, D = 2, editor.generator.n_latent, editor.generator.style_dim
w = torch.randn(b, L, D)
args = (w, w[:, None] + 0.3 * torch.randn(b, 1, L, D), torch.randn(b, 1, 64))

def graph(convs):
    g = Fp16Graph(build_graph(editor, "masked_generator"), channels_last=True).eval()
    subpixel(fold_blur(g))
    freeze_weights(g, channels_last=True)
    return triton_epilogues(g, convs=convs)

class FakeClock:  # the kernel faster at even layers, slower at odd ones, cuDNN 1 ms
    def __init__(self, plan):
        self.plan, self.key, self.marks = plan, None, []
    def start(self):
        self.marks = []
    def __call__(self, j):
        self.marks.append(j)
    def layers(self):
        inside = self.plan.override
        return [(0.5 if j % 2 == 0 else 2.0) if inside[j] else 1.0 for j in self.marks[:-1]]

with torch.inference_mode():
    reference = graph(False)(*args)  # the epilogue kernel, every conv in cuDNN
    g = graph("auto")
    plan, = epilogue_plans(g)
    fits = [c is not None for c in plan.conv_w]
    n = len(fits)
    assert plan.auto and sum(fits) == 7, fits  # tiny-32: 32 channels, sub-pixel: every conv
    calls.clear()
    untuned = g(*args)
    assert calls == [False] * n  # not timed at this shape yet: cuDNN everywhere
    assert all(torch.equal(a, r) for a, r in zip(untuned, reference))

    calls.clear()
    tuning.tune([plan], lambda: g(*args), repeats=2, clock=FakeClock(plan))
    # cuDNN: a warm-up and two timed calls; the kernel: the same with every fitting conv inside
    assert calls == ([False] * n) * 3 + fits * 3, calls
    want = [f and j % 2 == 0 for j, f in enumerate(fits)]
    assert list(plan.chosen[(b, 1)]) == want
    t = plan.timings[(b, 1)]
    assert t["in_kernel"] == want and t["fits"] == fits and t["refused"] is None
    assert t["cudnn_ms"] == [1.0] * n and t["kernel_ms"][:2] == [0.5, 2.0], t
    calls.clear()
    mixed = g(*args)
    assert calls == want, calls  # the choice, at this shape
    for a, r in zip(mixed, reference):
        assert a.shape == r.shape and torch.isfinite(a).all()
        assert (a.float() - r.float()).abs().max() < 0.02, (a.float() - r.float()).abs().max()
    calls.clear()
    other = (w[:1], args[1][:1], args[2][:1])
    g(*other)
    assert calls == [False] * n  # another batch shape: not timed, cuDNN

    # the wall clock (Triton's interpreter): times every layer, both ways
    g = graph("auto")
    plan, = epilogue_plans(g)
    tuning.tune([plan], lambda: g(*other), repeats=1)
    t = plan.timings[(1, 1)]
    assert len(t["cudnn_ms"]) == len(t["kernel_ms"]) == n and min(t["cudnn_ms"]) > 0, t
    assert plan.chosen[(1, 1)] == tuple(t["in_kernel"])

    # a GPU that refuses the kernel with the conv (its resources): cuDNN everywhere, a warning
    def refusing(*a):
        if a[12] is not None:
            raise OutOfResources(300000, 232448, "shared memory")
        return real(*a)
    triton_ops.layer_epilogue = refusing
    g = graph("auto")
    plan, = epilogue_plans(g)
    warned = []
    handler = logging.Handler()
    handler.emit = lambda record: warned.append(record.getMessage())
    logging.getLogger("mcaclip.runtime.kernels.tuning").addHandler(handler)
    tuning.tune([plan], lambda: g(*args), repeats=1)
    assert plan.chosen[(b, 1)] == (False,) * n and plan.timings
    assert "OutOfResources" in plan.timings[(b, 1)]["refused"]
    assert any("refused" in m for m in warned), warned
    # any other error is not a choice: it propagates
    def broken(*a):
        if a[12] is not None:
            raise RuntimeError("illegal memory access")
        return real(*a)
    triton_ops.layer_epilogue = broken
    g = graph("auto")
    plan, = epilogue_plans(g)
    try:
        tuning.tune([plan], lambda: g(*args), repeats=1)
    except RuntimeError as exc:
        assert "illegal" in str(exc) and not plan.timings and plan.override is None
    else:
        raise AssertionError("a kernel error was taken for a choice")
    # convs=True: every fitting conv in the kernel, nothing timed; tune leaves it alone
    triton_ops.layer_epilogue = lambda *a: calls.append(a[12] is not None) or real(*a)
    g = graph(True)
    plan, = epilogue_plans(g)
    tuning.tune([plan], lambda: 1 / 0)
    calls.clear()
    g(*args)
    assert calls == fits and not plan.timings
print("ok")
"""


def test_triton_convs_auto_chooses_per_layer(triton_interpret):
    """--triton-convs-auto: until a batch shape is timed every conv stays in cuDNN; tune()
    times each layer both ways (a warm-up call, then the timed ones) and keeps the kernel's
    conv only where it was faster (a fake clock makes that every other layer), per batch
    shape; the mixed choice gives the same images; the wall clock in the interpreter times
    every layer; a GPU's resource refusal leaves cuDNN with a warning, any other error
    propagates; convs=True is not timed. ~40 s."""
    assert triton_interpret(AUTO_CHECK).strip().endswith("ok")
