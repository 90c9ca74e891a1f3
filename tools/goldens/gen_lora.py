#!/usr/bin/env python3
"""Writes tests/golden/lora/ (tests/test_lora*.cpp), docs/numerics.md §4.

- linear.json: LoRALinear forward and backward on fixed W, b, A, B, x and upstream gradient g:
  y = x W^T + b + (alpha / r) * (x A^T) B^T, with torch autograd's dx, dA, dB (dropout 0).
- peft_adapter/: a real HF PEFT adapter (peft's save_pretrained) for the tiny Llama of
  tests/golden/llama/untied_mha, every projection and lm_head targeted, A and B drawn at random so the
  adapter changes the logits; peft_adapter/reference.safetensors holds tokens [B, T] and peft's logits.
  The script also checks that peft's merge_and_unload gives the same logits (the merge qtune implements).

Check mode: `python3 tools/goldens/gen_lora.py --check DIR` loads an adapter directory written by qtune
(tests/test_lora_peft.cpp writes one when QTUNE_LORA_ADAPTER_OUT=DIR is set) with peft and compares its
logits to the ones qtune wrote beside it (DIR/qtune_logits.safetensors).

Pinned: torch 2.15, transformers 5.23, peft 0.21.2.
Run: python3 tools/goldens/gen_lora.py
"""
import json
import os
import sys

import peft
import torch
import transformers
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file

assert peft.__version__ == "0.21.2", peft.__version__
assert transformers.__version__.startswith("5.23"), transformers.__version__

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
OUT = os.path.join(ROOT, "tests", "golden", "lora")
BASE = os.path.join(ROOT, "tests", "golden", "llama", "untied_mha")
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"]
RANK, ALPHA = 4, 8


def tensor_json(t):
    t = t.detach()
    return {"shape": list(t.shape), "dtype": "f64", "data": t.to(torch.float64).flatten().tolist()}


def linear_case():
    gen = torch.Generator().manual_seed(5)
    n_in, n_out, rank, alpha = 12, 10, 4, 8.0
    w = torch.randn(n_out, n_in, generator=gen) * 0.3
    b = torch.randn(n_out, generator=gen) * 0.1
    a = (torch.rand(rank, n_in, generator=gen) * 2 - 1) / n_in**0.5
    bb = torch.randn(n_out, rank, generator=gen) * 0.2
    x = torch.randn(2, 3, n_in, generator=gen)
    g = torch.randn(2, 3, n_out, generator=gen)
    xr, ar, br = (t.clone().requires_grad_(True) for t in (x, a, bb))
    y = torch.nn.functional.linear(xr, w, b) + (alpha / rank) * ((xr @ ar.T) @ br.T)
    y.backward(g)
    case = {"alpha": torch.tensor([alpha]), "weight": w, "bias": b, "lora_a": a, "lora_b": bb, "x": x, "grad_y": g,
            "y": y, "grad_x": xr.grad, "grad_lora_a": ar.grad, "grad_lora_b": br.grad}
    with open(os.path.join(OUT, "linear.json"), "w") as f:
        json.dump({"cases": {"linear": {k: tensor_json(v) for k, v in case.items()}}}, f)


def base_model():
    return transformers.LlamaForCausalLM.from_pretrained(BASE, dtype=torch.float32).eval()


def tokens():
    gen = torch.Generator().manual_seed(11)
    return torch.randint(0, 83, (2, 7), generator=gen)


def peft_case():
    model = get_peft_model(base_model(), LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=0.0,
                                                    target_modules=TARGETS, task_type="CAUSAL_LM"))
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    out = os.path.join(OUT, "peft_adapter")
    model.peft_config["default"].base_model_name_or_path = "tests/golden/llama/untied_mha"
    # With lm_head targeted peft would also store the whole head ("lm_head.base_layer.weight");
    # qtune's adapters hold only A and B.
    model.save_pretrained(out, save_embedding_layers=False)
    ids = tokens()
    with torch.no_grad():
        logits = model(input_ids=ids).logits
        merged = model.merge_and_unload()(input_ids=ids).logits
        plain = base_model()(input_ids=ids).logits
    assert torch.allclose(merged, logits, atol=1e-5), (merged - logits).abs().max()
    assert (logits - plain).abs().max() > 0.1, "the adapter must change the logits"
    save_file({"tokens": ids.contiguous(), "logits": logits.contiguous()}, os.path.join(out, "reference.safetensors"))
    # peft writes target_modules from a set (its order varies run to run); fix it so reruns are identical.
    config_path = os.path.join(out, "adapter_config.json")
    with open(config_path) as f:
        config = json.load(f)
    config["target_modules"] = sorted(config["target_modules"])
    with open(config_path, "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
    # save_pretrained writes a README.md model card; the test data needs only the two adapter files.
    readme = os.path.join(out, "README.md")
    if os.path.exists(readme):
        os.remove(readme)


def check(adapter_dir):
    model = PeftModel.from_pretrained(base_model(), adapter_dir).eval()
    expected = load_file(os.path.join(adapter_dir, "qtune_logits.safetensors"))
    with torch.no_grad():
        logits = model(input_ids=expected["tokens"]).logits
    diff = (logits - expected["logits"]).abs().max().item()
    print(f"peft {peft.__version__} loaded {adapter_dir}: max |logits - qtune's| = {diff:.3g}")
    assert diff < 1e-4


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        check(sys.argv[2])
    else:
        os.makedirs(OUT, exist_ok=True)
        linear_case()
        peft_case()
