#!/usr/bin/env python3
"""Writes tests/golden/gguf/kquant_encode.json: f32 rows and the bytes llama.cpp's own quantizer (ggml's
ggml_quantize_chunk without an importance matrix, what llama-quantize calls) turns them into, as Q4_K, Q5_K,
Q6_K and Q5_0, for qtune's encoders (tests/test_ggml_k_quantize.cpp); and the values the rows round to as Q8_K,
llama.cpp's rounding of a K-quant linear's input. The rows cover the search's corner cases:
Gaussian weights, heavy outliers, all-positive and all-negative runs, constant and all-zero sub-blocks, tiny
values near the f16 subnormals, and values large enough to saturate the 6-bit scales.

Needs libggml-base from a llama.cpp build (the peer build docs/gguf.md describes; never committed):
  python3 tools/goldens/gen_gguf_kquant_encode.py /path/to/llama.cpp/build/bin/libggml-base.so
Pinned: llama.cpp 0c1e570 (llama-cpp-python 0.3.36), numpy.
"""
import ctypes
import json
import os
import sys

import numpy as np

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "golden", "gguf", "kquant_encode.json")
TYPES = {"q5_0": (6, 32, 22), "q4_k": (12, 256, 144), "q5_k": (13, 256, 176), "q6_k": (14, 256, 210)}


def rows(rng):
    n = 256
    out = []
    out.append(rng.standard_normal(n) * 0.02)                      # a typical weight row
    r = rng.standard_normal(n) * 0.02
    r[rng.integers(0, n, 6)] *= 40                                  # outliers
    out.append(r)
    out.append(np.abs(rng.standard_normal(n)) * 0.05 + 0.01)       # all positive: the offset is clamped to 0
    out.append(-np.abs(rng.standard_normal(n)) * 0.05)             # all negative
    r = rng.standard_normal(n) * 0.03
    r[0:32] = 0.0                                                   # an all-zero sub-block
    r[64:80] = 0.0125                                               # a constant run
    out.append(r)
    out.append(rng.standard_normal(n) * 1e-6)                       # tiny: f16 scales near the subnormals
    out.append(rng.standard_normal(n) * 300.0)                      # large
    r = rng.uniform(-1, 1, n)
    r[rng.integers(0, n, 30)] = 0.0
    out.append(r)
    for scale in (0.01, 0.1, 1.0):                                  # more Gaussian rows for the search's ties
        out.append(rng.standard_normal(n) * scale)
    out.append(np.zeros(n))                                         # all zero
    for i in range(28):                                             # bulk: the rare branches of the search
        out.append((rng.laplace(size=n) if i % 2 else rng.standard_normal(n)) * 0.02)  # heavy tails, then Gaussian
    return np.stack(out).astype(np.float32)


def main():
    lib = ctypes.CDLL(sys.argv[1])
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    lib.ggml_quantize_init.argtypes = [ctypes.c_int]
    x = rows(np.random.default_rng(18))
    golden = {"rows": x.shape[0], "n_per_row": x.shape[1],
              "input_f32_le": x.astype("<f4").tobytes().hex()}
    for name, (type_id, block, block_bytes) in TYPES.items():
        lib.ggml_quantize_init(type_id)
        dst = np.zeros(x.shape[0] * x.shape[1] // block * block_bytes, dtype=np.uint8)
        size = lib.ggml_quantize_chunk(type_id, x.ctypes.data, dst.ctypes.data, 0, x.shape[0], x.shape[1], None)
        assert size == dst.size, (name, size, dst.size)
        golden[name] = dst.tobytes().hex()
    # Q8_K, how llama.cpp's CPU backend rounds a K-quant linear's input: the values it stands for.
    blocks = np.zeros(x.size // 256 * 292, dtype=np.uint8)
    values = np.zeros(x.size, dtype=np.float32)
    lib.quantize_row_q8_K_ref.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    lib.dequantize_row_q8_K.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    lib.quantize_row_q8_K_ref(x.ctypes.data, blocks.ctypes.data, x.size)
    lib.dequantize_row_q8_K(blocks.ctypes.data, values.ctypes.data, x.size)
    golden["q8_k_values_f32_le"] = values.astype("<f4").tobytes().hex()
    with open(OUT, "w") as f:
        json.dump(golden, f)
        f.write("\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
