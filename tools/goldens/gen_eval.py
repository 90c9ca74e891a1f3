#!/usr/bin/env python3
"""Writes tests/golden/eval/: evaluation data and the log-likelihoods transformers assigns to it, for
the tests of models/evaluate and `qtune eval`.

The model is tests/golden/tiny_llama_sp (bf16 weights written by transformers), loaded in f32 with eager
attention; the tokenizer is its tokenizer.model through the Python `sentencepiece` package. Every number
comes from plain torch: log_softmax over the logits of one unbatched forward per window, gathered at the
target ids. Nothing here calls qtune.

  docs.jsonl       documents of several lengths (shorter than, between and longer than the windows)
  hellaswag.jsonl  multiple-choice examples (ctx, endings of different lengths, label as int or string)
  expected.json    per window length: each document's log-likelihood and scored token count, the
                   corpus metrics `qtune eval --json` prints; per hellaswag example: each ending's
                   log-likelihood, and acc / acc_norm

Perplexity windows follow lm-evaluation-harness's loglikelihood_rolling (get_rolling_token_windows with
context_len=1, then make_disjoint_window), re-derived here from its documented behaviour: the tokens are
encoded without BOS; the first window is BOS + tokens[:L-1] predicting tokens[:L]; each later window
predicts the next L tokens from the token just before them; the last, partial window still feeds a
full L tokens (earlier ones as context) and scores only its new tokens. Words count like the harness's
`len(re.split(r"\\s+", text))`, bytes are UTF-8 bytes.

Multiple choice follows the harness's _encode_pair: trailing whitespace of ctx moves to the
continuation " " + ending, the continuation's tokens are encode(ctx + continuation)[len(encode(ctx)):],
and the model sees BOS + encode(ctx) + those tokens. acc_norm divides by the ending's UTF-8 byte count.

Made with torch 2.15.0, transformers 5.23.0 and sentencepiece (versions written into expected.json).
Run: python3 tools/goldens/gen_eval.py   (from the repository root)
"""
import json
import math
import os
import re

import sentencepiece as spm
import torch
import transformers
from transformers import LlamaForCausalLM

MODEL = os.path.join("tests", "golden", "tiny_llama_sp")
OUT = os.path.join("tests", "golden", "eval")
BOS = 1
WINDOWS = [16, 64, 256]  # 256 = max_position_embeddings, the default window

DOCUMENTS = [
    "Be careful!",
    "You will be married within a year, and divorced within two.\n",
    "Q: What is the difference between a duck?\nA: One of its legs is both the same.\n\n"
    "There is no time like the present for postponing what you ought to be doing.\t"
    "Über alles: the café was naïve -- it thought \"tomorrow\" would never come.\n"
    "Your lucky number is 3552664958674928.  Watch for it everywhere.\n",
    "  Leading spaces, then a short line.",
]

