#!/usr/bin/env python3
"""Writes tests/golden/ops_a.json: PyTorch reference values for the ops of ops/elementwise.h,
ops/reduce.h, ops/matmul.h, ops/rmsnorm.h, ops/rope.h, ops/activation.h and ops/embedding.h.

Each case stores its inputs, the output `out`, a weight `w` and `grad_<input>` = d sum(out * w) /
d input. Inputs are drawn in f64 from a fixed torch seed; the f32/bf16 cases round them first and
store the rounded values, so the C++ test feeds exactly what torch saw. RMSNorm and RoPE references
for f32/bf16 come from transformers' own LlamaRMSNorm / LlamaRotaryEmbedding / apply_rotary_pos_emb.

Generated with torch 2.15.0+cu132 and transformers 5.23.0 (the versions are also written into the file).
Run: python3 tools/goldens/gen_ops_a.py   (from the repository root)
"""
import json
import math
import os

import torch
import transformers
from transformers import LlamaConfig
from transformers.models.llama import modeling_llama

torch.manual_seed(20261123)
F64 = torch.float64
cases = {}


def enc(t):
    t = t.detach().cpu()
    if t.dtype in (torch.int64, torch.int32):
        return {"shape": list(t.shape), "dtype": "i64", "data": [int(v) for v in t.reshape(-1).tolist()]}
    vals = []
    for v in t.to(F64).reshape(-1).tolist():
        vals.append("nan" if math.isnan(v) else ("inf" if v == math.inf else ("-inf" if v == -math.inf else v)))
    return {"shape": list(t.shape), "dtype": "f64", "data": vals}


def rnd(*shape, low=-1.0, high=1.0):
    # Multiples of 1/128 keep the JSON short; outputs and gradients are stored at full precision.
    return torch.round((torch.rand(tuple(shape), dtype=F64) * (high - low) + low) * 128) / 128


def scalar(v):
    return torch.tensor(v, dtype=F64)


def case(name, fn, inputs, params=None, dtype=F64, grads=True):
    """inputs: name -> f64 tensor (cast to `dtype` before the call); params: extra stored values."""
    leaves = {}
    for k, v in inputs.items():
        if v.is_floating_point():
            leaves[k] = v.to(dtype).detach().requires_grad_(grads)
        else:
            leaves[k] = v
    out = fn(**leaves)
    w = rnd(*out.shape).to(dtype)
    entry = {k: enc(v) for k, v in leaves.items()}
    entry["out"] = enc(out)
    entry["w"] = enc(w)
    if grads:
        (out * w).sum().backward()
        for k, v in leaves.items():
            if v.is_floating_point():
                entry["grad_" + k] = enc(v.grad)
    for k, v in (params or {}).items():
        entry[k] = enc(v)
    cases[name] = entry


# ---- elementwise (broadcasting) ------------------------------------------------------------------
case("add", lambda a, b: a + b, {"a": rnd(3, 4), "b": rnd(4)})
case("sub", lambda a, b: a - b, {"a": rnd(2, 1, 3), "b": rnd(4, 3)})
case("mul", lambda a, b: a * b, {"a": rnd(3, 4), "b": rnd(3, 1)})
case("div", lambda a, b: a / b, {"a": rnd(2, 3), "b": rnd(2, 3, low=0.5, high=2.0)})
case("exp", lambda x: torch.exp(x), {"x": rnd(2, 5)})
case("log", lambda x: torch.log(x), {"x": rnd(2, 5, low=0.2, high=3.0)})
case("sqrt", lambda x: torch.sqrt(x), {"x": rnd(2, 5, low=0.2, high=3.0)})
case("rsqrt", lambda x: torch.rsqrt(x), {"x": rnd(2, 5, low=0.2, high=3.0)})
case("square", lambda x: torch.square(x), {"x": rnd(2, 5)})
case("pow", lambda x: torch.pow(x, 2.5), {"x": rnd(2, 5, low=0.2, high=3.0)}, {"exponent": scalar(2.5)})
case("scale", lambda x: x * -1.75, {"x": rnd(2, 5)}, {"alpha": scalar(-1.75)})

