"""The layer-epilogue Triton kernel (see
:func:`mcaclip.runtime.kernels.triton_ops.layer_epilogue`).

Imported only by :func:`mcaclip.runtime.kernels.triton_ops.load`: it imports Triton at the top,
so that the kernel's helpers are module globals, where Triton's compiler looks them up.
"""

import triton
import triton.language as tl


@triton.jit
def _raw(raw_ptr, off, cols, ok, a, b, py, px, taps_ptr, hp, wp, C, conv_w_ptr, cin,
         BLUR: tl.constexpr, TAPS: tl.constexpr, PAD0: tl.constexpr, BLOCK_P: tl.constexpr,
         BLOCK_C: tl.constexpr, ONE_STEP: tl.constexpr, CONV: tl.constexpr,
         PHASES: tl.constexpr, BLOCK_K: tl.constexpr):  # fmt: skip
    """A conv output on the block's pixels (rows) and channels ``cols``: (CONV, float32)
    computed here (:func:`_conv`); read at the pixel offsets ``off`` (FP16); or (BLUR, FP16,
    summed in FP16: two elements an instruction) from the 2x2-phase conv's [hp, wp, 4C]
    output, pixel-shuffled and FIR-filtered here, on output pixels (2a + py, 2b + px) of one
    parity class (py, px scalars), ``off`` the offsets of their source pixels (a, b). Output
    (y, x) sums taps (j, i) times the shuffled map at (y + j - PAD0, x + i - PAD0), zero
    outside: with y = 2a + py that is row a + ry, phase fy of the raw map, where 2 ry + fy =
    py + j - PAD0; both the same for every pixel of the block, so each tap reads at ``off``
    plus one scalar."""
    if CONV:  # one stream's (both streams': the kernel calls _conv itself)
        acc, _ = _conv(raw_ptr, off, raw_ptr, off, cols, ok, a, b, py, px, hp, wp, C, conv_w_ptr,
                       cin, PHASES, BLOCK_P, BLOCK_C, BLOCK_K, False)  # fmt: skip
        return acc
    elif BLUR:
        acc = tl.zeros((BLOCK_P, BLOCK_C), dtype=tl.float16)
        # (StyleGAN2's blur leaves 3x3 taps after the phase conv, ModulatedConv2d.phase_blur:
        # Triton unrolls their constant loop, nine loads in flight, by ptxas)
        if ONE_STEP:  # the big maps (every channel in one step), where the time goes: UNROLL
            # taps' loads in flight at once, as many as keep an H100 at 1/4 occupancy or more
            # (by ptxas, 4x4 taps: 4 at 32 channels; at 64, 4 took an RTX 50 to 1/6; all 16,
            # spills)
            UNROLL: tl.constexpr = (4 if BLOCK_C <= 32 else 2) if TAPS % 2 == 0 else 1
            for t0 in range(0, TAPS * TAPS, UNROLL):
                for i in tl.static_range(UNROLL):
                    acc = _tap(acc, raw_ptr, off, cols, ok, a, b, py, px, t0 + i, taps_ptr, hp,
                               wp, C, TAPS, PAD0)  # fmt: skip
        else:  # the small maps (a loop over channel blocks)
            for t in range(TAPS * TAPS):
                acc = _tap(acc, raw_ptr, off, cols, ok, a, b, py, px, t, taps_ptr, hp, wp, C,
                           TAPS, PAD0)  # fmt: skip
        return acc
    else:
        return tl.load(raw_ptr + off[:, None] + cols[None, :], mask=ok[None, :], other=0.0)


