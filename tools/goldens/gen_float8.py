#!/usr/bin/env python3
"""Writes tests/golden/float8.json: torchao's float8 training numerics (docs/numerics.md §3) for the three
recipes of Float8LinearConfig, on CPU.

For each recipe: the inputs x [N, in], w [out, in], dy [N, out] (f32); for each fp8 operand of the
three GEMMs, torchao's scale and fp8 codes (hp_tensor_to_float8_dynamic with the recipe's cast config
and the axiswise dim torchao's Float8Linear uses); and y, dx, dw from torchao's Float8Linear with
emulate=True (dequantize both operands, multiply in f32), which runs on CPU. The rows and columns of
the inputs span a few binades so per-row and per-tensor scales differ.

Generated with torch 2.15 and torchao 0.18.0 (the versions are also written into the file).
Run: python3 tools/goldens/gen_float8.py   (from the repository root)
"""
import dataclasses
import json
import math

import torch
import torchao
from torchao.float8 import Float8LinearConfig, convert_to_float8_training
from torchao.float8.config import ScalingType
from torchao.float8.float8_scaling_utils import hp_tensor_to_float8_dynamic
from torchao.float8.float8_training_tensor import GemmInputRole, LinearMMConfig

torch.manual_seed(20261124)
N, IN, OUT = 16, 32, 16


def enc(t, dtype="f64"):
    t = t.detach().cpu()
    if dtype == "i64":
        return {"shape": list(t.shape), "dtype": "i64", "data": [int(v) for v in t.reshape(-1).tolist()]}
    return {"shape": list(t.shape), "dtype": "f64", "data": t.to(torch.float64).reshape(-1).tolist()}


def spread(rows, cols):
    # Each row and each column gets its own power-of-two-ish magnitude (not exactly a power of two).
    r = torch.exp2(torch.randint(-6, 7, (rows, 1)).float()) * (1 + torch.rand(rows, 1))
    c = torch.exp2(torch.randint(-3, 4, (1, cols)).float())
    return (torch.randn(rows, cols) * r * c).bfloat16().float()  # 8 significant bits: short JSON


# (GEMM operand name, cast config field, axiswise dim, role): torchao float8_linear.py's choices.
OPERANDS = [
    ("output.x", "cast_config_input", -1, GemmInputRole.INPUT),
    ("output.w", "cast_config_weight", -1, GemmInputRole.WEIGHT),
    ("grad_input.dy", "cast_config_grad_output", -1, GemmInputRole.GRAD_OUTPUT),
    ("grad_input.w", "cast_config_weight_for_grad_input", 0, GemmInputRole.WEIGHT),
    ("grad_weight.dy", "cast_config_grad_output_for_grad_weight", 0, GemmInputRole.GRAD_OUTPUT),
    ("grad_weight.x", "cast_config_input_for_grad_weight", 0, GemmInputRole.INPUT),
]

cases = {}
for recipe in ["tensorwise", "rowwise", "rowwise_with_gw_hp"]:
    cfg = dataclasses.replace(Float8LinearConfig.from_recipe_name(recipe), emulate=True)
    x, w, dy = spread(N, IN), spread(OUT, IN), spread(N, OUT)
    entry = {"x": enc(x), "w": enc(w), "dy": enc(dy)}
    sources = {"x": x, "w": w, "dy": dy}
    for name, field, axis, role in OPERANDS:
        cc = getattr(cfg, field)
        if cc.scaling_type == ScalingType.DISABLED:
            continue
        src = sources[name.split(".")[1]]
        t = hp_tensor_to_float8_dynamic(
            src, cc.target_dtype, LinearMMConfig(), gemm_input_role=role,
            scaling_granularity=cc.scaling_granularity, axiswise_dim=axis,
            round_scales_to_power_of_2=cfg.round_scales_to_power_of_2)
        scale = t._scale.reshape(1, 1) if t._scale.numel() == 1 else t._scale
        entry[name + ".scale"] = enc(scale)
        entry[name + ".codes"] = enc(t._data.view(torch.uint8).to(torch.int64), "i64")
    lin = torch.nn.Sequential(torch.nn.Linear(IN, OUT, bias=False))
    with torch.no_grad():
        lin[0].weight.copy_(w)
    convert_to_float8_training(lin, config=cfg)
    xg = x.clone().requires_grad_(True)
    y = lin(xg)
    y.backward(dy)
    entry["y"] = enc(y)
    entry["dx"] = enc(xg.grad)
    entry["dw"] = enc(lin[0].weight.grad)
    cases[recipe] = entry

with open("tests/golden/float8.json", "w") as f:
    json.dump({"torch": torch.__version__, "torchao": torchao.__version__, "shapes": [N, IN, OUT], "cases": cases}, f)