HELLASWAG = [
    {"ctx": "You will be married within a year, and",
     "endings": ["divorced within two.", "a cat.", "you will be happy for the rest of your life, or so they say.",
                 "no."], "label": 3},
    {"ctx": "Q: What is the difference between a duck?\nA:",
     "endings": ["One of its legs is both the same.", "Banana.", "It cannot fly when it is asleep in a tree.",
                 "Nothing."], "label": "0"},
    {"ctx": "There is no time like the present for",
     "endings": ["postponing what you ought to be doing.", "cheese", "it.", "a very long ending about nothing."],
     "label": "2"},
    {"ctx": "Your lucky number is ",
     "endings": ["seven.", "3552664958674928.", "the one you least expect.", "zero"], "label": "2"},
    {"ctx": "Don't look now, but",
     "endings": ["the man in the moon is laughing.", "yes", "there is a spider on your shoulder.", "ok."],
     "label": 2},
    {"ctx": "A fool and his money",
     "endings": ["are soon parted.", "are the best of friends.", "go.", "were last seen on a train to Paris."],
     "label": 1},
]


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def sequence_log_likelihood(model, seq, scored):
    """Summed log-probability of the last `scored` tokens of seq, each given everything before it."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([seq[:-1]])).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    targets = torch.tensor(seq[1:])
    per_token = logp.gather(1, targets[:, None])[:, 0].double()
    return per_token[len(per_token) - scored:].sum().item()


def rolling_windows(tokens, length):
    """(sequence, scored) pairs: sequence[:-1] is the model input, its last `scored` targets count."""
    seq = [BOS] + tokens  # seq[i + 1] == tokens[i]
    done, out = 0, []
    while done < len(tokens):
        end = done + min(length, len(tokens) - done)  # tokens predicted once this window is scored
        start = max(0, end - length)
        out.append((seq[start:end + 1], end - done))
        done = end
    return out


def corpus_metrics(ll, tokens, words, nbytes, documents):
    return {"documents": documents, "tokens": tokens, "words": words, "bytes": nbytes, "log_likelihood": ll,
            "token_loss": -ll / tokens, "token_perplexity": math.exp(-ll / tokens),
            "word_perplexity": math.exp(-ll / words), "byte_perplexity": math.exp(-ll / nbytes),
            "bits_per_byte": -ll / nbytes / math.log(2)}


def main():
    os.makedirs(OUT, exist_ok=True)
    sp = spm.SentencePieceProcessor(model_file=os.path.join(MODEL, "tokenizer.model"))
    model = LlamaForCausalLM.from_pretrained(MODEL, dtype=torch.float32, attn_implementation="eager").eval()
    write_jsonl(os.path.join(OUT, "docs.jsonl"), [{"text": d} for d in DOCUMENTS])
    write_jsonl(os.path.join(OUT, "hellaswag.jsonl"), HELLASWAG)

    words = [len(re.split(r"\s+", d)) for d in DOCUMENTS]
    nbytes = [len(d.encode("utf-8")) for d in DOCUMENTS]
    token_lists = [sp.encode(d) for d in DOCUMENTS]
    perplexity = {}
    for length in WINDOWS:
        docs = []
        for tokens in token_lists:
            windows = rolling_windows(tokens, length)
            assert sum(s for _, s in windows) == len(tokens)
            docs.append({"log_likelihood": sum(sequence_log_likelihood(model, q, s) for q, s in windows),
                         "tokens": len(tokens), "windows": len(windows)})
        ll = sum(d["log_likelihood"] for d in docs)
        perplexity[str(length)] = {"documents": docs, "corpus": corpus_metrics(
            ll, sum(len(t) for t in token_lists), sum(words), sum(nbytes), len(DOCUMENTS))}
        print(length, [(d["tokens"], d["windows"], round(d["log_likelihood"], 4)) for d in docs])

    examples, acc, acc_norm = [], 0, 0
    for ex in HELLASWAG:
        ctx, lls = ex["ctx"], []
        n_spaces = len(ctx) - len(ctx.rstrip())
        context = ctx[:len(ctx) - n_spaces]
        for ending in ex["endings"]:
            continuation = ctx[len(context):] + " " + ending
            context_ids = sp.encode(context)
            continuation_ids = sp.encode(context + continuation)[len(context_ids):]
            seq = [BOS] + context_ids + continuation_ids
            lls.append(sequence_log_likelihood(model, seq, len(continuation_ids)))
        label = int(ex["label"])
        pred = max(range(len(lls)), key=lambda i: (lls[i], -i))
        norm = [ll / len(e.encode("utf-8")) for ll, e in zip(lls, ex["endings"])]
        pred_norm = max(range(len(norm)), key=lambda i: (norm[i], -i))
        acc += pred == label
        acc_norm += pred_norm == label
        examples.append({"log_likelihoods": lls, "label": label, "pred": pred, "pred_norm": pred_norm})
        print(label, pred, pred_norm, [round(x, 3) for x in lls])
    n = len(HELLASWAG)
    hellaswag = {"examples": examples, "acc": acc / n, "acc_norm": acc_norm / n, "count": n}
    print("acc", acc / n, "acc_norm", acc_norm / n)

    with open(os.path.join(OUT, "expected.json"), "w", encoding="utf-8") as f:
        json.dump({"versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                                "sentencepiece": spm.__version__},
                   "perplexity": perplexity, "hellaswag": hellaswag}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
