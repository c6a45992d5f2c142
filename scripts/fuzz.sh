#!/usr/bin/env bash
# Build the AFL++ harnesses (fuzz/) with `cargo afl` and fuzz each target for FUZZ_SECONDS
# (default 600), JOBS at a time (default 2), niced. Summary: fuzz/out/summary.tsv (target,
# seconds, executions, execs/s, corpus, edges, crashes, hangs). Crash inputs stay under
# fuzz/out/<target>/default/crashes/: copy each into tests/fixtures/fuzz/<target>/ once fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${FUZZ_SECONDS:-600}
JOBS=${JOBS:-2}
TARGETS=${FUZZ_TARGETS:-"wav npy npz idx monitor_toml train_toml manifest safetensors http modbus"}
command -v cargo-afl >/dev/null || cargo install --locked cargo-afl
cargo afl config --build >/dev/null 2>&1 || true   # AFL++ itself, once per toolchain
(cd fuzz && cargo afl build --release)
mkdir -p fuzz/out
export AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_AFFINITY=1
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
# The harnesses link libtorch (through the mpdr crate) without the binary's rpath.
export LD_LIBRARY_PATH="${LIBTORCH:-$PWD/.libtorch/torch}/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# Loading libtorch makes the fork server slow to start on a busy box.
export AFL_FORKSRV_INIT_TMOUT=60000
run() {
  local t=$1
  rm -rf "fuzz/out/$t"
  nice -n 15 cargo afl fuzz -i "fuzz/seeds/$t" -o "fuzz/out/$t" -V "$SECS" -m none -t 2000 \
    "fuzz/target/release/$t" > "fuzz/out/$t.log" 2>&1 || echo "$t: afl-fuzz exited $?" >&2
}
running=0
for t in $TARGETS; do
  run "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$JOBS" ]; then wait -n; running=$((running - 1)); fi
done
wait
printf "target\tseconds\texecutions\texecs_per_s\tcorpus\tedges\tcrashes\thangs\n" > fuzz/out/summary.tsv
for t in $TARGETS; do
  s="fuzz/out/$t/default/fuzzer_stats"
  [ -f "$s" ] || { printf "%s\tno stats\n" "$t" >> fuzz/out/summary.tsv; continue; }
  v() { awk -F' *: *' -v k="$1" '$1==k {print $2}' "$s"; }
  printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n" "$t" "$(v run_time)" "$(v execs_done)" "$(v execs_per_sec)" \
    "$(v corpus_count)" "$(v edges_found)" "$(v saved_crashes)" "$(v saved_hangs)" >> fuzz/out/summary.tsv
done
column -t fuzz/out/summary.tsv
