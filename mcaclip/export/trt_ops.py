"""TensorRT ONNX-parser operator support matrix, as data.

Transcribed from NVIDIA's ``docs/operators.md`` in the onnx/onnx-tensorrt repository, as published
with the "ONNX-TensorRT 10.1 GA release" (branch ``10.1-GA``, commit 96e78110). That document
states: "TensorRT 10.0 supports operators in the inclusive range of opset 9 to opset 20", and lists
DOUBLE, FLOAT32, FLOAT16, BFLOAT16, INT32, INT64, FP8, INT8, INT4, UINT8 and BOOL as supported ONNX
data types, with these notes: DOUBLE is cast down to FLOAT (clamped to +-FLT_MAX); INT8, INT4 and
FP8 are quantized types, reachable only by quantizing from a wider float type; UINT8 is only
supported for network input/output tensors.

Types use ONNX ``TensorProto`` names (FP32 -> "FLOAT", FP16 -> "FLOAT16", BF16 -> "BFLOAT16",
FP8 -> "FLOAT8E4M3FN"). An empty frozenset means the document gives no type list ("any").
Restrictions are shortened to one line; "" means none is stated. Transcription fixes: the document
writes "INF64" for ConstantOfShape (read as INT64).

This module is data only (plus the tiny ``_t`` helper that builds the type frozensets).
"""

from __future__ import annotations

TRT_OPSET_MIN: int = 9
TRT_OPSET_MAX: int = 20

TRT_DTYPES: frozenset[str] = frozenset(
    {
        "DOUBLE",
        "FLOAT",
        "FLOAT16",
        "BFLOAT16",
        "INT32",
        "INT64",
        "FLOAT8E4M3FN",
        "INT8",
        "INT4",
        "UINT8",
        "BOOL",
    }
)


def _t(names: str) -> frozenset[str]:
    """Build a frozenset of ONNX TensorProto type names from a space-separated string."""
    return frozenset(names.split())


_AXES_INIT = "axes must be an initializer"
_RESIZE = (
    "coordinate modes half_pixel/pytorch_half_pixel/tf_half_pixel_for_nn/asymmetric/align_corners; "
    "modes nearest/linear; nearest modes floor/ceil/round_prefer_floor/round_prefer_ceil; "
    "aspect policy stretch; tensor scales need axes = iota(rank); no antialiasing"
)

