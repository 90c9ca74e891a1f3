#!/usr/bin/env python3
"""PyTorch peer of `qtune bench train`: the same Llama shape, batch and optimizer, trained by PyTorch on the CPU
(or with --device cuda on the GPU).

Times forward + cross-entropy + backward + AdamW (lr 1e-4) per step for each mode:
  eager f32, eager bf16 autocast, compile f32, compile bf16 autocast   (f32 weights and optimizer state)
  eager bf16, compile bf16                                               (bf16 weights, as `--dtype bf16`)
and prints a markdown table with the tokens/s of each. Needs torch and transformers (pip install torch
transformers); not run by the test suite. Compare in one sitting with `qtune bench train` at the same
arguments and thread count, nothing else running.

  python3 tools/bench/torch_train_peer.py --threads 2 --steps 3
"""
import argparse
import sys

import torch_peer

KNOWN_MODES = ("eager-f32", "eager-autocast", "compile-f32", "compile-autocast", "eager-bf16", "compile-bf16")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    torch_peer.add_shape_args(p)
    args, modes = torch_peer.parse_args(p, "torch_train_peer", KNOWN_MODES)

    try:
        import torch
        import torch.nn.functional as F
        from transformers import LlamaConfig, LlamaForCausalLM
    except ImportError as e:
        sys.exit(f"torch_train_peer: {e}; pip install torch transformers")

    torch.set_num_threads(args.threads)
    print(f"PyTorch {torch.__version__} train peer: Llama hidden {args.hidden}, {args.layers} layers, {args.heads} "
          f"heads, ffn {args.ffn}, vocab {args.vocab}; batch {args.batch} x seq {args.seq}; AdamW lr 1e-4")
    torch_peer.print_cpu(torch, args.device)

    config = torch_peer.llama_config(args, LlamaConfig)
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, args.vocab, (args.batch, args.seq), generator=gen).to(args.device)
    targets = torch.randint(0, args.vocab, (args.batch, args.seq), generator=gen).to(args.device)

    rows = []
    for mode in modes:
        torch.manual_seed(0)
        model = LlamaForCausalLM(config).to(args.device)
        if mode.endswith("-bf16"):
            model = model.to(torch.bfloat16)
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def loss_of(ids, tgt):
            logits = model(input_ids=ids).logits
            return F.cross_entropy(logits.float().view(-1, args.vocab), tgt.view(-1))

        step_loss = torch.compile(loss_of) if mode.startswith("compile") else loss_of
        rows.append((mode,) + torch_peer.time_steps(torch, mode, lambda: step_loss(tokens, targets), opt,
                                                   mode.endswith("autocast"), args.warmup, args.steps,
                                                   args.batch * args.seq, args.device))
        model = opt = None  # freed before the next mode builds its own
    torch_peer.print_table(rows)


if __name__ == "__main__":
    main()
