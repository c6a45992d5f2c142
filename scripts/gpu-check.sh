#!/usr/bin/env bash
# The prepared GPU check (issue 26): about 10 minutes on a box with an NVIDIA GPU, its CPU half
# anywhere. Prints one summary at the end (also in target/gpu-check/summary.txt).
#
#   scripts/gpu-check.sh                 # CPU half, then the GPU half when nvidia-smi sees a GPU
#   MPDR_GPU_LIBTORCH=/path/to/torch scripts/gpu-check.sh   # a CUDA libtorch already on the box
#
# CPU half: the release build, `mpdr doctor`, scoring throughput (`mpdr doctor --bench`: the
# shipped default bundle and the 640-D frame-level AE, vectors/s and real-time 16 kHz streams)
# and one timed training run (`mpdr train --model ae --epochs 30` on 20 generated 10-s clips).
# GPU half: the CUDA build (`make CUDA=1 build`; its libtorch from MPDR_GPU_LIBTORCH, an installed
# CUDA PyTorch, or PyPI's wheels), `mpdr doctor` must see the GPU, the same bench and training on
# `cuda`, and nvidia-smi must list the process while it scores (the GPU is really used).
set -uo pipefail
cd "$(dirname "$0")/.."
out=target/gpu-check
rm -rf "$out" && mkdir -p "$out"
summary=$out/summary.txt
say() { echo "$*" | tee -a "$summary"; }
fail=0
export OMP_WAIT_POLICY=PASSIVE

say "gpu-check $(date -u +%FT%TZ) on $(uname -m), $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
gpu=0
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q GPU; then
    gpu=1
    say "GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1)"
else
    say "GPU: none visible (no nvidia-smi or no device): the GPU half is skipped"
fi

train_once() {   # $1 = binary, $2 = device, $3 = label
    local t0 t1
    t0=$(date +%s.%N)
    if "$1" train --data "$out/data/pump" --model ae --epochs 30 --device "$2" --seed 1 --no-cache \
        --out "$out/bundle-$3" > "$out/train-$3.log" 2>&1; then
        t1=$(date +%s.%N)
        say "train ($3, ae, 30 epochs, 20 clips x 10 s): $(awk "BEGIN {printf \"%.1f\", $t1 - $t0}") s"
    else
        say "train ($3): FAILED, see $out/train-$3.log"; fail=1
    fi
}

# ---- CPU half ----
make -s build >"$out/build-cpu.log" 2>&1 || { say "CPU build FAILED (see $out/build-cpu.log)"; exit 1; }
cpu_bin=target/release/mpdr
"$cpu_bin" doctor | tee "$out/doctor-cpu.txt"
"$cpu_bin" synth dataset --out "$out/data" --machine pump --ids 1 --train 20 --test 2 --seed 4 >/dev/null
"$cpu_bin" doctor --bench --device cpu --seconds 10 | tee "$out/bench-cpu.txt" | grep -E '^bench' | tee -a "$summary"
train_once "$cpu_bin" cpu cpu

# ---- GPU half ----
if [ "$gpu" = 1 ]; then
    if [ -z "${MPDR_GPU_LIBTORCH:-}" ]; then
        MPDR_GPU_LIBTORCH=$(python3 -c 'import os, torch; assert torch.version.cuda; print(os.path.dirname(torch.__file__))' 2>/dev/null || true)
    fi
    extra=()
    [ -n "${MPDR_GPU_LIBTORCH:-}" ] && extra=(LIBTORCH="$MPDR_GPU_LIBTORCH") && say "CUDA libtorch: $MPDR_GPU_LIBTORCH"
    t0=$SECONDS
    if make -s CUDA=1 "${extra[@]}" build >"$out/build-cuda.log" 2>&1; then
        say "CUDA build: $((SECONDS - t0)) s"
        gpu_bin=target/cuda/release/mpdr
        "$gpu_bin" doctor | tee "$out/doctor-cuda.txt"
        grep -q "GPUs visible: [1-9]" "$out/doctor-cuda.txt" || { say "FAILED: the CUDA build sees no GPU"; fail=1; }
        "$gpu_bin" doctor --bench --device cuda --seconds 10 > "$out/bench-cuda.txt" 2>&1 &
        bench=$!
        sleep 4
        if nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader | grep -q "^$bench,"; then
            say "GPU used: nvidia-smi lists mpdr (pid $bench): $(nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader | grep "^$bench," )"
        else
            say "FAILED: nvidia-smi does not list the scoring process"; fail=1
        fi
        wait "$bench" || fail=1
        grep -E '^bench' "$out/bench-cuda.txt" | tee -a "$summary"
        train_once "$gpu_bin" cuda cuda
    else
        say "CUDA build FAILED (see $out/build-cuda.log)"; fail=1
    fi
fi
say "gpu-check: $([ $fail = 0 ] && echo passed || echo FAILED)"
exit $fail