# operator -> (supported types, restriction); operators the matrix marks "Y".
SUPPORTED_OPS: dict[str, tuple[frozenset[str], str]] = {
    "Abs": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64"), ""),
    "Acos": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "Acosh": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "Add": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64"), ""),
    "And": (_t("BOOL"), ""),
    "ArgMax": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64"), ""),
    "ArgMin": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64"), ""),
    "Asin": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "Asinh": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "Atan": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "Atanh": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "AveragePool": (
        _t("FLOAT FLOAT16 BFLOAT16"),
        "2D/3D pooling only; dilations must be empty or all ones",
    ),
    "BatchNormalization": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "Cast": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64 UINT8 BOOL"), ""),
    "CastLike": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64 UINT8 BOOL"), ""),
    "Ceil": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "Celu": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "Clip": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "Concat": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64 BOOL"), ""),
    "Constant": (
        _t("FLOAT FLOAT16 BFLOAT16 INT32 INT64 BOOL"),
        "sparse_value, value_string and value_strings attributes unsupported",
    ),
    "ConstantOfShape": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64 BOOL"), ""),
    "Conv": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "ConvTranspose": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "Cos": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "Cosh": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "CumSum": (_t("FLOAT FLOAT16 BFLOAT16"), "axis must be an initializer"),
    "DeformConv": (
        _t("FLOAT FLOAT16"),
        "1D/2D spatial input only; begin/end pads must match on each spatial axis",
    ),
    "DepthToSpace": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64"), ""),
    "DequantizeLinear": (_t("INT8 FLOAT8E4M3FN INT4"), "x_zero_point must be zero"),
    "Div": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64"), ""),
    "Dropout": (
        _t("FLOAT FLOAT16 BFLOAT16"),
        "training-mode input must be an initializer that evaluates to False",
    ),
    "Einsum": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "Elu": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "Equal": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64"), ""),
    "Erf": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "Exp": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "Expand": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64 BOOL"), ""),
    "EyeLike": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64 BOOL"), "input must have static dimensions"),
    "Flatten": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64 BOOL"), ""),
    "Floor": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "GRU": (
        _t("FLOAT FLOAT16 BFLOAT16"),
        "bidirectional: same activations for forward and reverse",
    ),
    "Gather": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64 BOOL"), ""),
    "GatherElements": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64 BOOL"), ""),
    "GatherND": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64 BOOL"), ""),
    "Gelu": (_t("FLOAT FLOAT16 BFLOAT16 INT8 INT32 INT64"), ""),
    "Gemm": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "GlobalAveragePool": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "GlobalLpPool": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "GlobalMaxPool": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "Greater": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64"), ""),
    "GreaterOrEqual": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64"), ""),
    "GridSample": (_t("FLOAT FLOAT16"), "input must be 4D"),
    "GroupNormalization": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "HardSigmoid": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "HardSwish": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "Hardmax": (
        _t("FLOAT FLOAT16 BFLOAT16"),
        "axis dimension of input must be a build-time constant",
    ),
    "Identity": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64 BOOL"), ""),
    "If": (
        _t("FLOAT FLOAT16 BFLOAT16 INT32 INT64 BOOL"),
        "branch outputs must have the same rank and different names",
    ),
    "ImageScaler": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "InstanceNormalization": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "IsInf": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "IsNaN": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64"), ""),
    "LRN": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "LSTM": (
        _t("FLOAT FLOAT16 BFLOAT16"),
        "bidirectional: same activations both ways; input_forget=0; layout=0",
    ),
    "LayerNormalization": (_t("FLOAT FLOAT16 BFLOAT16"), "only the first output Y is supported"),
    "LeakyRelu": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "Less": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64"), ""),
    "LessOrEqual": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64"), ""),
    "Log": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "LogSoftmax": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "Loop": (
        _t("FLOAT FLOAT16 BFLOAT16 INT32 INT64 BOOL"),
        "scan output length must be static; carried shapes fixed across iterations",
    ),
    "LpNormalization": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "LpPool": (_t("FLOAT FLOAT16 BFLOAT16"), "dilations must be empty or all ones"),
    "MatMul": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "Max": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64"), ""),
    "MaxPool": (
        _t("FLOAT FLOAT16 BFLOAT16"),
        "2D/3D pooling only; no Indices output; dilations must be empty or all ones",
    ),
    "Mean": (_t("FLOAT FLOAT16 BFLOAT16 FLOAT8E4M3FN INT32 INT64"), ""),
    "MeanVarianceNormalization": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "Min": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64"), ""),
    "Mish": (_t("FLOAT FLOAT16"), ""),
    "Mod": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64"), ""),
    "Mul": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64"), ""),
    "Neg": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64"), ""),
    "NonMaxSuppression": (_t("FLOAT FLOAT16"), ""),
    "NonZero": (_t("FLOAT FLOAT16"), ""),
    "Not": (_t("BOOL"), ""),
    "OneHot": (
        _t("FLOAT FLOAT16 BFLOAT16 INT32 INT64 BOOL"),
        "depth must be a build-time constant",
    ),
    "Or": (_t("BOOL"), ""),
    "PRelu": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "Pad": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64"), _AXES_INIT),
    "ParametricSoftplus": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "Pow": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "QuantizeLinear": (_t("FLOAT FLOAT16 BFLOAT16"), "y_zero_point must be 0"),
    "RNN": (
        _t("FLOAT FLOAT16 BFLOAT16"),
        "bidirectional: same activations for forward and reverse",
    ),
    "RandomNormal": (_t("FLOAT FLOAT16 BFLOAT16"), "seed is ignored"),
    "RandomNormalLike": (_t("FLOAT FLOAT16 BFLOAT16"), "seed is ignored"),
    "RandomUniform": (_t("FLOAT FLOAT16 BFLOAT16"), "seed is ignored"),
    "RandomUniformLike": (_t("FLOAT FLOAT16 BFLOAT16"), "seed is ignored"),
    "Range": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64"), ""),
    "Reciprocal": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "ReduceL1": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64"), _AXES_INIT),
    "ReduceL2": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64"), _AXES_INIT),
    "ReduceLogSum": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64"), _AXES_INIT),
    "ReduceLogSumExp": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64"), _AXES_INIT),
    "ReduceMax": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64"), _AXES_INIT),
    "ReduceMean": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64"), _AXES_INIT),
    "ReduceMin": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64"), _AXES_INIT),
    "ReduceProd": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64"), _AXES_INIT),
    "ReduceSum": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64"), _AXES_INIT),
    "ReduceSumSquare": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64"), _AXES_INIT),
    "Relu": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64"), ""),
    "Reshape": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64 BOOL"), ""),
    "Resize": (_t("FLOAT FLOAT16 BFLOAT16"), _RESIZE),
    "ReverseSequence": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64 BOOL"), ""),
    "RoiAlign": (_t("FLOAT FLOAT16"), ""),
    "Round": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "ScaledTanh": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "Scan": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "Scatter": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64"), ""),
    "ScatterElements": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64"), ""),
    "ScatterND": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64"), "reduction is not supported"),
    "Selu": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "Shape": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64 BOOL"), ""),
    "Shrink": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64"), ""),
    "Sigmoid": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "Sign": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64"), ""),
    "Sin": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "Sinh": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "Size": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64 BOOL"), ""),
    "Slice": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64 BOOL"), _AXES_INIT),
    "Softmax": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "Softplus": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "Softsign": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "SpaceToDepth": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64"), ""),
    "Split": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64 BOOL"), ""),
    "Sqrt": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "Squeeze": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64 BOOL"), _AXES_INIT),
    "Sub": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64"), ""),
    "Sum": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64"), ""),
    "Tan": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "Tanh": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "ThresholdedRelu": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "Tile": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64 BOOL"), ""),
    "TopK": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64"), "sorted must be 1; K must be < 3840"),
    "Transpose": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64 BOOL"), ""),
    "Trilu": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64 BOOL"), ""),
    "Unsqueeze": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64 BOOL"), "axes must be a constant tensor"),
    "Upsample": (_t("FLOAT FLOAT16 BFLOAT16"), ""),
    "Where": (_t("FLOAT FLOAT16 BFLOAT16 INT32 INT64 BOOL"), ""),
    "Xor": (_t("BOOL"), ""),
}

