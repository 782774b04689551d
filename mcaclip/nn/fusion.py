"""Text/latent fusion: MCA-CLIP's Feature Fusion (FF) and CF-CLIP's TEM baseline.

Both map (w [B, L, D], e_t [B, D_text]) to t_w [B, L, D], the input of the levels mapper.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mcaclip.errors import ShapeError
from mcaclip.nn.mapper import LatentMLP
from mcaclip.nn.stylegan2 import EqualLinear


class CrossAttention(nn.Module):
    """Multi-head scaled dot-product attention of query tokens over key/value tokens."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ShapeError(f"attention width {dim} does not split into {heads} heads")
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        """q [B, T, d], kv [B, S, d] -> [B, T, d].

        With one key (S = 1, FF's paper form) softmax gives it weight 1, exactly, whatever the
        query: the output is that key's value, projected, the same numbers as
        :meth:`attend` computes for finite scores without TF32 matrix products (bit for bit,
        tests/nn/test_fusion.py) without the query and key projections, the scores and the
        softmax (6 of FF's 14 kernels per layer). Only where no gradient is wanted: in training
        every parameter must get its gradient, zero for the query's and the key's here
        (DistributedDataParallel waits for all of them)."""
        training = torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters())
        if kv.shape[1] == 1 and not training:
            value = self.v(kv)  # [B, 1, d], every query's
            if q.shape[1] > 1:
                value = value.expand(q.shape[0], q.shape[1], -1).contiguous()
            return self.out(value)
        return self.attend(q, kv)

    def attend(self, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        """The attention as written: scores, softmax over the keys, weighted values."""
        b, t, d = q.shape
        h, dh = self.heads, d // self.heads
        qh = self.q(q).reshape(b, t, h, dh).transpose(1, 2)
        kh = self.k(kv).reshape(b, -1, h, dh).transpose(1, 2)
        vh = self.v(kv).reshape(b, -1, h, dh).transpose(1, 2)
        attn = torch.softmax(qh @ kh.transpose(-1, -2) / math.sqrt(dh), dim=-1)
        return self.out((attn @ vh).transpose(1, 2).reshape(b, t, d))


class FusionLayer(nn.Module):
    """One FF layer: ``temp = Attn(Q=w_i, K=V=prev) + w_i``; ``out = temp + FFN(LN(temp))``."""

    def __init__(self, dim: int, heads: int, tokens: int, ffn_mult: int):
        super().__init__()
        self.tokens = tokens
        self.attn = CrossAttention(dim // tokens, heads)
        self.norm = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, dim * ffn_mult), nn.GELU(), nn.Linear(dim * ffn_mult, dim)
        )

    def forward(self, w_i: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        """w_i [B, D], prev [B, D] -> [B, D]."""
        b, d = w_i.shape
        t = self.tokens
        attended = self.attn(w_i.reshape(b, t, d // t), prev.reshape(b, t, d // t))
        temp = attended.reshape(b, d) + w_i
        return temp + self.ffn(self.norm(temp))


class FeatureFusion(nn.Module):
    """Feature Fusion (FF), Eq. (1)-(2) of MCA-CLIP: L stacked cross-attention layers.

    Layer i takes Q = w_i and K = V = the output of layer i-1 (for layer 1, the text embedding
    e_t, projected to D and layer-normalised); its output is ``Attn(Q, K, V) + Q`` followed by a
    residual feed-forward block. The L outputs stack to t_w [B, L, D].

    ``tokens=1`` is the paper's form. With a single key token, softmax attention gives that token
    weight 1 whatever the query, so ``Attn(Q, K, V)`` reduces to a linear map of V and the query
    only enters through the residual. ``tokens=T`` splits every D-vector into T tokens of D/T
    features, so attention weights depend on Q and each token can choose what to read.
    """

    def __init__(
        self,
        n_latent: int,  # L, number of W+ vectors (layers of FF)
        style_dim: int,  # D, width of w_i
        text_dim: int,  # width of e_t (CLIP embed_dim)
        heads: int = 8,  # attention heads per layer (of width D / tokens / heads)
        tokens: int = 1,  # tokens per vector (1: the paper's single-token attention)
        ffn_mult: int = 2,  # hidden width of the feed-forward block, times D
    ):
        super().__init__()
        if style_dim % tokens:
            raise ShapeError(f"style_dim {style_dim} does not split into {tokens} tokens")
        self.n_latent, self.style_dim, self.text_dim = n_latent, style_dim, text_dim
        self.text_in = nn.Sequential(nn.Linear(text_dim, style_dim), nn.LayerNorm(style_dim))
        self.layers = nn.ModuleList(
            FusionLayer(style_dim, heads, tokens, ffn_mult) for _ in range(n_latent)
        )

    def forward(self, w: torch.Tensor, e_t: torch.Tensor) -> torch.Tensor:
        """w [B, L, D], e_t [B, D_text] -> t_w [B, L, D]."""
        _check_inputs(w, e_t, self.n_latent, self.style_dim, self.text_dim)
        prev = self.text_in(e_t.to(w.dtype))
        outs = []
        for i, layer in enumerate(self.layers):
            prev = layer(w[:, i], prev)
            outs.append(prev)
        return torch.stack(outs, dim=1)


class TextEmbeddingMapping(nn.Module):
    """CF-CLIP's text embedding mapping (TEM), the ablation "w/o FF".

    e_t is mapped separately for every layer by its own MLP (PixelNorm + 4 equalized-lr layers),
    T_i = MLP_i(e_t), then joined with the latent as CF-CLIP's levels mapper does on its input:
    ``t_w[:, i] = fused_lrelu(EqualLinear([w_i ; T_i]))`` (2D -> D, lr_mul 0.01). The text
    branch never sees w: fusion happens only in that one linear layer.
    """

    def __init__(
        self,
        n_latent: int,  # L
        style_dim: int,  # D
        text_dim: int,  # width of e_t
        n_layers: int = 4,  # layers per text MLP
        lr_mul: float = 0.01,  # learning-rate multiplier (CF-CLIP: 0.01)
    ):
        super().__init__()
        self.n_latent, self.style_dim, self.text_dim = n_latent, style_dim, text_dim
        self.text_mlps = nn.ModuleList(
            LatentMLP(text_dim, style_dim, n_layers, lr_mul) for _ in range(n_latent)
        )
        self.join = EqualLinear(2 * style_dim, style_dim, lr_mul=lr_mul, activation=True)

    def forward(self, w: torch.Tensor, e_t: torch.Tensor) -> torch.Tensor:
        """w [B, L, D], e_t [B, D_text] -> t_w [B, L, D]."""
        _check_inputs(w, e_t, self.n_latent, self.style_dim, self.text_dim)
        e_t = e_t.to(w.dtype)
        text = torch.stack([mlp(e_t) for mlp in self.text_mlps], dim=1)
        return self.join(torch.cat([w, text], dim=-1))


class LatentOnly(nn.Module):
    """No fusion: t_w = w (StyleCLIP's latent mapper, trained for one prompt). e_t is ignored."""

    def __init__(self, n_latent: int, style_dim: int, text_dim: int):
        super().__init__()
        self.n_latent, self.style_dim, self.text_dim = n_latent, style_dim, text_dim

    def forward(self, w: torch.Tensor, e_t: torch.Tensor) -> torch.Tensor:
        _check_inputs(w, e_t, self.n_latent, self.style_dim, self.text_dim)
        return w


def _check_inputs(w: torch.Tensor, e_t: torch.Tensor, L: int, D: int, Dt: int) -> None:
    if w.ndim != 3 or w.shape[1] != L or w.shape[2] != D:
        raise ShapeError(f"W+ latent must be [B, {L}, {D}], got {list(w.shape)}")
    if e_t.ndim != 2 or e_t.shape[1] != Dt:
        raise ShapeError(f"text embedding must be [B, {Dt}], got {list(e_t.shape)}")
    if e_t.shape[0] != w.shape[0]:
        raise ShapeError(f"batch of e_t ({e_t.shape[0]}) differs from batch of w ({w.shape[0]})")
