"""Writes dequant_reference.json: random blocks of each quantized type and
their values as dequantized by gguf-py (the `gguf` package on PyPI, a NumPy
port of ggml's reference dequantization), as f32 bit patterns.

Run: python3 -m venv env && env/bin/pip install gguf==0.19.0 &&
env/bin/python make_dequant_reference.py
"""

import json

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants

BLOCKS = 3
rng = np.random.default_rng(20261204)

# Byte offsets of the f16 scale fields in each block. Scales are drawn as
# finite values, and every other byte is uniform.
LAYOUTS = {
    "Q8_0": (T.Q8_0, 34, [0]),
    "Q4_0": (T.Q4_0, 18, [0]),
    "Q4_1": (T.Q4_1, 20, [0, 2]),
    "Q4_K": (T.Q4_K, 144, [0, 2]),
    "Q6_K": (T.Q6_K, 210, [208]),
}

cases = []
for name, (qtype, block_bytes, scale_offsets) in LAYOUTS.items():
    raw = rng.integers(0, 256, size=(BLOCKS, block_bytes), dtype=np.uint8)
    for offset in scale_offsets:
        scales = rng.uniform(-2.0, 2.0, size=BLOCKS).astype(np.float16)
        raw[:, offset : offset + 2] = scales.view(np.uint8).reshape(BLOCKS, 2)
    values = quants.dequantize(raw.reshape(-1), qtype).astype(np.float32)
    cases.append(
        {
            "dtype": name,
            "bytes": raw.reshape(-1).tobytes().hex(),
            "value_bits": values.view(np.uint32).tolist(),
        }
    )

with open("dequant_reference.json", "w") as f:
    json.dump({"generator": "gguf-py quants.dequantize", "cases": cases}, f)