@triton.jit
def _conv(x_ptr, base, x2_ptr, base2, cols, ok, a, b, py, px, hp, wp, C, w_ptr, cin,
          PHASES: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
          BLOCK_K: tl.constexpr, TWO: tl.constexpr):  # fmt: skip
    """The 3x3 conv (padding 1) of the NHWC input [hp, wp, cin] at ``x_ptr + base`` (one
    sample, already modulated) on the block's pixels (a, b) of the conv's output, channels
    ``cols``, as float32: an implicit GEMM, 9 taps x ``cin`` / BLOCK_K products of the shifted
    input [BLOCK_P, BLOCK_K] with the K-major weight [9 cin, C or 4C] on the tensor cores.
    PHASES: the sub-pixel conv, whose output phase (py, px) (the block's parity class) is
    columns (2 py + px) C + cols. TWO: also the conv of the input at ``x2_ptr + base2`` (the
    other stream, same pixels), in the same loop: each weight tile is read once for both.
    Returns (the conv, the second one or zeros)."""
    acc = tl.zeros((BLOCK_P, BLOCK_C), dtype=tl.float32)
    acc2 = tl.zeros((BLOCK_P, BLOCK_C), dtype=tl.float32)
    if PHASES:
        n_cols = 4 * C
        col = (py * 2 + px).to(tl.int32) * C + cols
    else:
        n_cols = C
        col = cols
    x_ptr += base  # the sample's input; within it 32-bit offsets (the launch checks they fit:
    x2_ptr += base2  # a block of 64-bit [pixels, channels] offsets costs registers)
    a = a.to(tl.int32)
    b = b.to(tl.int32)
    chunks = tl.cdiv(cin, BLOCK_K)
    # one loop over (tap, channel chunk), not two nested ones: Triton pipelines the innermost
    # loop of products (the next step's loads in flight during this one's), and the channel
    # loop alone has one or two steps
    for i in range(9 * chunks):
        t = i // chunks
        k0 = (i - t * chunks) * BLOCK_K
        ky = t // 3
        kx = t - ky * 3
        ya = a + (ky - 1)
        xb = b + (kx - 1)
        inside = (ya >= 0) & (ya < hp) & (xb >= 0) & (xb < wp)
        kk = k0 + tl.arange(0, BLOCK_K)
        k_ok = kk < cin
        at = ((ya * wp + xb) * cin)[:, None] + kk[None, :]
        where = inside[:, None] & k_ok[None, :]
        wt = tl.load(w_ptr + (t * cin + kk)[:, None] * n_cols + col[None, :],
                     mask=k_ok[:, None] & ok[None, :], other=0.0)  # fmt: skip
        acc += tl.dot(tl.load(x_ptr + at, mask=where, other=0.0), wt)
        if TWO:
            acc2 += tl.dot(tl.load(x2_ptr + at, mask=where, other=0.0), wt)
    return acc, acc2


@triton.jit
def _tap_shift(py, px, t, wp, C, TAPS: tl.constexpr, PAD0: tl.constexpr):
    """Where the filter's tap t = (j, i) reads the raw 2x2-phase map for the block's parity
    class (py, px) (:func:`_raw`): (ry, rx), the source rows and columns past (a, b), and the
    offset past ``off`` (a scalar: the same for every pixel of the block)."""
    j = t // TAPS
    i = t - j * TAPS
    dy = py + (j - PAD0)
    ry = (dy + 2 * PAD0) // 2 - PAD0  # floor(dy / 2): dy >= -PAD0, the // of a
    dx = px + (i - PAD0)  # non-negative number (Triton's // truncates, as C's)
    rx = (dx + 2 * PAD0) // 2 - PAD0
    return ry, rx, (ry * wp + rx) * (4 * C) + ((dy - 2 * ry) * 2 + dx - 2 * rx) * C


@triton.jit
def _tap(acc, raw_ptr, off, cols, ok, a, b, py, px, t, taps_ptr, hp, wp, C,
         TAPS: tl.constexpr, PAD0: tl.constexpr):  # fmt: skip
    """acc plus the filter's tap t = (j, i) times the shuffled map under it (:func:`_raw`)."""
    ry, rx, shift = _tap_shift(py, px, t, wp, C, TAPS, PAD0)
    at = raw_ptr + (off + shift)[:, None] + cols[None, :]
    if PAD0 == 0 and TAPS <= 3:  # every tap inside: rows a..a + 1 of the hp = H + 1 rows
        # (the 3x3 taps after the blur's (1, 1) factor: no bounds checks, about 120 fewer
        # instructions a program at 512 and 1024 px on an H100, by ptxas)
        v = tl.load(at, mask=ok[None, :], other=0.0)
    else:
        q_ok = (a + ry >= 0) & (a + ry < hp) & (b + rx >= 0) & (b + rx < wp)
        v = tl.load(at, mask=q_ok[:, None] & ok[None, :], other=0.0)
    return tl.fma(tl.load(taps_ptr + t).to(v.dtype), v, acc)