# ---- reductions ----------------------------------------------------------------------------------
case("sum_all", lambda x: x.sum(), {"x": rnd(3, 4)})
case("sum_dims", lambda x: x.sum(dim=(0, 2)), {"x": rnd(2, 3, 4)}, {"dims": torch.tensor([0, 2])})
case("sum_keepdim", lambda x: x.sum(dim=1, keepdim=True), {"x": rnd(2, 3, 4)}, {"dims": torch.tensor([1])})
case("mean_all", lambda x: x.mean(), {"x": rnd(3, 4)})
case("mean_dims", lambda x: x.mean(dim=(-1,)), {"x": rnd(2, 3, 4)}, {"dims": torch.tensor([-1])})

# ---- matmul / linear -------------------------------------------------------------------------------
def mm(ta, tb):
    def f(a, b):
        return (a.transpose(-1, -2) if ta else a) @ (b.transpose(-1, -2) if tb else b)
    return f


flags = lambda ta, tb: {"trans_a": torch.tensor(int(ta)), "trans_b": torch.tensor(int(tb))}
case("matmul", mm(False, False), {"a": rnd(3, 4), "b": rnd(4, 5)}, flags(False, False))
case("matmul_ta", mm(True, False), {"a": rnd(4, 3), "b": rnd(4, 5)}, flags(True, False))
case("matmul_tb", mm(False, True), {"a": rnd(3, 4), "b": rnd(5, 4)}, flags(False, True))
case("matmul_tatb", mm(True, True), {"a": rnd(2, 4, 3), "b": rnd(2, 5, 4)}, flags(True, True))
case("matmul_batch_shared", mm(False, False), {"a": rnd(2, 3, 3, 4), "b": rnd(4, 2)}, flags(False, False))
case("matmul_batch_bcast", mm(False, True), {"a": rnd(2, 1, 3, 4), "b": rnd(3, 5, 4)}, flags(False, True))
case("linear_bias", lambda x, weight, bias: torch.nn.functional.linear(x, weight, bias),
     {"x": rnd(2, 3, 4), "weight": rnd(5, 4), "bias": rnd(5)})
case("linear_nobias", lambda x, weight: torch.nn.functional.linear(x, weight), {"x": rnd(3, 4), "weight": rnd(5, 4)})

# ---- activations / embedding -------------------------------------------------------------------------
case("silu", lambda x: torch.nn.functional.silu(x), {"x": rnd(3, 7, low=-6.0, high=6.0)})
case("swiglu", lambda gate, up: torch.nn.functional.silu(gate) * up,
     {"gate": rnd(2, 3, 5, low=-6.0, high=6.0), "up": rnd(2, 3, 5)})
case("embedding", lambda weight, ids: torch.nn.functional.embedding(ids, weight),
     {"weight": rnd(6, 4), "ids": torch.tensor([[1, 5, 1], [0, 3, 1]])})

# ---- rmsnorm -------------------------------------------------------------------------------------------
EPS = 1e-5


def rmsnorm_f64(x, weight):
    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS))


def hf_rmsnorm(x, weight):
    norm = modeling_llama.LlamaRMSNorm(weight.shape[0], eps=EPS).to(weight.dtype)
    with torch.no_grad():
        norm.weight.copy_(weight)
    norm.weight.requires_grad_(False)
    return norm(x)


rms_x, rms_w = rnd(2, 2, 16, low=-2.0, high=2.0), rnd(16, low=0.5, high=1.5)
case("rmsnorm", rmsnorm_f64, {"x": rms_x, "weight": rms_w}, {"eps": scalar(EPS)})
case("rmsnorm_f32", lambda x, weight: hf_rmsnorm(x, weight), {"x": rms_x, "weight": rms_w}, {"eps": scalar(EPS)},
     dtype=torch.float32, grads=False)
