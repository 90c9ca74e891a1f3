#!/usr/bin/env python3
"""Writes tests/golden/qat/fake_quant.json: the reference of engine/numerics/intx_quant.h and the QAT
fake-quant kernels (tests/test_fake_quant.cpp), docs/numerics.md §2.

- 8da4w activations / weights and the int4 embedding: torchao's IntxFakeQuantizer (the STE mask is
  where torch's autograd lets the gradient through).
- int4 weight-only: torchao's Int4WeightFakeQuantizer (bf16 activations).
- q4_0 / q8_0: torchao has no llama.cpp block formats, so this is a NumPy transcription of ggml's
  quantize_row_q4_0_ref / quantize_row_q8_0_ref written from docs/numerics.md (f32 math, fp16 scale).

Values are stored as doubles (every f32 and bf16 value is exact in f64), so comparisons are bit-exact.

Pinned: torch 2.15, torchao 0.18.0, numpy.
Run: python3 tools/goldens/gen_qat.py
"""
import json
import os

import numpy as np
import torch
import torchao
from torchao.quantization.qat.fake_quantize_config import (
    Int4WeightFakeQuantizeConfig,
    IntxFakeQuantizeConfig,
)
from torchao.quantization.qat.fake_quantizer import Int4WeightFakeQuantizer, IntxFakeQuantizer

assert torchao.__version__.startswith("0.18"), torchao.__version__

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "golden", "qat", "fake_quant.json")


def tensor_json(t):
    t = t.detach()
    if t.dtype in (torch.bool, torch.int32, torch.int64, torch.uint8):
        return {"shape": list(t.shape), "dtype": "i64", "data": t.to(torch.int64).flatten().tolist()}
    return {"shape": list(t.shape), "dtype": "f64", "data": t.to(torch.float64).flatten().tolist()}


def np_json(a, dtype="f64"):
    a = np.asarray(a)
    data = a.astype(np.int64 if dtype == "i64" else np.float64).flatten().tolist()
    return {"shape": list(a.shape), "dtype": dtype, "data": data}


def intx_case(x, config):
    fq = IntxFakeQuantizer(config)
    xr = x.detach().clone().requires_grad_(True)
    y = fq(xr)
    y.sum().backward()
    return {
        "x": tensor_json(x),
        "fq": tensor_json(y),
        "mask": tensor_json(xr.grad != 0),
        "scale": tensor_json(fq.scale.float()),
        "zero_point": tensor_json(fq.zero_point.to(torch.int64)),
    }


def weight_edges(rows, cols, gen):
    """Random normal weights with groups that hit the rounding and eps edge cases (group 32)."""
    w = torch.randn(rows, cols, generator=gen) * 0.05
    # max|w| = 7.5 makes scale 1 exactly: +7.5 -> 7.5 rounds to 8 and clamps to 7; ties round to even.
    tie = torch.tensor([7.5, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5, -3.5, 6.5, -7.5, 4.5, 5.5, -4.5, -5.5, -6.5])
    w[0, :16] = tie
    w[0, 16:32] = -tie
    w[1, :32] = 0.0  # an all-zero group: scale = eps
    w[2, :32] = -torch.linspace(0, 3, 32)  # only non-positive values
    return w


def activation_edges(rows, cols, gen):
    x = torch.randn(rows, cols, generator=gen) * 3
    x[0] = torch.rand(cols, generator=gen) + 0.5  # all positive: range still includes 0, zp = -128
    x[1] = 0.0  # all zero: scale = eps
    x[2] = -torch.rand(cols, generator=gen) * 1e-3  # tiny negative: zp = 127
    x[3, :] = torch.linspace(-1.0, 1.55, cols)
    return x


def q4_0_ref(x):
    """ggml quantize_row_q4_0_ref + dequantize_row_q4_0, blocks of 32, f32 math."""
    x = np.asarray(x, dtype=np.float32).reshape(-1, 32)
    fq = np.zeros_like(x)
    codes = np.zeros(x.shape, dtype=np.int64)
    mask = np.ones(x.shape, dtype=np.int64)
    scales = np.zeros(x.shape[0], dtype=np.float32)
    for b, blk in enumerate(x):
        amax, mx = np.float32(0), np.float32(0)
        for v in blk:
            if amax < abs(v):
                amax, mx = abs(v), v
        d = np.float32(mx / np.float32(-8))
        inv = np.float32(1) / d if d != 0 else np.float32(0)
        d16 = np.float32(np.float16(d))
        scales[b] = d16
        for j, v in enumerate(blk):
            t = np.float32(np.float32(v * inv) + np.float32(8.5))
            q = min(15, int(t))  # int() truncates toward zero, as ggml's (int8_t) cast
            codes[b, j] = q
            mask[b, j] = int(t < 16)
            fq[b, j] = np.float32(np.float32(q - 8) * d16)
    return fq, codes, mask, scales


