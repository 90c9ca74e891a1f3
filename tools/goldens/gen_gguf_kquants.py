#!/usr/bin/env python3
"""Writes tests/golden/gguf/kquants.json: Q4_K and Q6_K blocks and the values llama.cpp's `gguf` package
(its numpy port of ggml's dequantize_row_q4_K / q6_K) dequantizes them to, for qtune's GGUF reader
(tests/test_gguf.cpp). The blocks are random bytes with finite f16 scales, so every bit of the packed 6-bit
scales and mins, the 4-bit and 6-bit codes, is exercised. Values are stored as doubles (exact for f32).

Pinned: gguf 0.19.0, numpy.
Run: python3 tools/goldens/gen_gguf_kquants.py
"""
import json
import os

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q
from gguf import quants

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "golden", "gguf", "kquants.json")


def blocks(rng, n, size, scale_offsets):
    raw = rng.integers(0, 256, size=(n, size), dtype=np.uint8)
    for off in scale_offsets:  # finite, moderate f16 scales
        vals = (rng.standard_normal(n) * 0.01).astype(np.float16)
        raw[:, off:off + 2] = vals.view(np.uint8).reshape(n, 2)
    return raw


def main():
    rng = np.random.default_rng(18)
    out = {}
    for name, qtype, size, offsets in [("q4_k", Q.Q4_K, 144, [0, 2]), ("q6_k", Q.Q6_K, 210, [208])]:
        raw = blocks(rng, 3, size, offsets)
        values = quants.dequantize(raw, qtype).reshape(-1)
        out[name] = {"bytes": raw.reshape(-1).tolist(), "values": [float(v) for v in values]}
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(out, f)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
