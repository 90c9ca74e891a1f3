#!/usr/bin/env python3
"""Writes tests/golden/llama/mixed_precision.safetensors: PyTorch's reference of mixed-precision training
(bf16 weights and compute, f32 master weights in the optimizer) on the untied_mha golden Llama, for
tests/test_mixed_precision.cpp.

The model is tests/golden/llama/untied_mha loaded in bf16 with eager attention; its tokens and targets come
from that directory's reference.safetensors. Each of STEPS steps: bf16 forward, cross-entropy of the logits
cast to f32 (targets aligned, -100 ignored), backward; then torch.optim.AdamW (foreach=False) steps the f32
masters with the bf16 gradients widened, and each bf16 weight becomes its master rounded to nearest even.
The learning rate is small enough that most single updates are below half a bf16 spacing of the weights, so
pure bf16 training would lose them: only masters accumulate them.

Tensors: loss f32 [STEPS] (before each update), master.<parameter name> f32 after the last step, and
initial.<parameter name> f32 (the bf16 weights widened) for the deltas. Metadata: versions and settings.

Usage: python3 tools/goldens/gen_mixed_precision.py [golden llama directory, default tests/golden/llama]
"""
import os
import sys

import safetensors.torch
import torch
import torch.nn.functional as F
import transformers
from transformers import LlamaForCausalLM

STEPS = 3
LR = 1e-4


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "../../tests/golden/llama")
    src = os.path.join(root, "untied_mha")
    ref = safetensors.torch.load_file(os.path.join(src, "reference.safetensors"))
    tokens, targets = ref["tokens"], ref["targets"]
    torch.manual_seed(0)
    model = LlamaForCausalLM.from_pretrained(src, dtype=torch.bfloat16, attn_implementation="eager")
    model.train()
    names = [n for n, _ in model.named_parameters()]
    params = [p for _, p in model.named_parameters()]
    masters = [p.detach().float().clone().requires_grad_(True) for p in params]
    out = {"initial." + n: m.detach().clone() for n, m in zip(names, masters)}
    opt = torch.optim.AdamW(masters, lr=LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, foreach=False)
    losses = []
    for _ in range(STEPS):
        logits = model(input_ids=tokens).logits
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)
        loss.backward()
        for m, p in zip(masters, params):
            m.grad = p.grad.float()
            p.grad = None
        opt.step()
        opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            for m, p in zip(masters, params):
                p.copy_(m)  # round to nearest even
        losses.append(loss.item())
    out["loss"] = torch.tensor(losses, dtype=torch.float32)
    for n, m in zip(names, masters):
        out["master." + n] = m.detach().clone()
    meta = {"torch": torch.__version__, "transformers": transformers.__version__, "steps": str(STEPS), "lr": str(LR),
            "model": "untied_mha, bf16, eager attention; AdamW on f32 masters, weight decay 0"}
    path = os.path.join(root, "mixed_precision.safetensors")
    safetensors.torch.save_file(out, path, metadata=meta)
    print(f"wrote {path}: losses {losses}")


if __name__ == "__main__":
    main()
