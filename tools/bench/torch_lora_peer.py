#!/usr/bin/env python3
"""PyTorch peer of qtune's LoRA / QLoRA training steps: the same Llama shape and batch, adapters trained by
PyTorch on the CPU.

Times forward + cross-entropy + backward + AdamW (lr 1e-4, adapter parameters only) per step for each mode:
  lora-bf16          bf16 frozen base weights, bf16 LoRA adapters
  lora-autocast      f32 frozen base weights and adapters, step under torch.autocast("cpu", bfloat16)
  qlora-bf16         as lora-bf16, but the seven adapted linears of each layer hold torchao NF4 weights
                     (block 64, scaler block 256; the torchtune QLoRA setup)
  compile-<mode>     the same with the loss function wrapped in torch.compile
Adapters (rank --rank, alpha --alpha) sit on q/k/v/o/gate/up/down of every decoder layer, not on lm_head; they
are a small wrapper written here (y = W x + (alpha/rank) * B A x, B zero-initialised), not peft. Prints a
markdown table with the tokens/s of each mode; a mode that fails (for example torch.compile on NF4) shows the
reason instead. Needs torch and transformers, plus torchao for the qlora modes (pip install torch transformers
torchao); not run by the test suite. Compare in one sitting with qtune at the same arguments and thread count,
nothing else running.

  python3 tools/bench/torch_lora_peer.py --threads 2 --steps 3
"""
import argparse
import math
import sys

import torch_peer

