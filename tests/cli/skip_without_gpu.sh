#!/bin/sh
# Runs a qtune command that needs a GPU (QTUNE_TEST_GPUS of them, default 1): exits 77 (CTest's SKIPPED) with
# the reason when `qtune version` finds fewer, so a machine without them never passes such a test silently.
qtune="$1"
need=${QTUNE_TEST_GPUS:-1}
found=$("$qtune" version | sed -nE 's/^CUDA backend: .*; ([0-9]+) (simulated )?GPUs?.*/\1/p')
if [ "${found:-0}" -lt "$need" ]; then
  echo "SKIPPED: needs $need CUDA device(s), found ${found:-0}"
  exit 77
fi
exec "$@"
