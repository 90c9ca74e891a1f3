#!/usr/bin/env python3
"""Writes tests/golden/optim/{adamw,sgd,lr_schedule,clip_grad}.json: references from torch.optim (CPU, f32,
foreach=False), transformers' LR schedules driving torch's LambdaLR, and torch.nn.utils.clip_grad_norm_.

Optimizer cases store, for parameter j: p<j>_init, grad<j> ([steps, *shape]), has_grad<j> ([steps], 0 where
the parameter gets no gradient that step) and after every step p<j>, plus the state (exp_avg<j> and
exp_avg_sq<j>, or momentum_buffer<j>); lr ([steps]) is changed before each step; hparams holds the options.
f32 values are stored exactly (as f64).

Usage: python3 tools/goldens/gen_optim.py [output directory]
"""
import json
import math
import os
import sys

import torch
import transformers

torch.manual_seed(20261201)

out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "tests",
                                                              "golden", "optim")


def encode(t):
    t = torch.as_tensor(t).detach()
    data = []
    for v in t.to(torch.float64).reshape(-1).tolist():
        data.append(("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")) if not math.isfinite(v) else v)
    return {"shape": list(t.shape), "dtype": "f64", "data": data}


def write(name, cases):
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, name)
    with open(path, "w") as f:
        json.dump({"generator": "tools/goldens/gen_optim.py", "torch": torch.__version__,
                   "transformers": transformers.__version__, "cases": cases}, f, separators=(",", ":"))
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


# Shapes: a matrix, a vector that misses its gradient on one step, and a row longer than one AVX-512
# vector with a remainder (torch's vectorized loop plus its scalar tail).
SHAPES = [(4, 6), (7,), (1, 37)]
LRS = [1e-2, 3e-3, 5e-3, 2e-2, 1e-3, 7e-4]
# (parameter, step) pairs without a gradient: parameter 2 starts late, so its update count (the AdamW bias
# corrections) and its momentum buffer lag the others.
SKIP = {(1, 2), (1, 3), (2, 0)}


def run_optimizer(make, state_names, grad_scale):
    params = [torch.randn(s) for s in SHAPES]
    grads = [torch.randn((len(LRS),) + s) * grad_scale for s in SHAPES]
    leaves = [p.clone().requires_grad_() for p in params]
    opt = make(leaves)
    case = {"lr": encode(torch.tensor(LRS, dtype=torch.float64))}
    history = {j: {"p": []} | {n: [] for n in state_names} for j in range(len(SHAPES))}
    for step, lr in enumerate(LRS):
        for group in opt.param_groups:
            group["lr"] = lr
        for j, leaf in enumerate(leaves):
            leaf.grad = None if (j, step) in SKIP else grads[j][step].clone()
        opt.step()
        for j, leaf in enumerate(leaves):
            history[j]["p"].append(leaf.detach().clone())
            for n in state_names:
                st = opt.state[leaf]
                # A parameter without state yet (no gradient so far) reads as zeros.
                history[j][n].append(st[n].clone() if n in st else torch.zeros(SHAPES[j]))
    for j in range(len(SHAPES)):
        case[f"p{j}_init"] = encode(params[j])
        case[f"grad{j}"] = encode(grads[j])
        case[f"has_grad{j}"] = encode(torch.tensor([0.0 if (j, s) in SKIP else 1.0 for s in range(len(LRS))]))
        for n, values in history[j].items():
            case[f"{n}{j}"] = encode(torch.stack(values))
    return case


adamw_cases = {}
for name, (beta1, beta2, eps, wd) in {
    "default_betas_wd": (0.9, 0.999, 1e-8, 0.1),
    "no_weight_decay": (0.9, 0.999, 1e-8, 0.0),
    # beta1 < 0.5 takes the other branch of torch's lerp; a larger eps matters against small moments.
    "small_beta1_eps": (0.3, 0.95, 1e-3, 0.05),
}.items():
    case = run_optimizer(
        lambda ps: torch.optim.AdamW(ps, lr=LRS[0], betas=(beta1, beta2), eps=eps, weight_decay=wd, foreach=False),
        ["exp_avg", "exp_avg_sq"], 0.1)
    case["hparams"] = encode(torch.tensor([beta1, beta2, eps, wd], dtype=torch.float64))
    adamw_cases[name] = case
write("adamw.json", adamw_cases)

