"""Runtime backends: each runs one graph of a bundle, ``infer(feed: dict) -> dict``.

=============  ==============================================================================
onnxruntime    the bundle's ONNX graphs; providers TensorRT EP > CUDA EP > CPU EP as available
torch          the same networks rebuilt in PyTorch from the bundle's ``torch/`` checkpoints
=============  ==============================================================================
"""

from __future__ import annotations

BACKEND_NAMES = ("onnxruntime", "torch")
