#!/usr/bin/env bash
# Issue 23 research: one `mpdr train` + `mpdr eval` per machine id, printing one line each.
#   scripts/profile_matrix.sh MACHINE_DIR KIND SEED OUT [CONFIG] -- ID...
#   e.g. scripts/profile_matrix.sh ../shared/data/dcase-mini/ToyCar gmm 1 /tmp/p "" -- 01 02 03
# Lines: "<kind> s<seed> id<id> <machine>: mean AUC a, mean pAUC p (1 ids) -> <report>".
set -euo pipefail
m=$1 kind=$2 seed=$3 out=$4 config=${5:-}
shift 5; [ "${1:-}" = "--" ] && shift
bin=$(cd "$(dirname "$0")/.." && pwd)/target/release/mpdr
mkdir -p "$out"
for id in "$@"; do
  b=$out/$(basename "$m")-$kind-s$seed-$id
  if ! "$bin" train --data "$m" --id "$id" --model "$kind" --seed "$seed" ${config:+--config "$config"} --out "$b" > "$b.train.log" 2>&1; then
    echo "FAIL $b: $(grep -m1 error "$b.train.log")"; continue
  fi
  "$bin" eval --bundle "$b" --data "$m" --out "$b-eval" 2>&1 | tail -1 | sed "s|^|$kind s$seed id$id |"
done