@triton.jit
def _blur2(raw_o_ptr, raw_e_ptr, off, cols, ok, py, px, taps_ptr, wp, C, TAPS: tl.constexpr,
           BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):  # fmt: skip
    """Both streams' blurred 2x2 phases on the block, every channel in one step, where every
    tap lands inside the map (PAD0 0, at most 3x3 taps: see :func:`_tap`), before the passes:
    each tap's offset (a scalar, added to pointers made once) computed once for the two streams
    (by ptxas on an H100, 592 instead of 704 instructions a program at 512 px and 792 instead
    of 944 at 1024 px, and fewer registers on the five targets, than one stream per pass)."""
    acc_o = tl.zeros((BLOCK_P, BLOCK_C), dtype=tl.float16)
    acc_e = tl.zeros((BLOCK_P, BLOCK_C), dtype=tl.float16)
    at = off[:, None] + cols[None, :]
    o_ptrs = raw_o_ptr + at
    e_ptrs = raw_e_ptr + at
    for t in tl.static_range(TAPS * TAPS):
        shift = _tap_shift(py, px, t, wp, C, TAPS, 0)[2]
        k = tl.load(taps_ptr + t)
        acc_o = tl.fma(k, tl.load(o_ptrs + shift, mask=ok[None, :], other=0.0), acc_o)
        acc_e = tl.fma(k, tl.load(e_ptrs + shift, mask=ok[None, :], other=0.0), acc_e)
    return acc_o, acc_e


@triton.jit
def _activate(raw, d_ptr, bias_ptr, noise, cols, ok, CLAMP: tl.constexpr):
    """A styled conv's tail on a [pixels, channels] FP16 block of its output, in FP16 (as the
    PyTorch form computes it; two elements per instruction, half float32's instructions, by
    ptxas): demodulation (with the gain), noise and bias (with the gain), leaky ReLU, clamp."""
    d = tl.load(d_ptr + cols, mask=ok, other=0.0).to(raw.dtype)
    b = tl.load(bias_ptr + cols, mask=ok, other=0.0).to(raw.dtype)
    v = raw * d[None, :] + (b[None, :] + noise[:, None])
    v = tl.maximum(v, v * 0.2)  # leaky ReLU (slope < 1)
    if CLAMP:  # (bounds of v's type: float ones would make the clamp float32's)
        bound = tl.full((), 256.0, v.dtype)
        v = tl.minimum(tl.maximum(v, -bound), bound)
    return v


@triton.jit
def _features(conv, raw_ptr, off, d_ptr, bias_ptr, noise, cols, ok, a, b, py, px, taps_ptr, hp,
              wp, C, conv_w_ptr, cin, CLAMP: tl.constexpr, BLUR: tl.constexpr,
              TAPS: tl.constexpr, PAD0: tl.constexpr, BLOCK_P: tl.constexpr,
              BLOCK_C: tl.constexpr, ONE_STEP: tl.constexpr, CONV: tl.constexpr,
              PHASES: tl.constexpr, BLOCK_K: tl.constexpr, COMPUTED: tl.constexpr):  # fmt: skip
    """A stream's features on the block, FP16: its conv output (FP16, as cuDNN's) through the
    tail; the output is ``conv`` (COMPUTED: both streams' convs computed before the passes) or
    :func:`_raw`'s."""
    if COMPUTED:
        raw = conv
    else:
        raw = _raw(raw_ptr, off, cols, ok, a, b, py, px, taps_ptr, hp, wp, C, conv_w_ptr, cin,
                   BLUR, TAPS, PAD0, BLOCK_P, BLOCK_C, ONE_STEP, CONV, PHASES,
                   BLOCK_K)  # fmt: skip
    return _activate(raw.to(tl.float16), d_ptr, bias_ptr, noise, cols, ok, CLAMP)


@triton.jit
def _store_scaled(x_ptr, out, s_ptr, v, cols, ok, rows):
    """Store v [pixels, channels] times the styles at ``s_ptr`` (the next conv's input
    modulation) at pixel offsets ``out``, where ``rows`` (and ``ok``)."""
    s = tl.load(s_ptr + cols, mask=ok, other=0.0).to(v.dtype)
    value = (v * s[None, :]).to(x_ptr.dtype.element_ty)
    tl.store(x_ptr + out[:, None] + cols[None, :], value, mask=rows[:, None] & ok[None, :])


@triton.jit
def _rgb(acc, v, rgb_ptr, cols, ok):
    """acc [pixels] + the ToRGB row at ``rgb_ptr`` (channels ``cols``) dotted with v, in
    float32."""
    w = tl.load(rgb_ptr + cols, mask=ok, other=0.0)
    return acc + tl.sum(v.to(tl.float32) * w[None, :], axis=1)


