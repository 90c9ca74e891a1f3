"""What the PyTorch peer benchmarks share (torch_train_peer.py, torch_lora_peer.py): the CPU or GPU line, the
model shape arguments and config, the timed step loop and the table. Imported from the scripts' own directory."""
import contextlib
import os
import platform
import statistics
import sys
import time


def cpu_flags():
    """(model name, the SIMD flags qtune and oneDNN choose kernels by) from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as f:
            name = "?"
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


def add_shape_args(parser):
    """The arguments of `qtune bench train` the peers share, with its defaults."""
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--ffn", type=int, default=2048)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per mode")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (torch.compile compiles here)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="as `qtune bench train --device`")


def parse_args(parser, script, known_modes):
    """Adds --modes (default: every known mode) and parses; exits naming a bad count or mode. Returns
    (args, the modes in the order given)."""
    parser.add_argument("--modes", default=",".join(known_modes), help="comma-separated subset of the modes above")
    args = parser.parse_args()
    if args.steps < 1 or args.warmup < 0:
        sys.exit(f"{script}: --steps must be >= 1 and --warmup >= 0")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes:
        sys.exit(f"{script}: --modes is empty")
    for m in modes:
        if m not in known_modes:
            sys.exit(f"{script}: unknown mode '{m}' (known: {', '.join(known_modes)})")
    return args, modes


def llama_config(args, LlamaConfig):
    return LlamaConfig(hidden_size=args.hidden, num_hidden_layers=args.layers, num_attention_heads=args.heads,
                       num_key_value_heads=args.heads, intermediate_size=args.ffn, vocab_size=args.vocab,
                       max_position_embeddings=max(2048, args.seq), tie_word_embeddings=False,
                       attn_implementation="sdpa")


def print_cpu(torch, device="cpu"):
    if device == "cuda":
        print(f"GPU: {torch.cuda.get_device_name()}; CUDA {torch.version.cuda}")
        return
    name, flags = cpu_flags()
    bf16 = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    print(f"CPU: {name}; flags: {flags}; torch threads {torch.get_num_threads()}; oneDNN bf16 supported: {bf16}")


def time_steps(torch, mode, loss_fn, opt, autocast, warmup, steps, n_tokens, device="cpu"):
    """Runs warmup + steps steps of loss_fn() (under bf16 autocast when asked), backward, opt.step() and
    zero_grad on device; prints each; returns (tokens/s best, tokens/s median, warm-up seconds)."""
    times, warm = [], 0.0
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        ctx = torch.autocast(device, dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
        with ctx:
            loss = loss_fn()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        if i < warmup:
            warm += dt
        else:
            times.append(dt)
        print(f"  {mode} step {i + 1}: {dt * 1000:.0f} ms, loss {loss.item():.4f}", flush=True)
    return n_tokens / min(times), n_tokens / statistics.median(times), warm


def print_table(rows):
    """rows: (mode, best, median, warm-up) with numbers, or strings for a mode that failed."""
    def cell(v, fmt):
        return fmt.format(v) if isinstance(v, float) else str(v)

    print("\n| PyTorch mode | tokens/s (best) | tokens/s (median) | warm-up s |\n|---|---|---|---|")
    for mode, best, med, warm in rows:
        print(f"| {mode} | {cell(best, '{:.0f}')} | {cell(med, '{:.0f}')} | {cell(warm, '{:.1f}')} |")
