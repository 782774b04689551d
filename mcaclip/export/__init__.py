"""Export editors to ONNX graphs and engine bundles."""
