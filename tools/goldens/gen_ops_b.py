#!/usr/bin/env python3
"""Writes tests/golden/ops_b.json: PyTorch references for attention, softmax, log_softmax and
cross-entropy. Every case stores f64 inputs, the output, the weights w and the gradients of
sum(out * w) with respect to each differentiable input.

Usage: python3 tools/goldens/gen_ops_b.py [output path]
"""
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

torch.manual_seed(20261123)


def encode(t):
    t = t.detach()
    if t.dtype == torch.int64:
        return {"shape": list(t.shape), "dtype": "i64", "data": t.reshape(-1).tolist()}
    data = []
    for v in t.to(torch.float64).reshape(-1).tolist():
        data.append(("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")) if not math.isfinite(v) else v)
    return {"shape": list(t.shape), "dtype": "f64", "data": data}


def with_grads(fn, inputs, names):
    """Runs fn on leaf copies of inputs; returns a dict of inputs, out, w and grad_<name>."""
    leaves = [x.clone().requires_grad_(x.is_floating_point()) for x in inputs]
    out = fn(*leaves)
    w = torch.rand(out.shape, dtype=torch.float64) * 2 - 1
    (out * w).sum().backward()
    case = {name: encode(x) for name, x in zip(names, inputs)}
    case["out"] = encode(out)
    case["w"] = encode(w)
    for name, leaf in zip(names, leaves):
        if leaf.grad is not None:
            case["grad_" + name] = encode(leaf.grad)
    return case


def attention(q, k, v, causal):
    """q: [B, Tq, Hq, D], k/v: [B, Tk, Hkv, D]; causal with qtune's offset Tk - Tq (bottom-right)."""
    tq, tk, hq, hkv = q.shape[1], k.shape[1], q.shape[2], k.shape[2]
    mask = None
    if causal:
        i = torch.arange(tq).unsqueeze(1)
        j = torch.arange(tk).unsqueeze(0)
        mask = j <= i + (tk - tq)
    # torch's is_causal aligns the mask top-left, so the bottom-right mask is passed explicitly.
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask,
                                         enable_gqa=hq != hkv)
    return out.transpose(1, 2)


def rand(*shape, scale=1.0):
    return (torch.rand(shape, dtype=torch.float64) * 2 - 1) * scale


cases = {}
attn_shapes = {
    # name: (B, Tq, Tk, Hq, Hkv, D, causal)
    "attn_causal_gqa": (1, 5, 5, 4, 2, 6, True),
    "attn_kv_cache": (1, 3, 7, 2, 1, 4, True),
    "attn_noncausal": (1, 4, 6, 2, 2, 8, False),
    "attn_long_causal": (1, 67, 67, 1, 1, 3, True),
}
for name, (b, tq, tk, hq, hkv, d, causal) in attn_shapes.items():
    q, k, v = rand(b, tq, hq, d, scale=2.0), rand(b, tk, hkv, d, scale=2.0), rand(b, tk, hkv, d)
    cases[name] = with_grads(lambda q, k, v: attention(q, k, v, causal), [q, k, v], ["q", "k", "v"])

# Rows of very different magnitude, including one whose naive exp would overflow.
sx = rand(4, 6, scale=3.0)
sx[1] *= 300.0
cases["softmax_last"] = with_grads(lambda x: torch.softmax(x, -1), [sx], ["x"])
cases["log_softmax_last"] = with_grads(lambda x: torch.log_softmax(x, -1), [sx], ["x"])
sx0 = rand(3, 4, 2, scale=3.0)
cases["softmax_dim0"] = with_grads(lambda x: torch.softmax(x, 0), [sx0], ["x"])
cases["log_softmax_dim1"] = with_grads(lambda x: torch.log_softmax(x, 1), [sx0], ["x"])

logits2 = rand(6, 7, scale=4.0)
targets2 = torch.tensor([3, -100, 0, 6, 2, -100], dtype=torch.int64)
cases["ce_2d"] = with_grads(lambda x, t: F.cross_entropy(x, t, ignore_index=-100), [logits2, targets2],
                            ["logits", "targets"])
logits3 = rand(2, 3, 5, scale=4.0)
targets3 = torch.tensor([[1, 4, -100], [0, 2, 3]], dtype=torch.int64)
cases["ce_3d"] = with_grads(lambda x, t: F.cross_entropy(x.reshape(-1, 5), t.reshape(-1), ignore_index=-100),
                            [logits3, targets3], ["logits", "targets"])

# Casts: f32 values (exact in f64) through bf16 and f16 and back, with ties to even, overflow,
# subnormals, NaN and inf among random values.
special_bits = [0x3F808000, 0x3F818000, 0x3F800001, 0x7F7FFFFF, 0x00000001, 0x00400000, 0x80808000, 0x477FF000,
                0x477FE000, 0x33800000, 0x7FC00000, 0x7F800000, 0xFF800000, 0x00000000, 0x80000000]
special = torch.tensor([b - (1 << 32) if b >= (1 << 31) else b for b in special_bits], dtype=torch.int32)
cast_x = torch.cat([special.view(torch.float32), (torch.rand(33) * 2 - 1) * 1000]).to(torch.float32)
cases["cast_rounding"] = {
    "x": encode(cast_x.double()),
    "bf16": encode(cast_x.to(torch.bfloat16).to(torch.float32).double()),
    "f16": encode(cast_x.to(torch.float16).to(torch.float32).double()),
}

out_path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "tests",
                                                               "golden", "ops_b.json")
with open(out_path, "w") as f:
    json.dump({"generator": "tools/goldens/gen_ops_b.py", "torch": torch.__version__, "cases": cases}, f,
              separators=(",", ":"))
print(f"wrote {out_path} ({os.path.getsize(out_path)} bytes, torch {torch.__version__})")
