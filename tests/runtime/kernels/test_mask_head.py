"""--triton-masks: each mask head as one fused Triton kernel gives the PyTorch head's masks
(Triton's CPU interpreter)."""

TRITON_CHECK = """
import torch
from mcaclip.nn.masknet import MaskHead
from mcaclip.runtime.kernels import triton_ops
from mcaclip.runtime.kernels.mask_head import triton_masks

torch.manual_seed(0)
worst = 0.0
# channels (one K block, a ragged one, several), hidden widths (32, 16, and 8 and 24 that the
# kernel rounds up and masks), text condition with 1 or 3 prompts per latent, pixels not a
# multiple of the 128-pixel block
cases = [(32, 32, None, 2, 5, 6, 1), (48, 32, None, 1, 7, 8, 1), (512, 32, 8, 3, 4, 5, 1),
         (64, 16, None, 2, 16, 9, 1), (16, 8, 8, 2, 4, 4, 3), (40, 24, 8, 1, 12, 12, 2)]
for c, hidden, cond_dim, b, h, w, prompts in cases:
    head = MaskHead(c, hidden, cond_dim)
    for p in head.parameters():
        p.data.normal_(0, 0.3)
    f = torch.randn(b, c, h, w).half().contiguous(memory_format=torch.channels_last)
    cond = torch.randn(b * prompts, cond_dim).half() if cond_dim else None
    f_rep = f.repeat_interleave(prompts, 0)  # what the PyTorch head reads per prompt
    ref = head(f_rep.float(), None if cond is None else cond.float())  # float32, PyTorch
    head = head.half()
    plain = head(f_rep, cond)  # FP16, PyTorch
    triton_masks(head)
    assert triton_ops.usable(f)
    got = head(f, cond, prompts)
    assert got.shape == (b * prompts, 1, h, w) and got.dtype == torch.float16
    worst = max(worst, (got.float() - ref).abs().max().item())
    assert (got.float() - plain.float()).abs().max().item() < 2e-3
    # where the kernel cannot run, the head keeps its PyTorch form (repeating per prompt)
    nchw = f.contiguous()
    assert not triton_ops.usable(nchw) and not triton_ops.usable(f.float())
    assert (head(nchw, cond, prompts).float() - plain.float()).abs().max().item() < 1e-3
    # nor where gradients are wanted
    head.requires_grad_(True)
    with torch.enable_grad():
        assert head(f, cond, prompts).requires_grad
    # switched off: the PyTorch form
    triton_masks(head, on=False)
    assert head.fused is None
print("worst", worst)
assert worst < 1e-3
"""


def test_triton_mask_head_matches_pytorch(triton_interpret):
    """The fused Triton mask head (--triton-masks) against the PyTorch head, run in Triton's
    CPU interpreter in a fresh process."""
    assert "worst" in triton_interpret(TRITON_CHECK)
