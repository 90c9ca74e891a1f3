#!/usr/bin/env python3
"""Writes tests/golden/data/shuffle_order.json: the DataLoader's epoch permutations (data/data_loader.cpp),
computed here from their definition alone, in Python integers:

  Fisher-Yates over [0, n): for i = n-1 down to 1, swap slot i with slot j, where
  r = Philox4x32-10(counter = (i lo, i hi, epoch lo, epoch hi), key = (seed lo, seed hi)),
  bits = r[0] << 32 | r[1], j = (bits * (i + 1)) >> 64.

Usage: python3 tools/goldens/gen_data_order.py
"""
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "golden", "data", "shuffle_order.json")
M32 = 0xFFFFFFFF


def philox4x32_10(c, k0, k1):
    c0, c1, c2, c3 = c
    for _ in range(10):
        p0, p1 = 0xD2511F53 * c0, 0xCD9E8D57 * c2
        c0, c1, c2, c3 = (p1 >> 32) ^ c1 ^ k0, p1 & M32, (p0 >> 32) ^ c3 ^ k1, p0 & M32
        k0, k1 = (k0 + 0x9E3779B9) & M32, (k1 + 0xBB67AE85) & M32
    return c0, c1, c2, c3


def permutation(n, seed, epoch):
    order = list(range(n))
    for i in range(n - 1, 0, -1):
        r = philox4x32_10((i & M32, i >> 32, epoch & M32, epoch >> 32), seed & M32, seed >> 32)
        j = (((r[0] << 32) | r[1]) * (i + 1)) >> 64
        order[i], order[j] = order[j], order[i]
    return order


def main():
    cases = [{"n": n, "seed": seed, "epoch": epoch, "order": permutation(n, seed, epoch)}
             for n, seed in [(10, 1234), (37, (1 << 40) + 5)] for epoch in [0, 1]]
    with open(OUT, "w") as f:
        json.dump(cases, f)
        f.write("\n")


if __name__ == "__main__":
    main()
