#!/usr/bin/env bash
# Train and evaluate models x seeds x machines on a DCASE-layout folder and append one TSV row per
# run (machine, model, seed, mean AUC, mean pAUC, train seconds, peak RSS MB) to $OUT/results.tsv.
# Developer tool behind BENCHMARKS.md (issue 4); needs a release build (`make build`).
#   scripts/dcase_matrix.sh <data_root> <out_dir> "<machines>" "<models>" "<seeds>" [train.toml]
# Example: scripts/dcase_matrix.sh ../shared/data/dcase-mini /tmp/m "slider ToyCar" "ae mpdr-r" "1 2 3"
set -euo pipefail
root=$1 out=$2 machines=$3 models=$4 seeds=$5 config=${6:-}
bin=${MPDR_BIN:-target/release/mpdr}
mkdir -p "$out"
[[ -f $out/results.tsv ]] || printf 'machine\tmodel\tseed\tauc\tpauc\ttrain_s\trss_mb\n' >"$out/results.tsv"
for m in $machines; do
  for model in $models; do
    for s in $seeds; do
      run=$out/$m-$model-$s
      args=(train --data "$root/$m" --model "$model" --out "$run/bundle" --seed "$s")
      [[ -n $config ]] && args+=(--config "$config")
      start=$SECONDS
      /usr/bin/time -f '%M' -o "$run.rss" "$bin" "${args[@]}" >"$run.train.log" 2>&1 || { echo "FAILED $run" >&2; continue; }
      secs=$((SECONDS - start))
      "$bin" eval --bundle "$run/bundle" --data "$root/$m" --out "$run/report" >"$run.eval.log" 2>&1
      read -r auc pauc < <(python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(r['mean_auc'], r['mean_pauc'])" "$run/report/report.json")
      printf '%s\t%s\t%s\t%.4f\t%.4f\t%d\t%d\n' "$m" "$model" "$s" "$auc" "$pauc" "$secs" \
        "$(( $(tail -1 "$run.rss") / 1024 ))" >>"$out/results.tsv"
      tail -1 "$out/results.tsv"
    done
  done
done