sgd_cases = {}
for name, (momentum, dampening, nesterov, wd) in {
    "plain": (0.0, 0.0, False, 0.0),
    "momentum": (0.9, 0.0, False, 0.0),
    "dampening_weight_decay": (0.9, 0.3, False, 0.01),
    "nesterov": (0.8, 0.0, True, 0.0),
    "weight_decay": (0.0, 0.0, False, 0.05),
}.items():
    case = run_optimizer(
        lambda ps: torch.optim.SGD(ps, lr=LRS[0], momentum=momentum, dampening=dampening, nesterov=nesterov,
                                   weight_decay=wd, foreach=False),
        ["momentum_buffer"] if momentum != 0 else [], 1.0)
    case["hparams"] = encode(torch.tensor([momentum, dampening, 1.0 if nesterov else 0.0, wd], dtype=torch.float64))
    sgd_cases[name] = case
write("sgd.json", sgd_cases)


# Schedules: the lr LambdaLR gives each of steps 0..total (the lr of update number `step`).
def schedule_lrs(base_lr, total, make):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base_lr)
    sched = make(opt)
    lrs = []
    for _ in range(total + 1):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def linear_with_floor(base_lr, warmup, total, min_lr, step):
    """qtune's linear schedule with a floor (transformers has none): min_lr + (base - min_lr) * factor after the
    warmup, with transformers' linear factor."""
    if step < warmup:
        return base_lr * (float(step) / float(max(1, warmup)))
    factor = max(0.0, float(total - step) / float(max(1, total - warmup)))
    return min_lr + (base_lr - min_lr) * factor


sched_cases = {}
opt_mod = transformers.optimization
for name, (kind, base_lr, warmup, total, min_lr) in {
    "constant_warmup": ("constant", 3e-4, 7, 20, 0.0),
    "constant_no_warmup": ("constant", 1e-3, 0, 5, 0.0),
    "linear_warmup": ("linear", 2e-5, 10, 57, 0.0),
    "linear_no_warmup": ("linear", 1e-3, 0, 13, 0.0),
    "cosine_warmup": ("cosine", 5e-4, 9, 61, 0.0),
    "cosine_warmup_equals_total": ("cosine", 1e-3, 4, 4, 0.0),
    "cosine_min_lr": ("cosine", 3e-4, 5, 50, 3e-5),
    "linear_min_lr": ("linear", 3e-4, 5, 40, 1e-5),
}.items():
    if kind == "constant":
        lrs = schedule_lrs(base_lr, total, lambda o: opt_mod.get_constant_schedule_with_warmup(o, warmup))
    elif kind == "linear" and min_lr == 0.0:
        lrs = schedule_lrs(base_lr, total, lambda o: opt_mod.get_linear_schedule_with_warmup(o, warmup, total))
    elif kind == "linear":
        lrs = [linear_with_floor(base_lr, warmup, total, min_lr, s) for s in range(total + 1)]
    elif min_lr == 0.0:
        lrs = schedule_lrs(base_lr, total, lambda o: opt_mod.get_cosine_schedule_with_warmup(o, warmup, total))
    else:
        lrs = schedule_lrs(base_lr, total, lambda o: opt_mod.get_cosine_with_min_lr_schedule_with_warmup(
            o, warmup, total, min_lr=min_lr))
    kind_code = {"constant": 0.0, "linear": 1.0, "cosine": 2.0}[kind]
    sched_cases[name] = {
        "config": encode(torch.tensor([kind_code, base_lr, warmup, total, min_lr], dtype=torch.float64)),
        "lr": encode(torch.tensor(lrs, dtype=torch.float64)),
    }
write("lr_schedule.json", sched_cases)

clip_cases = {}
clip_grads = [torch.randn(5, 3), torch.randn(11), torch.randn(2, 40) * 0.5]
for name, max_norm in {"clipped": 1.5, "not_clipped": 1000.0}.items():
    leaves = [torch.zeros_like(g, requires_grad=True) for g in clip_grads]
    for leaf, g in zip(leaves, clip_grads):
        leaf.grad = g.clone()
    total = torch.nn.utils.clip_grad_norm_(leaves, max_norm)
    case = {"max_norm": encode(torch.tensor([max_norm], dtype=torch.float64)),
            "total_norm": encode(total.reshape(1))}
    for j, (leaf, g) in enumerate(zip(leaves, clip_grads)):
        case[f"grad{j}"] = encode(g)
        case[f"clipped{j}"] = encode(leaf.grad)
    clip_cases[name] = case
write("clip_grad.json", clip_cases)