BASE_MODES = ("lora-bf16", "lora-autocast", "qlora-bf16")
KNOWN_MODES = BASE_MODES + tuple("compile-" + m for m in BASE_MODES)
ADAPTED = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def load_nf4():
    """Returns (to_nf4, linear_nf4, where) from the installed torchao, or None when it has no NF4 support.

    torchao <= 0.1x kept NF4 in torchao.dtypes.nf4tensor; later releases moved it under torchao.quantization
    (to_nf4 re-exported there, linear_nf4 beside NF4Tensor)."""
    try:
        from torchao.dtypes.nf4tensor import linear_nf4, to_nf4
        return to_nf4, linear_nf4, "torchao.dtypes.nf4tensor"
    except ImportError:
        pass
    try:
        from torchao.quantization.quantize_.workflows.nf4.nf4_tensor import linear_nf4, to_nf4
        return to_nf4, linear_nf4, "torchao.quantization.quantize_.workflows.nf4.nf4_tensor"
    except ImportError:
        return None


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    torch_peer.add_shape_args(p)
    p.add_argument("--rank", type=int, default=8, help="LoRA rank")
    p.add_argument("--alpha", type=float, default=16.0, help="LoRA alpha (adapter scale alpha/rank)")
    args, modes = torch_peer.parse_args(p, "torch_lora_peer", KNOWN_MODES)
    if args.device != "cpu":
        sys.exit("torch_lora_peer: only --device cpu (its NF4 modes time torchao's CPU path)")
    if args.rank < 1:
        sys.exit("torch_lora_peer: --rank must be >= 1")

    try:
        import torch
        import torch.nn as nn
        import torch.nn.functional as F
        from transformers import LlamaConfig, LlamaForCausalLM
    except ImportError as e:
        sys.exit(f"torch_lora_peer: {e}; pip install torch transformers")

    nf4 = None
    torchao_version = "not installed"
    try:
        import torchao
        torchao_version = getattr(torchao, "__version__", "?")
        nf4 = load_nf4()
    except ImportError:
        pass
    if any("qlora" in m for m in modes) and nf4 is None:
        sys.exit(f"torch_lora_peer: the qlora modes need torchao with NF4 support (torchao: {torchao_version}); "
                 "pip install torchao, or leave the qlora modes out of --modes")
    try:
        import peft
        peft_version = f"{peft.__version__} installed, not used"
    except ImportError:
        peft_version = "not installed, not used"

    class LoRALinear(nn.Module):
        """A frozen bias-free linear (dense or NF4 weight) plus a trainable rank-r update."""

        def __init__(self, base, rank, alpha, to_nf4=None, linear_nf4=None):
            super().__init__()
            if base.bias is not None:
                raise ValueError("LoRALinear: biased base linear not supported")
            w = base.weight.detach()
            self.in_features, self.out_features = base.in_features, base.out_features
            self.linear_nf4 = linear_nf4
            if to_nf4 is not None:
                if w.numel() % (64 * 256):
                    raise ValueError(f"NF4 needs each adapted weight's size divisible by 64*256 = 16384, "
                                     f"got {self.out_features}x{self.in_features} (try --hidden 128 or larger)")
                self.weight = nn.Parameter(to_nf4(w, block_size=64, scaler_block_size=256), requires_grad=False)
            else:
                self.weight = nn.Parameter(w, requires_grad=False)
            self.lora_a = nn.Parameter(torch.empty(rank, self.in_features, dtype=w.dtype))
            self.lora_b = nn.Parameter(torch.zeros(self.out_features, rank, dtype=w.dtype))
            nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
            self.scale = alpha / rank

        def forward(self, x):
            if self.linear_nf4 is not None:
                y = self.linear_nf4(x, self.weight)
            else:
                y = F.linear(x, self.weight)
            return y + F.linear(F.linear(x, self.lora_a), self.lora_b) * self.scale

    def add_adapters(model, quantize):
        model.requires_grad_(False)
        n = 0
        for layer in model.model.layers:
            for parent in (layer.self_attn, layer.mlp):
                for name in ADAPTED:
                    base = getattr(parent, name, None)
                    if base is None:
                        continue
                    if quantize:
                        wrapped = LoRALinear(base, args.rank, args.alpha, nf4[0], nf4[1])
                    else:
                        wrapped = LoRALinear(base, args.rank, args.alpha)
                    setattr(parent, name, wrapped)
                    n += 1
        if n != 7 * len(model.model.layers):
            raise RuntimeError(f"expected 7 adapted linears per layer, found {n} in {len(model.model.layers)}")
        return [p for p in model.parameters() if p.requires_grad]

    torch.set_num_threads(args.threads)
    nf4_where = f"torchao NF4 from {nf4[2]} (to_nf4 block 64 / scaler block 256, linear_nf4)" if nf4 else "no NF4"
    print(f"PyTorch {torch.__version__} LoRA peer: Llama hidden {args.hidden}, {args.layers} layers, {args.heads} "
          f"heads, ffn {args.ffn}, vocab {args.vocab}; batch {args.batch} x seq {args.seq}; LoRA rank {args.rank} "
          f"alpha {args.alpha:g} on q/k/v/o/gate/up/down (own LoRA wrapper, not peft); AdamW lr 1e-4 on adapters")
    print(f"versions: torch {torch.__version__}; torchao {torchao_version}; peft {peft_version}; {nf4_where}")
    torch_peer.print_cpu(torch)

    config = torch_peer.llama_config(args, LlamaConfig)
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, args.vocab, (args.batch, args.seq), generator=gen)
    targets = torch.randint(0, args.vocab, (args.batch, args.seq), generator=gen)
    n_tokens = args.batch * args.seq

    rows = []
    for mode in modes:
        compiled = mode.startswith("compile-")
        base_mode = mode[len("compile-"):] if compiled else mode
        autocast = base_mode == "lora-autocast"
        model = opt = None
        try:
            torch.manual_seed(0)
            model = LlamaForCausalLM(config)
            if not autocast:
                model = model.to(torch.bfloat16)
            params = add_adapters(model, quantize=base_mode == "qlora-bf16")
            model.train()
            opt = torch.optim.AdamW(params, lr=1e-4)
            print(f"  {mode}: {sum(p.numel() for p in params)} trainable adapter parameters "
                  f"({params[0].dtype})", flush=True)

            def loss_of(ids, tgt):
                logits = model(input_ids=ids).logits
                return F.cross_entropy(logits.float().view(-1, args.vocab), tgt.view(-1))

            step_loss = torch.compile(loss_of) if compiled else loss_of
            rows.append((mode,) + torch_peer.time_steps(torch, mode, lambda: step_loss(tokens, targets), opt, autocast,
                                                       args.warmup, args.steps, n_tokens))
        except Exception as e:  # report the failure in the table and go on with the next mode
            first = (str(e).strip().splitlines() or [""])[0]
            reason = f"failed: {type(e).__name__}: {first}"
            if len(reason) > 160:
                reason = reason[:157] + "..."
            reason = reason.replace("|", "\\|")
            print(f"  {mode}: {reason}", flush=True)
            rows.append((mode, reason, "-", "-"))
        model = opt = None  # freed before the next mode builds its own
        if compiled:
            torch._dynamo.reset()

    torch_peer.print_table(rows)


if __name__ == "__main__":
    main()