# Gradients of the f32 path, from torch's autograd through the same formula in f32.
case("rmsnorm_f32_grad", rmsnorm_f64, {"x": rms_x, "weight": rms_w}, {"eps": scalar(EPS)}, dtype=torch.float32)
# HF rounds x * rstd to bf16 before the weight multiply; qtune's fused kernel rounds once, so the
# test allows one bf16 ulp against this case ...
case("rmsnorm_bf16_hf", lambda x, weight: hf_rmsnorm(x, weight), {"x": rms_x, "weight": rms_w}, {"eps": scalar(EPS)},
     dtype=torch.bfloat16, grads=False)


# ... and matches this one (the same f32 math rounded once to bf16) to within a rounding tie.
def rmsnorm_bf16_fused(x, weight):
    h = x.float()
    return (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + EPS) * weight.float()).to(torch.bfloat16)


case("rmsnorm_bf16_fused", rmsnorm_bf16_fused, {"x": rms_x, "weight": rms_w}, {"eps": scalar(EPS)},
     dtype=torch.bfloat16, grads=False)

# ---- rope ------------------------------------------------------------------------------------------------
def rope_config(head_dim, theta, llama3):
    params = {"rope_type": "default", "rope_theta": theta}
    if llama3:
        params = {"rope_type": "llama3", "rope_theta": theta, "factor": 8.0, "low_freq_factor": 1.0,
                  "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
    return LlamaConfig(hidden_size=head_dim * 2, num_attention_heads=2, head_dim=head_dim, rope_parameters=params,
                       max_position_embeddings=131072)


def hf_rope(x, positions, head_dim, theta, llama3):
    rotary = modeling_llama.LlamaRotaryEmbedding(rope_config(head_dim, theta, llama3))
    cos, sin = rotary(x, positions[None, :])  # [1, T, D]
    # apply_rotary_pos_emb works on [B, H, T, D]; qtune's layout is [B, T, H, D].
    q = x.transpose(1, 2)
    q_embed, _ = modeling_llama.apply_rotary_pos_emb(q, q, cos, sin)
    return q_embed.transpose(1, 2), rotary.inv_freq


def rope_f64(x, positions, theta):
    d = x.shape[-1]
    inv = 1.0 / theta ** (torch.arange(0, d, 2, dtype=F64) / d)
    ang = positions.to(F64)[:, None] * inv[None, :]
    cos, sin = torch.cat((ang.cos(), ang.cos()), -1), torch.cat((ang.sin(), ang.sin()), -1)
    cos, sin = cos[None, :, None, :], sin[None, :, None, :]
    rot = torch.cat((-x[..., d // 2:], x[..., : d // 2]), -1)
    return x * cos + rot * sin


pos = torch.tensor([0, 1, 2, 7, 30])
case("rope", lambda x, positions: rope_f64(x, positions, 10000.0), {"x": rnd(1, 5, 2, 8), "positions": pos},
     {"theta": scalar(10000.0)})
rope_x = rnd(1, 4, 2, 16)
for name, llama3, positions in (("rope_f32", False, torch.tensor([0, 1, 5, 40])),
                                ("rope_llama3_f32", True, torch.tensor([0, 3, 9, 64]))):
    out, inv = hf_rope(rope_x.float(), positions, 16, 10000.0, llama3)
    cases[name] = {"x": enc(rope_x.float()), "positions": enc(positions), "out": enc(out), "inv_freq": enc(inv),
                   "theta": enc(scalar(10000.0)), "llama3": enc(torch.tensor(int(llama3)))}

doc = {"generator": "tools/goldens/gen_ops_a.py", "torch": torch.__version__, "transformers": transformers.__version__,
       "cases": cases}
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "golden", "ops_a.json")
with open(path, "w") as f:
    json.dump(doc, f, separators=(",", ":"))
print(f"wrote {os.path.normpath(path)}: {len(cases)} cases, {os.path.getsize(path)} bytes")