def q8_0_ref(x):
    """ggml quantize_row_q8_0_ref + dequantize_row_q8_0, blocks of 32, f32 math, roundf."""
    x = np.asarray(x, dtype=np.float32).reshape(-1, 32)
    fq = np.zeros_like(x)
    codes = np.zeros(x.shape, dtype=np.int64)
    scales = np.zeros(x.shape[0], dtype=np.float32)
    for b, blk in enumerate(x):
        amax = np.float32(np.max(np.abs(blk)))
        d = np.float32(amax / np.float32(127))
        inv = np.float32(1) / d if d != 0 else np.float32(0)
        d16 = np.float32(np.float16(d))
        scales[b] = d16
        for j, v in enumerate(blk):
            t = np.float32(v * inv)
            q = int(np.sign(t) * np.floor(np.abs(t) + np.float32(0.5)))  # roundf: half away from zero
            codes[b, j] = q
            fq[b, j] = np.float32(np.float32(q) * d16)
    return fq, codes, scales


def ggml_edges(gen):
    w = (torch.randn(6, 64, generator=gen) * 0.1).numpy().astype(np.float32)
    w[0, :32] = 0.0  # all-zero block: d = 0, id = 0, every code 8 (q4_0) / 0 (q8_0)
    w[1, :32] = np.linspace(-1, 0.5, 32)  # largest magnitude negative: d > 0
    w[1, 5] = 1.0  # |max| tie with -1: the first one (-1 at index 0) wins
    w[2, :32] = np.arange(32, dtype=np.float32) - 16  # q8_0: x/d hits .5 ties; q4_0: x*id+8.5 integers
    w[3, :32] = np.float32(0.5) * (np.arange(32, dtype=np.float32) - 16) / 16
    return w


def main():
    gen = torch.Generator().manual_seed(20261123)
    cases = {}
    act_cfg = IntxFakeQuantizeConfig(
        torch.int8, "per_token", is_symmetric=False, scale_precision=torch.float32, eps=torch.finfo(torch.float32).eps
    )
    cases["act_8da4w_f32"] = intx_case(activation_edges(6, 48, gen), act_cfg)
    cases["act_8da4w_bf16"] = intx_case(activation_edges(5, 64, gen).to(torch.bfloat16), act_cfg)
    for g in (32, 64, 128, 256):
        cfg = IntxFakeQuantizeConfig(torch.int4, group_size=g, is_symmetric=True, scale_precision=torch.float32)
        cases[f"weight_8da4w_g{g}_f32"] = intx_case(weight_edges(4, 256, gen), cfg)
    cfg32 = IntxFakeQuantizeConfig(torch.int4, group_size=32, is_symmetric=True, scale_precision=torch.float32)
    cases["weight_8da4w_g32_bf16"] = intx_case(weight_edges(4, 128, gen).to(torch.bfloat16), cfg32)
    # Embedding tables: N(0, 1) rows, the 8da4w weight formulas with group 32 along embedding_dim.
    cases["embedding_g32_f32"] = intx_case(torch.randn(10, 64, generator=gen), cfg32)

    for g, dtype in ((128, torch.float32), (32, torch.bfloat16)):
        w = (torch.randn(4, 256, generator=gen) * 0.05).to(dtype)
        w[0, :g] = 0.0  # max - min = 0: the 1e-6 clamp
        fq = Int4WeightFakeQuantizer(Int4WeightFakeQuantizeConfig(group_size=g, activation_dtype=torch.bfloat16))
        cases[f"int4wo_g{g}_{'f32' if dtype == torch.float32 else 'bf16'}"] = {
            "x": tensor_json(w),
            "fq": tensor_json(fq(w)),
        }

    w = ggml_edges(gen)
    fq, codes, mask, scales = q4_0_ref(w)
    cases["q4_0"] = {
        "x": np_json(w),
        "fq": np_json(fq.reshape(w.shape)),
        "codes": np_json(codes.reshape(w.shape), "i64"),
        "mask": np_json(mask.reshape(w.shape), "i64"),
        "scale": np_json(scales.reshape(w.shape[0], -1)),
    }
    fq, codes, scales = q8_0_ref(w)
    cases["q8_0"] = {
        "x": np_json(w),
        "fq": np_json(fq.reshape(w.shape)),
        "codes": np_json(codes.reshape(w.shape), "i64"),
        "scale": np_json(scales.reshape(w.shape[0], -1)),
    }

    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump({"generator": "tools/goldens/gen_qat.py", "torchao": torchao.__version__, "cases": cases}, f)
        f.write("\n")
    print("wrote", os.path.normpath(OUT), os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
