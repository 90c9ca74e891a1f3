#!/usr/bin/env python3
"""Writes tests/golden/nf4/*.safetensors: torchao's NF4 (to_nf4 / NF4Tensor / linear_nf4), the
reference of engine/numerics/nf4.h, the NF4 kernels and quant/ (tests/test_nf4*.cpp).

Pinned: torch 2.15, torchao 0.18.0 (quantization/quantize_/workflows/nf4/nf4_tensor.py).

Each case file holds the weight "w" (f32 or bf16, numel divisible by 64 * 256 as torchao requires) and
torchao's parts: "codes" (u8, element 2i in the high nibble), "scalers" (i8), "factors" and "mean" (the
weight's dtype), and "dequant" = get_original_weight(). Raw dtypes, so every comparison is bit-exact.

Cases:
  bf16_random  normal * 0.02 weights (torch's bf16 mean equals qtune's f64-summed one)
  bf16_ties    every block's absmax a power of two, the other values exactly the D-rounded midpoints
               between neighbouring codes (and the midpoints one D-ulp either side)
  f32_ties     as bf16_ties in f32; the power-of-two absmaxes make the mean exact in any summation order
  f32_random   normal weights; torch sums an f32 mean in its own vectorized order, which qtune does not
               reproduce (it rounds the f64 sum), so the test compares the codes exactly and the mean and
               scalers within one step
linear.safetensors: x [4, 3, 256], the bf16/f32 weight of linear_w [64, 256] as NF4, y = linear_nf4(x, w)
and grad_x for grad_y (f32).

Run: python3 tools/goldens/gen_nf4.py
"""
import os

import torch
import torchao
from safetensors.torch import save_file
from torchao.quantization.quantize_.workflows.nf4.nf4_tensor import linear_nf4, to_nf4

assert torchao.__version__.startswith("0.18.0"), torchao.__version__
OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "golden", "nf4")
TABLE = [-1.0, -0.6962, -0.5251, -0.3949, -0.2844, -0.1848, -0.0911, 0.0,
         0.0796, 0.1609, 0.2461, 0.3379, 0.4407, 0.5626, 0.7230, 1.0]


def parts(w):
    t = to_nf4(w)
    return {
        "w": w.contiguous(),
        "codes": t.quantized_data.contiguous(),
        "scalers": t.quantized_scalers.contiguous(),
        "factors": t.quantization_factor.contiguous(),
        "mean": t.scaler_mean.reshape(1).contiguous(),
        "dequant": t.get_original_weight().contiguous(),
    }


def ties(dtype, seed):
    g = torch.Generator().manual_seed(seed)
    table = torch.tensor(TABLE, dtype=dtype)
    mids = ((table[:-1].float() + table[1:].float()) / 2).to(dtype)
    # one D-ulp either side of each midpoint
    up = torch.nextafter(mids.float(), torch.tensor(2.0)).to(dtype) if dtype == torch.float32 else \
        (mids.view(torch.int16) + torch.where(mids > 0, 1, -1).to(torch.int16)).view(dtype)
    down = torch.nextafter(mids.float(), torch.tensor(-2.0)).to(dtype) if dtype == torch.float32 else \
        (mids.view(torch.int16) - torch.where(mids > 0, 1, -1).to(torch.int16)).view(dtype)
    pool = torch.cat([mids, up, down, table])
    blocks = 16384 // 64
    idx = torch.randint(0, pool.numel(), (blocks, 64), generator=g)
    x = pool[idx]
    x[:, 0] = torch.where(torch.rand(blocks, generator=g) < 0.5, 1.0, -1.0).to(dtype)
    scale = (2.0 ** torch.randint(-6, 2, (blocks, 1), generator=g)).to(dtype)
    return (x * scale).reshape(128, 128)


def main():
    os.makedirs(OUT, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    cases = {
        "bf16_random": (torch.randn(128, 128, generator=g) * 0.02).to(torch.bfloat16),
        "bf16_ties": ties(torch.bfloat16, 1),
        "f32_ties": ties(torch.float32, 2),
        "f32_random": torch.randn(128, 128, generator=g),
    }
    for name, w in cases.items():
        save_file(parts(w), os.path.join(OUT, name + ".safetensors"))
    lin = {}
    for dt, tag in [(torch.float32, "f32"), (torch.bfloat16, "bf16")]:
        w = (torch.randn(64, 256, generator=g) * 0.05).to(dt)
        x = torch.randn(4, 3, 256, generator=g).to(dt).requires_grad_(True)
        gy = torch.randn(4, 3, 64, generator=g).to(dt)
        y = linear_nf4(x, to_nf4(w))
        y.backward(gy)
        lin.update({f"{tag}_w": w, f"{tag}_x": x.detach(), f"{tag}_grad_y": gy, f"{tag}_y": y.detach(),
                    f"{tag}_grad_x": x.grad})
    save_file(lin, os.path.join(OUT, "linear.safetensors"))


if __name__ == "__main__":
    main()
