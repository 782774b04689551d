"""The GPU fast path of the device backends: Triton kernels and CUDA graphs.

=================  ===========================================================================
triton_ops         the Triton kernels as PyTorch custom ops (``mcaclip::mask_head``,
                   ``mcaclip::layer_epilogue``), their loading and launch configuration
_epilogue_kernel   the layer-epilogue Triton kernel itself (imported only when Triton loads)
synthesis          ``--triton-epilogues``: the masked synthesis with one kernel between two
                   styled convs, installed as ``MaskedSynthesis.fast_path``
                   (:func:`~mcaclip.runtime.kernels.synthesis.triton_epilogues`)
tuning             ``--triton-convs-auto``: per layer, the conv in the kernel or in cuDNN,
                   whichever was faster on this GPU
mask_head          ``--triton-masks``: each mask head as one kernel, installed as
                   ``MaskHead.fused`` (:func:`~mcaclip.runtime.kernels.mask_head.triton_masks`)
cuda_graphs        :class:`~mcaclip.runtime.kernels.cuda_graphs.CudaGraphed`: capture once per
                   input signature, replay
=================  ===========================================================================

The networks (:mod:`mcaclip.nn`) know none of this: they offer hooks (``fast_path``,
``fused``) that return None to fall back to their PyTorch form, and these modules set them.
Nothing here imports Triton until a switch is turned on
(:func:`mcaclip.runtime.kernels.triton_ops.load`).
"""
