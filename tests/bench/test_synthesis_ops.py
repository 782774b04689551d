"""benchmarks/synthesis_ops.py: the kernels of one masked-generator call, counted on the meta
device; with the Triton epilogues, one conv and one epilogue per styled conv and a few more."""

from benchmarks.synthesis_ops import count


def test_the_triton_form_makes_few_kernels_besides_convs_and_epilogues():
    counts = count("tiny-32", 2, 3, "text")  # text-conditioned heads: their terms too
    triton, pytorch = counts["triton_epilogues"], counts["pytorch"]
    layers = triton["triton"]
    assert layers == 7  # tiny-32: one styled conv at 4 px, two at 8, 16 and 32
    assert triton["ops"]["conv2d"] == layers  # both streams as one batch
    small = triton["total"] - 2 * layers
    assert small <= 14, triton["ops"]  # every style, demodulation, text term: batched
    assert triton["ops"].get("to", 0) >= 1  # casts are counted (aten.to reports as a view)
    assert pytorch["triton"] == 0 and pytorch["total"] > 4 * triton["total"], pytorch["ops"]
