#!/usr/bin/env bash
# Issue 23 research: an MPDR kind on profiles with every epoch kept and evaluated on the
# visible test clips of its own id (trajectories for BENCHMARKS.md; nothing here decides what
# `mpdr train` ships — the product rule reads training data only).
#   scripts/profile_trajectory.sh MACHINE_DIR KIND CONFIG OUT SEED... -- ID...
set -euo pipefail
m=$1 kind=$2 config=$3 out=$4; shift 4
seeds=(); while [ "$1" != "--" ]; do seeds+=("$1"); shift; done; shift
bin=$(cd "$(dirname "$0")/.." && pwd)/target/release/mpdr
mkdir -p "$out"
for s in "${seeds[@]}"; do for id in "$@"; do
  b=$out/s$s-$id
  "$bin" train --data "$m" --id "$id" --model "$kind" --seed "$s" --config "$config" --keep-epochs --out "$b" > "$b.log" 2>&1
  for e in $(ls "$b/epochs" | grep '^mpdr' | sort -V); do
    "$bin" eval --bundle "$b/epochs/$e" --data "$m" --out "$b/ev-$e" > /dev/null 2>&1
  done
  "$bin" eval --bundle "$b" --data "$m" --out "$b/ev-final" > /dev/null 2>&1
  echo "s$s id$id: $(grep -E '^(shipped|epoch) = ' "$b/manifest.toml" | tr '\n' ' ')"
done; done
