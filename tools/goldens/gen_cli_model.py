#!/usr/bin/env python3
"""Writes tests/golden/tiny_llama_sp/: a small Llama checkpoint written by transformers, with a
SentencePiece tokenizer (identity normalization, as Llama's), for the CLI tests of `qtune info` and `qtune generate`.

The tokenizer (BPE, 512 pieces, byte fallback) is trained by the Python `sentencepiece` package on
the Debian `fortunes` corpus; the model (hidden 64, 2 layers, GQA 4/2 heads, tied embeddings) is
trained for a few hundred steps with PyTorch on the same text so that its greedy continuations are
not near-ties, then saved in bf16 with `save_pretrained`. reference_generation.json records
transformers' greedy `generate` (f32 compute from the bf16 weights) for a few prompts: the C++
generation must reproduce those ids, and print the text sentencepiece decodes from prompt + continuation.

Generated with torch 2.15.0, transformers 5.23.0 and sentencepiece (versions written into the JSON).
Run: python3 tools/goldens/gen_cli_model.py   (from the repository root; needs /usr/share/games/fortunes)
"""
import glob
import io
import json
import os
import random
import tempfile

import sentencepiece as spm
import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

OUT = os.path.join("tests", "golden", "tiny_llama_sp")
CORPUS = "/usr/share/games/fortunes"
PROMPTS = ["The", "Once upon a time", "Q: What is", "Über"]


def corpus_text():
    texts = []
    for path in sorted(glob.glob(os.path.join(CORPUS, "*"))):
        if os.path.isdir(path) or path.endswith((".dat", ".u8")) or os.path.islink(path):
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            texts.append(f.read())
    return "\n".join(texts)


def main():
    torch.manual_seed(20261123)
    random.seed(20261123)
    os.makedirs(OUT, exist_ok=True)
    text = corpus_text()
    lines = [l for l in text.split("\n") if l.strip() and l.strip() != "%"]

    with tempfile.TemporaryDirectory() as tmp:
        train_file = os.path.join(tmp, "train.txt")
        with open(train_file, "w", encoding="utf-8") as f:
            f.write("\n".join(lines))
        spm.SentencePieceTrainer.train(
            input=train_file, model_prefix=os.path.join(tmp, "sp"), vocab_size=512, model_type="bpe",
            byte_fallback=True, character_coverage=0.9995, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
            normalization_rule_name="identity", num_threads=2, minloglevel=2)
        with open(os.path.join(tmp, "sp.model"), "rb") as f:
            model_bytes = f.read()
    with open(os.path.join(OUT, "tokenizer.model"), "wb") as f:
        f.write(model_bytes)
    sp = spm.SentencePieceProcessor(model_proto=model_bytes)

    config = LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=True, bos_token_id=1,
                         eos_token_id=2, attn_implementation="eager")
    model = LlamaForCausalLM(config)
    ids = []
    for line in lines:
        ids.extend([1] + sp.encode(line))
    data = torch.tensor(ids, dtype=torch.long)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    seq, batch = 64, 32
    for step in range(400):
        starts = torch.randint(0, len(data) - seq - 1, (batch,))
        x = torch.stack([data[s:s + seq] for s in starts])
        y = torch.stack([data[s + 1:s + seq + 1] for s in starts])
        loss = model(input_ids=x, labels=None).logits.flatten(0, 1)
        loss = torch.nn.functional.cross_entropy(loss, y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == 399:
            print(f"step {step} loss {loss.item():.3f}")

    model = model.to(torch.bfloat16)
    model.save_pretrained(OUT, safe_serialization=True)
    # The reference generation computes in f32 from the bf16 weights, as `qtune generate` does by default.
    model = LlamaForCausalLM.from_pretrained(OUT, dtype=torch.float32, attn_implementation="eager").eval()
    cases = []
    for prompt in PROMPTS:
        prompt_ids = [1] + sp.encode(prompt)
        with torch.no_grad():
            out = model.generate(torch.tensor([prompt_ids]), max_new_tokens=24, do_sample=False,
                                 eos_token_id=2, pad_token_id=2)
        new_ids = out[0, len(prompt_ids):].tolist()
        cases.append({"prompt": prompt, "prompt_ids": prompt_ids, "new_ids": new_ids,
                      "text": sp.decode(prompt_ids + new_ids)})
        print(repr(cases[-1]["text"]))
    with open(os.path.join(OUT, "reference_generation.json"), "w", encoding="utf-8") as f:
        json.dump({"versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                                "sentencepiece": spm.__version__},
                   "max_new_tokens": 24, "cases": cases}, f, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    main()
