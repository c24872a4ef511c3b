"""Quant recipes: per-tensor ggml types as data (``quant_recipes/*.toml``), their file-size estimate,
the recipe a quantized GGUF embodies, and applying one with llama.cpp's own quantizer.

* :mod:`dslocal.quant.recipes`: loading, the schema check, matching a tensor to its type.
* :mod:`dslocal.quant.estimate`: the file a recipe makes from a source's tensor shapes.
* :mod:`dslocal.quant.extract`: the recipe a quantized GGUF's tensor types amount to.
* :mod:`dslocal.quant.apply`: ``llama_model_quantize`` with per-tensor overrides and an importance matrix.
"""
