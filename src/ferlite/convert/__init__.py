"""fer-convert: Keras model -> int8 (or float16/float32) TFLite with its spec, verified."""