# Operators the matrix marks "N".
UNSUPPORTED_OPS: frozenset[str] = frozenset(
    {
        "AffineGrid",
        "Bernoulli",
        "BitShift",
        "BitwiseAnd",
        "BitwiseNot",
        "BitwiseOr",
        "BitwiseXor",
        "BlackmanWindow",
        "CenterCropPad",
        "Col2Im",
        "Compress",
        "ConcatFromSequence",
        "ConvInteger",
        "DFT",
        "Det",
        "DynamicQuantizeLinear",
        "HammingWindow",
        "HannWindow",
        "ImageDecoder",
        "MatMulInteger",
        "MaxRoiPool",
        "MaxUnpool",
        "MelWeightMatrix",
        "Multinomial",
        "NegativeLogLikelihoodLoss",
        "Optional",
        "OptionalGetElement",
        "OptionalHasElement",
        "QLinearConv",
        "QLinearMatMul",
        "RegexFullMatch",
        "STFT",
        "SequenceAt",
        "SequenceConstruct",
        "SequenceEmpty",
        "SequenceErase",
        "SequenceInsert",
        "SequenceLength",
        "SequenceMap",
        "SoftmaxCrossEntropyLoss",
        "SplitToSequence",
        "StringConcat",
        "StringNormalizer",
        "StringSplit",
        "TfIdfVectorizer",
        "Unique",
    }
)
