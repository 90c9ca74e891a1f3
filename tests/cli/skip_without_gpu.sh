#!/bin/sh
# Runs a qtune command that needs a GPU: exits 77 (CTest's SKIPPED) with the reason when `qtune version`
# finds none, so a machine without one never passes such a test silently.
qtune="$1"
if ! "$qtune" version | grep -Eq "CUDA backend: .*[1-9][0-9]* (simulated )?GPU"; then
  echo "SKIPPED: no CUDA device"
  exit 77
fi
exec "$@"
