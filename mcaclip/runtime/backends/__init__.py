"""Runtime backends: each runs one graph of a bundle, ``infer(feed: dict) -> dict``.

=============  ==============================================================================
onnxruntime    the bundle's ONNX graphs; providers TensorRT EP > CUDA EP > CPU EP as available
torch          the same networks rebuilt in PyTorch from the bundle's ``torch/`` checkpoints;
               on a GPU: FP16, channels-last, CUDA graphs, optional torch.compile
tensorrt       the bundle's serialized TensorRT engines (``trt/``), built on the GPU that runs
               them (``mcaexport build-trt``); needs TensorRT and a CUDA GPU
openvino       the bundle's ONNX graphs compiled by OpenVINO for the CPU (``[openvino]`` extra);
               precision fp32, bf16 or fp16 where the CPU has it; compiled models in ``ov_cache/``
=============  ==============================================================================
"""

from __future__ import annotations

BACKEND_NAMES = ("onnxruntime", "torch", "tensorrt", "openvino")
# backends that run the graphs one after the other through host arrays (no device editor)
HOST_BACKENDS = ("onnxruntime", "openvino")
# the torch backend's speed switches, keywords of EditPipeline and TorchEditor (None: the
# backend's measured default; see mcaclip.runtime.backends.torch)
TORCH_SWITCHES = (
    "fold_blur",
    "channels_last",
    "subpixel",
    "phase_conv",
    "fuse_tails",
    "stack_streams",
    "cudnn_benchmark",
    "triton_masks",
    "triton_epilogues",
    "triton_convs",
)