@triton.jit
def _rgb3(r0, r1, r2, v, rgb_ptr, row, cols, ok):
    """The three ToRGB accumulators [pixels] of one stream plus v's channels ``cols`` dotted
    with the rows of the sample's [3, row] ToRGB matrix at ``rgb_ptr``."""
    r0 = _rgb(r0, v, rgb_ptr, cols, ok)
    r1 = _rgb(r1, v, rgb_ptr + row, cols, ok)
    r2 = _rgb(r2, v, rgb_ptr + 2 * row, cols, ok)
    return r0, r1, r2


@triton.jit
def _upsampled(prev_o_ptr, prev_e_ptr, y, x, hq, wq, taps_ptr, zero, live, TAPS: tl.constexpr,
               PAD0: tl.constexpr):  # fmt: skip
    """The previous RGB skip [hq, wq] planes of each stream (at ``prev_o_ptr``, ``prev_e_ptr``:
    pointers that broadcast against the pixels y, x, as ``zero`` is shaped, read where
    ``live``), 2x up-sampled and FIR-filtered, at output pixels (y, x): taps (j, i) of the
    [TAPS, TAPS] filter (correlation order, the gain of the up-sampling in it) times the
    zero-inserted map at (y + j - PAD0, x + i - PAD0), which is the source pixel ((y + j -
    PAD0) / 2, ...) where that is even: j = (y + PAD0) mod 2 + 2u, 2x2 of the 16 taps per pixel
    for a 4-tap filter. Both streams read the same taps at the same places."""
    acc_o = zero
    acc_e = zero
    y = y.to(tl.int32)  # within one plane: 32-bit index arithmetic (64-bit spilled on an RTX 50)
    x = x.to(tl.int32)
    j0 = (y + PAD0) % 2
    i0 = (x + PAD0) % 2
    half: tl.constexpr = (TAPS + 1) // 2
    for t in range(half * half):  # a loop: unrolled, an RTX 50's ptxas spilled
        j = j0 + 2 * (t // half)
        i = i0 + 2 * (t % half)
        a = (y + j + PAD0) // 2 - PAD0  # (y + j - PAD0) / 2, exact: the // of a non-negative
        b = (x + i + PAD0) // 2 - PAD0
        ok = (j < TAPS) & (i < TAPS) & (a >= 0) & (a < hq) & (b >= 0) & (b < wq)
        tap = tl.load(taps_ptr + j * TAPS + i, mask=ok, other=0.0)
        ok = ok & live
        acc_o += tap * tl.load(prev_o_ptr + a * wq + b, mask=ok, other=0.0)
        acc_e += tap * tl.load(prev_e_ptr + a * wq + b, mask=ok, other=0.0)
    return acc_o, acc_e


@triton.jit
def _skip(r, e, mf, k, pix, hw, first, rgb_b_ptr, up_o_ptr, up_e_ptr, sk_o_ptr, sk_e_ptr, y, x,
          width, up_taps_ptr, HAS_SKIP: tl.constexpr, UP_TAPS: tl.constexpr,
          UP_PAD0: tl.constexpr):  # fmt: skip
    """RGB channel k: ToRGB + bias + the previous skip up-sampled here, per stream, the edited
    one blended with the original through the mask; stored as the new skips (the pointers at
    the program's samples' [3, ...] skips). With k = [[0, 1, 2, 3]] and r, e, mf, y, x, pix
    [pixels, 1]: the three channels as one [pixels, 4] tile (the fourth masked): every
    thread a pixel's channel, where [pixels] vectors repeat each pixel on several threads (4 at
    32 pixels and 4 warps), so does their arithmetic."""
    live = k < 3
    bias = tl.load(rgb_b_ptr + k, mask=live, other=0.0)
    o = r + bias
    ed = e + bias
    if HAS_SKIP:
        hq = hw // width // 2  # the previous skip's rows and columns
        wq = width // 2
        plane = k * (hq * wq)
        up_o, up_e = _upsampled(up_o_ptr + plane, up_e_ptr + plane, y, x, hq, wq, up_taps_ptr,
                                tl.zeros_like(o), live, UP_TAPS, UP_PAD0)  # fmt: skip
        o += up_o
        ed += up_e
    at = k * hw + pix
    tl.store(sk_o_ptr + at, o, mask=live & first)
    tl.store(sk_e_ptr + at, o + mf.to(tl.float32) * (ed - o), mask=live)


@triton.jit
def triton_layer_epilogue(
    raw_o_ptr,  # original stream's conv output before demodulation, NHWC [B, H, W, C]
    raw_e_ptr,  # edited stream's, [B * prompts, H, W, C]; PHASES: both are the sub-pixel
    #             conv's [N, H/2, W/2, 4C], read through the pixel shuffle; CONV: both are
    #             the conv's input [N, hp, wp, cin] (modulated), the conv is computed here
    #             (the original's too where CONV_O, else its output is read as without CONV)
    d_o_ptr,  # [B, row] float32: demodulation coefficients times the gain, original (the
    #           first C of each row of ``row`` elements; so are the styles and ToRGB's)
    d_e_ptr,  # [B * prompts, row] float32: edited
    bias_ptr,  # [C] float32: the activation's bias times the gain
    noise_ptr,  # [H * W] FP16: noise times its weight times the gain (HAS_NOISE)
    w1_ptr,  # [C, hidden] FP16, the mask head (as triton_mask_head reads it)
    b1_ptr,  # [hidden] float32
    term_ptr,  # [B * prompts, hidden]: the head's text term (HAS_TERM)
    w2_ptr,  # [hidden] float32
    b2_ptr,  # [1] float32
    s_o_ptr,  # [B, row] float32: the next conv's input styles, original (HAS_NEXT)
    s_e_ptr,  # [B * prompts, row] float32: edited
    x_o_ptr,  # out [B, H, W, C] FP16: the next conv's input, f * s (HAS_NEXT)
    x_e_ptr,  # out [B * prompts, H, W, C] FP16: the blended features times s
    m_ptr,  # out [B * prompts, H * W] FP16: the mask
    rgb_o_ptr,  # [B, 3, row] float32: ToRGB weight times its styles, original (HAS_RGB)
    rgb_e_ptr,  # [B * prompts, 3, row] float32: edited
    rgb_b_ptr,  # [3] float32: ToRGB's bias
    up_o_ptr,  # [B, 3, H/2 * W/2] float32: the previous RGB skip, original (HAS_SKIP)
    up_e_ptr,  # [B * prompts, 3, H/2 * W/2] float32: edited
    up_taps_ptr,  # [UP_TAPS * UP_TAPS] float32: the skip's up-sampling FIR (HAS_SKIP)
    taps_ptr,  # [TAPS * TAPS] FP16: the FIR filter, correlation order (PHASE_BLUR)
    conv_w_ptr,  # [9 cin, C or 4C] FP16: the conv's weight, K-major (CONV)
    sk_o_ptr,  # out [B, 3, H * W] float32: the new RGB skip, original (HAS_RGB)
    sk_e_ptr,  # out [B * prompts, 3, H * W] float32: edited, blended with the mask
    hw,  # pixels per map
    width: tl.constexpr,  # pixels per row (a constant: divisions by it are shifts)
    C,  # channels; a constant where one block holds them all (FULL_C)
    hidden: tl.constexpr,
    prompts,  # edited samples per original sample (latent-major)
    row,  # elements per row of the demodulation, style and ToRGB matrices (>= C); a runtime
    #       value: as a constant (tl.constexpr) ptxas took 101 registers instead of 80 at 512
    #       px on an H100, 72 instead of 64 at 1024 px on an RTX 50 (benchmarks/triton_aot.py)
    hp,  # PHASE_BLUR: rows and columns of the 2x2-phase conv's output; CONV: of its input
    wp,
    cin: tl.constexpr,  # CONV: the conv's input channels, a constant: its loop of 9 taps x
    #                     channel chunks unrolls where one chunk holds them (a fifth to a
    #                     third fewer instructions, fewer registers, by ptxas); 0 without
    #                     CONV (one kernel for every width)
    HAS_NOISE: tl.constexpr,
    HAS_TERM: tl.constexpr,
    HAS_NEXT: tl.constexpr,
    HAS_RGB: tl.constexpr,
    HAS_SKIP: tl.constexpr,
    PHASES: tl.constexpr,
    PHASE_BLUR: tl.constexpr,  # raw: the 2x2-phase conv's [N, hp, wp, 4C], shuffled, blurred here
    TAPS: tl.constexpr,
    PAD0: tl.constexpr,
    UP_TAPS: tl.constexpr,  # the skip's up-sampling filter: taps per side, leading padding
    UP_PAD0: tl.constexpr,
    CLAMP: tl.constexpr,
    HIDDEN: tl.constexpr,  # hidden rounded up to a power of two >= 16 (masked beyond)
    BLOCK_P: tl.constexpr,  # pixels per program; divides hw (PHASE_BLUR, or CONV with PHASES:
    #                         hw / 4), so one sample (and one parity class) per program
    BLOCK_C: tl.constexpr,
    ONE_STEP: tl.constexpr,  # (PHASE_BLUR or CONV) and C <= BLOCK_C (with_options)
    CONV: tl.constexpr,  # the conv itself in the kernel (needs ONE_STEP)
    CONV_O: tl.constexpr,  # CONV for the original stream too (one prompt per latent: with
    #                        several, each prompt's program would compute it again)
    BLOCK_K: tl.constexpr,  # CONV: input channels per product
    RGB_TILE: tl.constexpr,  # HAS_RGB: the skips' three channels as one [pixels, 4] tile
    #                          (with_options), not one [pixels] vector each
    RELOAD_MASK: tl.constexpr,  # the blends read the mask back from memory (with_options)
    FULL_C: tl.constexpr,  # C == BLOCK_C (with_options): C a constant here, the channel masks
    #                        and loops fold away (with width and hidden constants too, a sixth
    #                        to a third fewer instructions at 512 and 1024 px, by ptxas; C a
    #                        constant in the wider maps' loops, ptxas spilled on an RTX 40)
):
    # programs in (original sample, pixel block, prompt) order: the prompts' programs of one
    # block run side by side and read the original's block from cache, not once per prompt.
    # Offsets within a sample are 32-bit (the launch checks they fit), the samples' 64-bit
    # ones are added to the pointers once per program (64-bit offsets per element took a
    # sixth of the 1024 px launches' instructions, by ptxas)
    if FULL_C:
        C = BLOCK_C
    pid = tl.program_id(0)
    prompt = pid % prompts
    rest = pid // prompts
    blocks = hw // BLOCK_P
    so = rest // blocks  # the original sample
    se = so * prompts + prompt  # the edited sample (latent-major)
    block = rest - so * blocks
    first = prompt == 0  # its program writes the original stream's outputs
    so_l = so.to(tl.int64)
    se_l = se.to(tl.int64)
    if CONV:  # the conv's inputs; without CONV_O, the original's conv output read as below
        raw_e_ptr += se_l * (hp * wp * cin)
        raw_o_ptr += so_l * (hp * wp * (cin if CONV_O else (4 * C if PHASES else C)))
    else:  # [hp, wp] pixels of C channels, or of 4C: the phases of the sub-pixel or 2x2 conv
        per_sample = hp * wp * (4 * C if PHASES or PHASE_BLUR else C)
        raw_o_ptr += so_l * per_sample
        raw_e_ptr += se_l * per_sample
    x_o_ptr += so_l * (hw * C)
    x_e_ptr += se_l * (hw * C)
    m_ptr += se_l * hw
    sk_o_ptr += so_l * (3 * hw)
    sk_e_ptr += se_l * (3 * hw)
    up_o_ptr += so_l * (3 * (hw // 4))
    up_e_ptr += se_l * (3 * (hw // 4))
    d_o_ptr += so * row  # the samples' rows of the per-sample tables
    d_e_ptr += se * row
    s_o_ptr += so * row
    s_e_ptr += se * row
    rgb_o_ptr += so * (3 * row)
    rgb_e_ptr += se * (3 * row)
    term_ptr += se * hidden
    if PHASE_BLUR or (CONV and PHASES):  # a block of one parity class (py, px): pixels
        # (2a + py, 2b + px), (a, b) a pixel of the 2x2-phase or sub-pixel conv's output
        per_class = blocks // 4
        parity = block // per_class
        py = parity // 2
        px = parity - py * 2
        q = (block - parity * per_class) * BLOCK_P + tl.arange(0, BLOCK_P)
        a = q // (width // 2)  # the source pixel (a, b) of the 2x2-phase or sub-pixel conv
        b = q - a * (width // 2)
        y = 2 * a + py
        x = 2 * b + px
        pix = y * width + x  # pixels within the map
        if CONV:  # the samples' inputs (pointers), or the original's sub-pixel conv output,
            off_e = 0  # phase (py, px) of pixel (a, b)
            off_o = 0 if CONV_O else (a * wp + b) * (4 * C) + (py * 2 + px) * C
        else:
            off_o = (a * wp + b) * (4 * C)
            off_e = off_o
    else:
        py = 0  # a, b, py, px: read by _raw with the blur or the conv only
        px = 0
        pix = block * BLOCK_P + tl.arange(0, BLOCK_P)  # pixels within the map
        y = pix // width
        x = pix - y * width
        if CONV:
            off_o = 0 if CONV_O else pix * C
            off_e = 0
        elif PHASES:  # output (y, x) of channel c: phase (y % 2, x % 2) of input (y // 2, x // 2)
            src = (y // 2) * (width // 2) + x // 2
            off_o = src * (4 * C) + ((y % 2) * 2 + x % 2) * C
            off_e = off_o
        else:
            off_o = pix * C
            off_e = off_o
        a = y
        b = x
    out = pix * C  # both streams' outputs
    if HAS_NOISE:
        noise = tl.load(noise_ptr + pix)
    else:
        noise = tl.zeros((BLOCK_P,), dtype=tl.float16)
    every = pix >= 0  # all true: the row mask of the stores
    BLUR2: tl.constexpr = PHASE_BLUR and ONE_STEP and PAD0 == 0 and TAPS <= 3
    BOTH: tl.constexpr = (CONV and CONV_O) or BLUR2  # both streams' raw before the passes
    if CONV and CONV_O:  # both streams' convs in one loop (ONE_STEP: every channel at once)
        cols0 = tl.arange(0, BLOCK_C)
        conv_o, conv_e = _conv(raw_o_ptr, off_o, raw_e_ptr, off_e, cols0, cols0 < C, a, b, py,
                               px, hp, wp, C, conv_w_ptr, cin, PHASES, BLOCK_P, BLOCK_C,
                               BLOCK_K, True)  # fmt: skip
    elif BLUR2:
        cols0 = tl.arange(0, BLOCK_C)
        conv_o, conv_e = _blur2(raw_o_ptr, raw_e_ptr, off_o, cols0, cols0 < C, py, px, taps_ptr,
                                wp, C, TAPS, BLOCK_P, BLOCK_C)  # fmt: skip
    else:  # each stream's conv output read (or the edited one's computed) in its pass
        conv_o = tl.zeros((BLOCK_P, BLOCK_C), dtype=tl.float32)  # (not read)
        conv_e = conv_o
    hid = tl.arange(0, HIDDEN)
    hid_ok = hid < hidden
    # pass 1, the original stream: mask head, ToRGB, the next conv's input
    acc = tl.zeros((BLOCK_P, HIDDEN), dtype=tl.float32)
    kept = tl.zeros((BLOCK_P, BLOCK_C), dtype=tl.float16)  # ONE_STEP: pass 1's features
    r0 = tl.zeros((BLOCK_P,), dtype=tl.float32)
    r1 = tl.zeros((BLOCK_P,), dtype=tl.float32)
    r2 = tl.zeros((BLOCK_P,), dtype=tl.float32)
    for c0 in range(0, C, BLOCK_C):
        cols = c0 + tl.arange(0, BLOCK_C)
        ok = cols < C
        f = _features(conv_o, raw_o_ptr, off_o, d_o_ptr, bias_ptr, noise, cols, ok,
                      a, b, py, px, taps_ptr, hp, wp, C, conv_w_ptr, cin, CLAMP, PHASE_BLUR,
                      TAPS, PAD0, BLOCK_P, BLOCK_C, ONE_STEP, False, PHASES, BLOCK_K,
                      BOTH)  # fmt: skip
        if ONE_STEP:  # the only step: pass 2 takes these features, not a second read
            kept = f
        w1 = tl.load(
            w1_ptr + cols[:, None] * hidden + hid[None, :],
            mask=ok[:, None] & hid_ok[None, :],
            other=0.0,
        )
        acc += tl.dot(f.to(w1.dtype), w1)
        if HAS_NEXT:
            _store_scaled(x_o_ptr, out, s_o_ptr, f, cols, ok, every & first)
        if HAS_RGB:
            r0, r1, r2 = _rgb3(r0, r1, r2, f, rgb_o_ptr, row, cols, ok)
    h = acc + tl.load(b1_ptr + hid, mask=hid_ok, other=0.0)[None, :]
    if HAS_TERM:
        term = tl.load(term_ptr + hid, mask=hid_ok, other=0.0)
        h += term.to(tl.float32)[None, :]
    h = tl.maximum(h, 0.0)
    w2 = tl.load(w2_ptr + hid, mask=hid_ok, other=0.0)
    logit = tl.sum(h * w2[None, :], axis=1) + tl.load(b2_ptr)
    m = (1.0 / (1.0 + tl.exp(-logit))).to(m_ptr.dtype.element_ty)
    tl.store(m_ptr + pix, m)
    # the blends use the stored (FP16) mask, in FP16, as the PyTorch form does. RELOAD_MASK:
    # read back from memory (after a barrier: every thread's stores seen), it comes in the
    # features' layout, where m, in the mask head's product's, would have the features and
    # ToRGB's products moved to that layout instead, through shared memory
    if RELOAD_MASK:
        tl.debug_barrier()
        mf = tl.load(m_ptr + pix)
    else:
        mf = m
    # pass 2, the edited stream blended with the original (the original's features kept
    # from pass 1 when one step holds every channel, else its tail again, from cache)
    e0 = tl.zeros((BLOCK_P,), dtype=tl.float32)
    e1 = tl.zeros((BLOCK_P,), dtype=tl.float32)
    e2 = tl.zeros((BLOCK_P,), dtype=tl.float32)
    for c0 in range(0, C, BLOCK_C):
        cols = c0 + tl.arange(0, BLOCK_C)
        ok = cols < C
        if ONE_STEP:
            f = kept
        else:  # (never with the conv in the kernel: that needs ONE_STEP)
            f = _features(conv_o, raw_o_ptr, off_o, d_o_ptr, bias_ptr, noise, cols,
                          ok, a, b, py, px, taps_ptr, hp, wp, C, conv_w_ptr, cin, CLAMP,
                          PHASE_BLUR, TAPS, PAD0, BLOCK_P, BLOCK_C, ONE_STEP, False, PHASES,
                          BLOCK_K, False)  # fmt: skip
        e = _features(conv_e, raw_e_ptr, off_e, d_e_ptr, bias_ptr, noise, cols, ok,
                      a, b, py, px, taps_ptr, hp, wp, C, conv_w_ptr, cin, CLAMP, PHASE_BLUR,
                      TAPS, PAD0, BLOCK_P, BLOCK_C, ONE_STEP, CONV, PHASES, BLOCK_K,
                      BOTH)  # fmt: skip
        v = f + mf[:, None] * (e - f)
        if HAS_NEXT:
            _store_scaled(x_e_ptr, out, s_e_ptr, v, cols, ok, every)
        if HAS_RGB:
            e0, e1, e2 = _rgb3(e0, e1, e2, v, rgb_e_ptr, row, cols, ok)
    if HAS_RGB and RGB_TILE:  # the three channels as one [pixels, 4] tile
        k = tl.arange(0, 4)[None, :]
        r = tl.where(k == 0, r0[:, None], tl.where(k == 1, r1[:, None], r2[:, None]))
        e = tl.where(k == 0, e0[:, None], tl.where(k == 1, e1[:, None], e2[:, None]))
        _skip(r, e, mf[:, None], k, pix[:, None], hw, first, rgb_b_ptr, up_o_ptr, up_e_ptr,
              sk_o_ptr, sk_e_ptr, y[:, None], x[:, None], width, up_taps_ptr, HAS_SKIP,
              UP_TAPS, UP_PAD0)  # fmt: skip
    elif HAS_RGB:  # channel by channel
        _skip(r0, e0, mf, 0, pix, hw, first, rgb_b_ptr, up_o_ptr, up_e_ptr, sk_o_ptr,
              sk_e_ptr, y, x, width, up_taps_ptr, HAS_SKIP, UP_TAPS, UP_PAD0)  # fmt: skip
        _skip(r1, e1, mf, 1, pix, hw, first, rgb_b_ptr, up_o_ptr, up_e_ptr, sk_o_ptr,
              sk_e_ptr, y, x, width, up_taps_ptr, HAS_SKIP, UP_TAPS, UP_PAD0)  # fmt: skip
        _skip(r2, e2, mf, 2, pix, hw, first, rgb_b_ptr, up_o_ptr, up_e_ptr, sk_o_ptr,
              sk_e_ptr, y, x, width, up_taps_ptr, HAS_SKIP, UP_TAPS, UP_PAD0)  # fmt: skip
