#!/usr/bin/env python3
"""Writes tests/golden/llama/<variant>/: tiny random Hugging Face LlamaForCausalLM checkpoints and the
PyTorch reference of one training step on each, for the parity tests of models/llama.

Each variant directory holds what `save_pretrained(safe_serialization=True)` writes (config.json,
model.safetensors) and reference.safetensors with
  tokens   i64 [B, T]  fixed input ids
  targets  i64 [B, T]  next-token targets, a few set to -100 (ignored)
  logits   f32 [B, T, V]
  loss     f32 [1]     mean cross-entropy of logits vs targets (no shift: targets are aligned already)
  grad.<parameter name>  f32, d loss / d parameter, for every parameter (tied: the embedding once)
and the library versions in its metadata. Everything runs in f32 with eager attention.

Variants:
  tied_gqa_llama3    tied embeddings, 2 kv heads for 4 query heads, llama3 rope scaling
  untied_mha         separate lm_head, multi-head attention, plain RoPE
  untied_gqa_headdim separate lm_head, GQA, llama3 scaling, head_dim 12 (not hidden / heads = 8)

Weights are drawn with larger spreads than a real init (std 0.2 for projections, 0.5 for the
embedding, norms around 1) so that logits are far from uniform and the comparison means something.

Made with torch 2.15.0 and transformers 5.23.0.
Usage: python3 tools/goldens/gen_llama.py [output directory, default tests/golden/llama]
"""
import json
import os
import shutil
import sys

import safetensors.torch
import torch
import torch.nn.functional as F
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

BATCH, SEQ = 2, 8

BASE = dict(
    vocab_size=83,
    hidden_size=32,
    intermediate_size=44,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=64,
    rms_norm_eps=1e-5,
    bos_token_id=1,
    eos_token_id=2,
)
LLAMA3 = {
    "rope_type": "llama3",
    "factor": 4.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 16,
}

VARIANTS = {
    "tied_gqa_llama3": dict(tie_word_embeddings=True, num_key_value_heads=2, rope_theta=500.0, rope_scaling=LLAMA3),
    "untied_mha": dict(tie_word_embeddings=False, num_key_value_heads=4, rope_theta=10000.0),
    "untied_gqa_headdim": dict(
        tie_word_embeddings=False, num_key_value_heads=2, head_dim=12, rope_theta=1000.0, rope_scaling=LLAMA3
    ),
}


def make_config(extra):
    kwargs = dict(BASE)
    kwargs.update(extra)
    scaling = kwargs.pop("rope_scaling", None)
    theta = kwargs.pop("rope_theta")
    # transformers 5 takes RoPE as rope_parameters (theta included).
    rope = {"rope_type": "default", "rope_theta": theta}
    if scaling is not None:
        rope = dict(scaling, rope_theta=theta)
    config = LlamaConfig(rope_parameters=rope, **kwargs)
    config._attn_implementation = "eager"
    return config


def randomize(model, gen):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            elif "embed_tokens" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))


def write_variant(out_dir, name, extra, seed):
    gen = torch.Generator().manual_seed(seed)
    config = make_config(extra)
    model = LlamaForCausalLM(config).to(torch.float32)
    randomize(model, gen)
    model.train()  # no dropout in Llama; train mode only so that nothing is cached

    tokens = torch.randint(0, config.vocab_size, (BATCH, SEQ), generator=gen)
    targets = torch.randint(0, config.vocab_size, (BATCH, SEQ), generator=gen)
    targets[0, 3] = -100
    targets[1, 0] = -100
    targets[1, 7] = -100

    logits = model(input_ids=tokens, use_cache=False).logits
    loss = F.cross_entropy(logits.reshape(-1, config.vocab_size), targets.reshape(-1), ignore_index=-100)
    loss.backward()

    d = os.path.join(out_dir, name)
    shutil.rmtree(d, ignore_errors=True)
    model.save_pretrained(d, safe_serialization=True)
    ref = {
        "tokens": tokens.contiguous(),
        "targets": targets.contiguous(),
        "logits": logits.detach().contiguous(),
        "loss": loss.detach().reshape(1),
    }
    for pname, p in model.named_parameters():
        ref["grad." + pname] = p.grad.detach().contiguous()
    meta = {"torch": torch.__version__, "transformers": transformers.__version__, "generator": "tools/goldens/gen_llama.py"}
    safetensors.torch.save_file(ref, os.path.join(d, "reference.safetensors"), metadata=meta)
    with open(os.path.join(d, "config.json")) as f:
        saved = json.load(f)
    print(f"{name}: loss {loss.item():.6f}, {sum(p.numel() for p in model.parameters())} parameters, "
          f"rope {saved.get('rope_parameters')}")


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "tests",
                                                                 "golden", "llama")
    torch.manual_seed(0)
    for i, (name, extra) in enumerate(VARIANTS.items()):
        write_variant(out_dir, name, extra, 20261123 + i)


if __name__ == "__main__":
    main()
