#!/usr/bin/env python3
"""Writes tests/golden/numerics.json: PyTorch's dtype conversions, the reference for
engine/numerics/{bf16,f16,fp8}.h and the CPU copy kernel (tests/test_numerics.cpp).

Every float is stored as its raw bit pattern (f32 as u32, bf16/f16 as u16, fp8 as u8) so the
comparison is bit-exact and JSON never sees NaN, inf or -0.0.

fp8: docs/numerics.md §3 says "saturate to +-max (clamp before the cast)". torch's plain
.to(float8_*) does NOT saturate (e4m3fn turns |x| >= 480 into NaN, e5m2 turns |x| >= 61440 into
inf), so the fp8 goldens are torch(clamp(x, -max, max)), which is exactly what §3 specifies.

Run: python3 tools/goldens/gen_numerics.py   (torch 2.x; no numpy needed)
"""
import json
import math
import os
import random
import struct

import torch


def f32_from_bits(u):
    return struct.unpack("<f", struct.pack("<I", u & 0xFFFFFFFF))[0]


def bits_from_f32(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


FP8 = {
    "e4m3": (torch.float8_e4m3fn, 448.0),
    "e5m2": (torch.float8_e5m2, 57344.0),
}


def decode_fp8(dtype):
    codes = torch.arange(256, dtype=torch.int32).to(torch.uint8)
    return [v & 0xFFFFFFFF for v in codes.view(dtype).float().view(torch.int32).tolist()]


def edge_inputs():
    """f32 bit patterns that exercise every rounding boundary of the four narrow formats."""
    vals = set()

    def add(u):
        vals.add(u & 0xFFFFFFFF)
        vals.add((u | 0x80000000) & 0xFFFFFFFF)

    # fp8: every midpoint between adjacent finite codes (exact ties), and one f32 ulp either side.
    for name, (dtype, fmax) in FP8.items():
        dec = [f32_from_bits(b) for b in decode_fp8(dtype)[:128]]
        finite = sorted(v for v in dec if math.isfinite(v))
        for a, b in zip(finite, finite[1:]):
            mid = bits_from_f32((a + b) / 2)  # exact: both are short binary fractions
            add(mid), add(mid + 1), add(mid - 1)
        add(bits_from_f32(finite[1] / 2))  # half the smallest subnormal: a tie with 0
        add(bits_from_f32(finite[1] / 4))
        for v in (fmax, fmax * 1.01, fmax * 1.0625, fmax * 1.125, fmax * 2, 1e6, 3e38):
            add(bits_from_f32(v))
    # f16: ties and neighbours around 1, in the subnormal range, near the normal boundary and max.
    for code in list(range(0, 40)) + list(range(0x03F0, 0x0410)) + list(range(0x3BF0, 0x3C10)) + list(range(0x7BF0, 0x7C00)):
        a = torch.tensor([code], dtype=torch.int16).view(torch.float16).float().item()
        b = torch.tensor([code + 1], dtype=torch.int16).view(torch.float16).float().item()
        if not math.isfinite(b):
            b = 65536.0  # the "next" value past max: the overflow threshold is their midpoint
        mid = bits_from_f32((a + b) / 2)
        add(mid), add(mid + 1), add(mid - 1)
    add(bits_from_f32(65520.0)), add(bits_from_f32(65519.99)), add(bits_from_f32(65504.0))
    add(bits_from_f32(2.0 ** -25)), add(bits_from_f32(2.0 ** -26)), add(bits_from_f32(2.0 ** -24))
    # bf16: ties with an even and an odd lower neighbour, and the overflow boundary.
    for hi in (0x3F80, 0x3F81, 0x0001, 0x0080, 0x7F7E, 0x7F7F, 0x4049, 0x3380):
        for lo in (0x7FFF, 0x8000, 0x8001, 0x0001, 0xFFFF):
            add((hi << 16) | lo)
    # Specials: zeros, infinities, NaNs (quiet, signalling, with payload), f32 denormals, max.
    for u in (0x00000000, 0x7F800000, 0x7FC00000, 0x7F800001, 0x7FA00000, 0x7FFFFFFF, 0x00000001,
              0x00000002, 0x00400000, 0x007FFFFF, 0x00800000, 0x7F7FFFFF, 0x3F800000):
        add(u)
    return sorted(vals)


def random_inputs(n, seed):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        sign = rng.getrandbits(1) << 31
        if i % 4 == 0:
            exp = rng.randrange(0, 255)  # anything finite
        else:
            exp = rng.randrange(127 - 30, 127 + 20)  # where f16/fp8 have codes
        out.append(sign | (exp << 23) | rng.getrandbits(23))
    return out


def casts(bits):
    x = torch.tensor([f32_from_bits(u) for u in bits], dtype=torch.float32)
    out = {
        "input": bits,
        "bf16": [v & 0xFFFF for v in x.to(torch.bfloat16).view(torch.int16).tolist()],
        "f16": [v & 0xFFFF for v in x.to(torch.float16).view(torch.int16).tolist()],
    }
    for name, (dtype, fmax) in FP8.items():
        out[name] = x.clamp(-fmax, fmax).to(dtype).view(torch.uint8).tolist()
    return out


def int_casts():
    # In-range values only: out-of-range float->int is undefined in C++ and in torch.
    signed = [0.0, -0.0, 0.5, -0.5, 0.9999, -0.9999, 1.0, -1.0, 1.5, -1.5, 2.5, -2.5, 2.7, -2.7,
              126.9, 127.0, -127.9, -128.0, -128.9, 1e-30, -1e-30]
    unsigned = [0.0, -0.0, 0.5, 0.9999, 1.0, 1.5, 2.5, 2.7, 127.9, 128.5, 254.99, 255.0, 255.9, -0.7]
    bools = [0.0, -0.0, 0.5, -0.5, 1e-45, -1e-45, 3.0, float("inf"), float("-inf"), float("nan")]
    def run(vals, dtype):
        x = torch.tensor(vals, dtype=torch.float32)
        return {"input": [bits_from_f32(v) for v in x.tolist()], "output": [int(v) for v in x.to(dtype).tolist()]}
    return {"i64": run(signed, torch.int64), "i32": run(signed, torch.int32), "i8": run(signed, torch.int8),
            "u8": run(unsigned, torch.uint8), "bool": run(bools, torch.bool)}


def main():
    edges = edge_inputs()
    doc = {
        "generator": "tools/goldens/gen_numerics.py",
        "torch_version": torch.__version__,
        "fp8_note": "e4m3/e5m2 columns are torch(clamp(x, -max, max)): docs/numerics.md §3 saturation",
        "decode": {name: decode_fp8(dtype) for name, (dtype, _) in FP8.items()},
        "edge": casts(edges),
        "random": casts(random_inputs(1024, 20261123)),
        "int": int_casts(),
    }
    path = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "golden", "numerics.json")
    with open(path, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
    print(f"wrote {os.path.normpath(path)}: {len(edges)} edge inputs, torch {torch.__version__}")


if __name__ == "__main__":
    main()
