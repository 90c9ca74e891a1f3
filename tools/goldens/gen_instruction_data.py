#!/usr/bin/env python3
"""Writes the instruction-data goldens under tests/golden/data/ (tests/test_instruction_data.cpp):

  alpaca.jsonl, chat.jsonl   a handful of examples in each layout
  instruction_goldens.json   per file and option set, the tokens and labels each example must become,
                             and how many examples truncation left without any target (dropped)

The prompts are built here from docs/data.md independently of qtune and tokenized by the Python
`sentencepiece` package with tests/golden/tiny_llama_sp/tokenizer.model: each segment (a prompt or a
response) encoded on its own, BOS before each prompt, EOS after each response. labels[i] is the target
for tokens[i]: tokens[i + 1] when that token is trained (a response token, or any with train_on_input),
else -100.

Usage: python3 tools/goldens/gen_instruction_data.py   (pip install sentencepiece)
"""
import json
import os

import sentencepiece as spm

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "golden", "data")
MODEL = os.path.join(ROOT, "tests", "golden", "tiny_llama_sp", "tokenizer.model")
IGNORE = -100

ALPACA = [
    {"instruction": "Give three tips for staying healthy.", "input": "",
     "output": "1. Eat well.\n2. Exercise.\n3. Sleep enough."},
    {"instruction": "Translate to French.", "input": "Good morning, friend!", "output": "Bonjour, mon ami !"},
    {"instruction": "Name the capital.", "output": "Paris"},
    {"instruction": "Résumé en une ligne ?", "input": None, "output": "Oui — ça va."},
]
CHAT = [
    {"messages": [{"role": "user", "content": "Hello there"}, {"role": "assistant", "content": "Hi! How can I help?"}]},
    {"messages": [{"role": "system", "content": "You are terse."},
                  {"role": "user", "content": "  What is 2+2?  "}, {"role": "assistant", "content": "4"},
                  {"role": "user", "content": "And 3+3?"}, {"role": "assistant", "content": "6\n"}]},
]

NO_INPUT = ("Below is an instruction that describes a task. Write a response that appropriately completes the "
            "request.\n\n### Instruction:\n{instruction}\n\n### Response:\n")
WITH_INPUT = ("Below is an instruction that describes a task, paired with an input that provides further context. "
              "Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}"
              "\n\n### Input:\n{input}\n\n### Response:\n")


def alpaca_segments(ex):
    template = WITH_INPUT if ex.get("input") else NO_INPUT
    prompt = template.format(instruction=ex["instruction"], input=ex.get("input") or "")
    return [(prompt, True, False, False), (ex["output"], False, True, True)]


def chat_segments(ex):
    messages = ex["messages"]
    system = ""
    if messages[0]["role"] == "system":
        system = "<<SYS>>\n" + messages[0]["content"].strip() + "\n<</SYS>>\n\n"
        messages = messages[1:]
    segments = []
    for i in range(0, len(messages), 2):
        user, assistant = messages[i]["content"].strip(), messages[i + 1]["content"].strip()
        segments.append(("[INST] " + (system if i == 0 else "") + user + " [/INST]", True, False, False))
        segments.append((assistant, False, True, True))
    return segments


def encode(sp, segments, train_on_input, max_seq_len):
    tokens, trained = [], []
    for text, bos, eos, is_response in segments:
        ids = ([sp.bos_id()] if bos else []) + sp.encode(text) + ([sp.eos_id()] if eos else [])
        tokens += ids
        trained += [is_response or train_on_input] * len(ids)
    labels = [tokens[i + 1] if trained[i + 1] else IGNORE for i in range(len(tokens) - 1)] + [IGNORE]
    if max_seq_len:
        tokens, labels = tokens[:max_seq_len], labels[:max_seq_len]
    return {"tokens": tokens, "labels": labels}


def main():
    sp = spm.SentencePieceProcessor(model_file=MODEL)
    os.makedirs(OUT, exist_ok=True)
    goldens = {"sentencepiece": spm.__version__}
    # max_seq_len cuts some examples short; it leaves the second alpaca example no target (dropped).
    for name, examples, build, cut in [("alpaca", ALPACA, alpaca_segments, 120), ("chat", CHAT, chat_segments, 60)]:
        with open(os.path.join(OUT, name + ".jsonl"), "w", encoding="utf-8") as f:
            for ex in examples:
                f.write(json.dumps(ex, ensure_ascii=False) + "\n")
            f.write("\n")  # a blank line, which the reader ignores
        for suffix, train_on_input, max_seq_len in [("", False, 0), ("_train_on_input", True, 0), ("_cut", False, cut)]:
            encoded = [encode(sp, build(ex), train_on_input, max_seq_len) for ex in examples]
            kept = [e for e in encoded if any(label != IGNORE for label in e["labels"])]
            goldens[name + suffix] = {"max_seq_len": max_seq_len, "examples": kept,
                                      "dropped": len(encoded) - len(kept)}
    with open(os.path.join(OUT, "instruction_goldens.json"), "w") as f:
        json.dump(goldens, f, indent=None, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
