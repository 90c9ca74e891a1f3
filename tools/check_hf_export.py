#!/usr/bin/env python3
"""Checks a directory written by `qtune export` with Hugging Face transformers.

    check_hf_export.py EXPORT_DIR LOGITS_JSON [--peft BASE_DIR ADAPTER_DIR] [--atol A]

- Loads EXPORT_DIR with AutoModelForCausalLM and AutoTokenizer.
- LOGITS_JSON is what `qtune eval --model DIR [--adapter DIR] --dump-logits FILE --prompt TEXT` wrote
  ({"prompt", "tokens", "logits" [T][V]}): the tokenizer must encode the prompt to the same ids (after
  qtune's bos), and the model's logits on those ids must match qtune's within --atol.
- --peft: peft's merge_and_unload of ADAPTER_DIR into BASE_DIR must hold the same weights as EXPORT_DIR
  (within 1e-5 in f32; within one rounding step of the export's dtype otherwise).

Exits 1 on any mismatch, printing what differs. Tested with torch 2.15, transformers 5.23, peft 0.21.2.
"""
import argparse
import json
import sys

import torch
import transformers


def load(path):
    return transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def check_tokens(export_dir, expected, config_bos):
    tokenizer = transformers.AutoTokenizer.from_pretrained(export_dir)
    ids = tokenizer(expected["prompt"], add_special_tokens=False)["input_ids"]
    # qtune starts the prompt with bos; a tokenizer.json without tokenizer_config.json leaves transformers
    # without a bos token, so the model's config names it then.
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else config_bos
    qtune_ids = expected["tokens"]
    if bos is not None and qtune_ids[:1] == [bos]:
        qtune_ids = qtune_ids[1:]
    if ids != qtune_ids:
        return [f"tokenizer: transformers encodes {expected['prompt']!r} as {ids}, qtune as {qtune_ids}"]
    print(f"tokenizer: {len(ids)} ids match qtune's")
    return []


def check_logits(model, expected, atol):
    tokens = torch.tensor([expected["tokens"]])
    with torch.no_grad():
        logits = model(input_ids=tokens).logits[0]
    diff = (logits - torch.tensor(expected["logits"])).abs().max().item()
    print(f"logits: {tuple(logits.shape)}, max |transformers - qtune| = {diff:.3g} (atol {atol})")
    return [] if diff <= atol else [f"logits differ by {diff:.3g} > {atol}"]


def check_peft(model, export_dtype, base_dir, adapter_dir):
    import peft

    merged = peft.PeftModel.from_pretrained(load(base_dir), adapter_dir).merge_and_unload().eval()
    ours, theirs = model.state_dict(), merged.state_dict()
    if ours.keys() != theirs.keys():
        return [f"peft's merged model has tensors {sorted(theirs.keys() ^ ours.keys())} that the export does not share"]
    problems, worst = [], 0.0
    for name, ref in theirs.items():
        ref = ref.to(export_dtype).float()  # what peft's merge would store in the export's dtype
        diff = (ours[name] - ref).abs().max().item()
        # One rounding step of the export dtype at the tensor's scale: the f32 merge may round the other way.
        tol = 1e-5 if export_dtype == torch.float32 else torch.finfo(export_dtype).eps * ref.abs().max().item()
        worst = max(worst, diff)
        if diff > tol:
            problems.append(f"{name}: max |qtune - peft merge_and_unload| = {diff:.3g} > {tol:.3g}")
    print(f"peft {peft.__version__} merge_and_unload: {len(theirs)} tensors, max |difference| = {worst:.3g}")
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("export_dir")
    parser.add_argument("logits_json")
    parser.add_argument("--peft", nargs=2, metavar=("BASE_DIR", "ADAPTER_DIR"))
    parser.add_argument("--atol", type=float, default=1e-4)
    args = parser.parse_args()

    with open(args.logits_json) as f:
        expected = json.load(f)
    model = load(args.export_dir)
    export_dtype = transformers.AutoConfig.from_pretrained(args.export_dir).dtype
    export_dtype = getattr(torch, export_dtype) if isinstance(export_dtype, str) else export_dtype
    problems = check_tokens(args.export_dir, expected, model.config.bos_token_id) + check_logits(model, expected, args.atol)
    if args.peft:
        problems += check_peft(model, export_dtype, *args.peft)
    for p in problems:
        print(f"MISMATCH {p}", file=sys.stderr)
    print("OK" if not problems else f"{len(problems)} mismatches")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
