#!/usr/bin/env python3
"""PyTorch peer of `qtune bench train`: the same Llama shape, batch and optimizer, trained by PyTorch on the CPU.

Times forward + cross-entropy + backward + AdamW (lr 1e-4) per step for each mode:
  eager f32, eager bf16 autocast, compile f32, compile bf16 autocast   (f32 weights and optimizer state)
  eager bf16, compile bf16                                               (bf16 weights, as `--dtype bf16`)
and prints a markdown table with the tokens/s of each. Needs torch and transformers (pip install torch
transformers); not run by the test suite. Compare in one sitting with `qtune bench train` at the same
arguments and thread count, nothing else running.

  python3 tools/bench/torch_train_peer.py --threads 2 --steps 3
"""
import argparse
import contextlib
import os
import platform
import statistics
import sys
import time


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    wanted = [x for x in flags if x.startswith(("avx512", "amx")) or x in ("avx2", "fma", "f16c")]
                    return name, " ".join(wanted)
    except OSError:
        pass
    return platform.processor(), "?"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hidden", type=int, default=768)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--ffn", type=int, default=2048)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--steps", type=int, default=5, help="timed steps per mode")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (torch.compile compiles here)")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--modes", default="eager-f32,eager-autocast,compile-f32,compile-autocast,eager-bf16,compile-bf16",
                   help="comma-separated subset of the modes above")
    args = p.parse_args()
    if args.steps < 1 or args.warmup < 0:
        sys.exit("torch_train_peer: --steps must be >= 1 and --warmup >= 0")
    modes = args.modes.split(",")
    known = {"eager-f32", "eager-autocast", "compile-f32", "compile-autocast", "eager-bf16", "compile-bf16"}
    for m in modes:
        if m not in known:
            sys.exit(f"torch_train_peer: unknown mode '{m}' (known: {', '.join(sorted(known))})")

    try:
        import torch
        import torch.nn.functional as F
        from transformers import LlamaConfig, LlamaForCausalLM
    except ImportError as e:
        sys.exit(f"torch_train_peer: {e}; pip install torch transformers")

    torch.set_num_threads(args.threads)
    name, flags = cpu_flags()
    print(f"PyTorch {torch.__version__} train peer: Llama hidden {args.hidden}, {args.layers} layers, {args.heads} "
          f"heads, ffn {args.ffn}, vocab {args.vocab}; batch {args.batch} x seq {args.seq}; AdamW lr 1e-4")
    print(f"CPU: {name}; flags: {flags}; torch threads {torch.get_num_threads()}; "
          f"oneDNN bf16 supported: {torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()}")

    config = LlamaConfig(hidden_size=args.hidden, num_hidden_layers=args.layers, num_attention_heads=args.heads,
                         num_key_value_heads=args.heads, intermediate_size=args.ffn, vocab_size=args.vocab,
                         max_position_embeddings=max(2048, args.seq), tie_word_embeddings=False,
                         attn_implementation="sdpa")
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, args.vocab, (args.batch, args.seq), generator=gen)
    targets = torch.randint(0, args.vocab, (args.batch, args.seq), generator=gen)
    n_tokens = args.batch * args.seq

    rows = []
    for mode in modes:
        compiled = mode.startswith("compile")
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
        if mode.endswith("-bf16"):
            model = model.to(torch.bfloat16)
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        autocast = mode.endswith("autocast")

        def loss_of(ids, tgt):
            logits = model(input_ids=ids).logits
            return F.cross_entropy(logits.float().view(-1, args.vocab), tgt.view(-1))

        step_loss = torch.compile(loss_of) if compiled else loss_of
        times = []
        compile_s = 0.0
        for i in range(args.warmup + args.steps):
            t0 = time.perf_counter()
            ctx = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
            with ctx:
                loss = step_loss(tokens, targets)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            dt = time.perf_counter() - t0
            if i < args.warmup:
                compile_s += dt
            else:
                times.append(dt)
            print(f"  {mode} step {i + 1}: {dt * 1000:.0f} ms, loss {loss.item():.4f}", flush=True)
        med = statistics.median(times)
        rows.append((mode, n_tokens / min(times), n_tokens / med, compile_s))
        del model, opt

    print("\n| PyTorch mode | tokens/s (best) | tokens/s (median) | warm-up s |\n|---|---|---|---|")
    for mode, best, med, warm in rows:
        print(f"| {mode} | {best:.0f} | {med:.0f} | {warm:.1f} |")


if __name__ == "__main__":
    main()
