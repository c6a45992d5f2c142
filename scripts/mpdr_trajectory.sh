#!/usr/bin/env bash
# Research tool behind BENCHMARKS.md (issue 12): MPDR recipe variants from shared starting points.
# A starting point is an `mpdr train --id <ID> --model mpdr-r --epochs 0` bundle (ID "all": no --id,
# one model for every id of the machine type) (manifold AEs and
# the pre-trained energy, no MPDR epoch) in <base>/id<ID>-s<SEED>. Each variant resumes from it,
# keeps every epoch's bundle, and every epoch is evaluated on the test clips of that id (to
# *report*; nothing here feeds back into training). One TSV row per (variant, id, seed, epoch) goes
# to <out>/trajectories.tsv; epoch 0 is the pre-trained energy (= the AE row); "shipped" is the
# bundle the product rule kept.
# MPDR_MODEL=mpdr-idnn runs MPDR-IDNN starting points instead of MPDR-R ones.
#   scripts/mpdr_trajectory.sh <machine_dir> <base> <out> "<variant.toml ...>" "<ids>" "<seeds>" [jobs=2]
# All (variant, id, seed) runs share one pool of <jobs> single-threaded processes.
set -euo pipefail
data=$1 base=$2 out=$3 variants=$4 ids=$5 seeds=$6 jobs=${7:-2}
bin=${MPDR_BIN:-$PWD/target/release/mpdr}
model=${MPDR_MODEL:-mpdr-r}
export OMP_WAIT_POLICY=PASSIVE data base out bin model
one() {
  local variant=$1 id=$2 seed=$3
  local name; name=$(basename "$variant" .toml)
  local run=$out/$name/id$id-s$seed
  [[ -f $run/eval/report.json ]] && { echo "kept $name id$id s$seed (already done)"; return 0; }
  rm -rf "$run" && mkdir -p "$run"
  cp -r "$base/id$id-s$seed" "$run/checkpoint"
  local start=$SECONDS
  local idarg=(--id "$id"); [[ $id == all ]] && idarg=()
  "$bin" train --data "$data" "${idarg[@]}" --model "$model" --seed "$seed" --config "$variant" --out "$run" \
    --resume --keep-epochs --diagnostics >"$run.train.log" 2>&1 || { echo "FAILED $run" >&2; return 0; }
  echo $((SECONDS - start)) >"$run/train_seconds"
  if [[ ! -f $base/id$id-s$seed.eval/report.json ]]; then
    "$bin" eval --bundle "$base/id$id-s$seed" --data "$data" --out "$base/id$id-s$seed.eval" >/dev/null 2>&1
  fi
  for e in "$run"/epochs/mpdr-*; do
    "$bin" eval --bundle "$e" --data "$data" --out "$e.eval" >/dev/null 2>&1
    rm -f "$e"/*.safetensors
  done
  "$bin" eval --bundle "$run" --data "$data" --out "$run/eval" >/dev/null 2>&1
  echo "done $name id$id s$seed $(cat "$run/train_seconds")s"
}
export -f one
for s in $seeds; do for v in $variants; do for i in $ids; do echo "$v $i $s"; done; done; done | xargs -P "$jobs" -L1 bash -c 'one "$@"' _
python3 "$(dirname "$0")/collect_trajectory.py" "$out" "$base"
