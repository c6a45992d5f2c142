#!/usr/bin/env bash
# Install libtorch 2.13.0 (the version tch 0.26 is built against) into an ignored
# folder of the project, taken from PyPI's torch wheel.
#
#   scripts/setup-libtorch.sh            # flavour "auto": cuda when nvidia-smi sees a GPU, else cpu
#   MPDR_TORCH=cpu  scripts/setup-libtorch.sh
#   MPDR_TORCH=cuda scripts/setup-libtorch.sh
#   MPDR_TORCH_ARCH=aarch64 MPDR_LIBTORCH_DIR=.libtorch-aarch64 scripts/setup-libtorch.sh   # cross
#
# The wheel is the one for the host's architecture (`uname -m`: x86_64 or aarch64) unless
# MPDR_TORCH_ARCH says otherwise. PyPI's aarch64 wheel is a CUDA 13 build too (ARM servers,
# Jetson Thor / SBSA); its cpu flavour runs on any ARMv8.2 box (Raspberry Pi 5, Graviton, ...).
# Jetson Orin (JetPack 6) needs JetPack's own torch: `make LIBTORCH=<its torch folder>`.
#
# Layout made (side by side, because libtorch_cpu.so's RPATH is $ORIGIN/../../nvidia/cu13/lib):
#   .libtorch/torch/{lib,include,share,build-version}
#   .libtorch/nvidia/cu13/lib/...
#
# cpu  = torch/ from the torch wheel plus libcudart.so.13 and libcupti.so.13 (libtorch_cpu
#        needs them to load), about 1 GB unpacked instead of 5 GB of CUDA wheels.
# cuda = the same plus every nvidia-* wheel torch depends on (cuBLAS, cuDNN, NCCL, ...).
#
# Idempotent: a stamp file records what was installed; a second run does nothing.
# If LIBTORCH is already set to a libtorch 2.13.x folder, nothing is installed.
set -euo pipefail

TORCH_VERSION=2.13.0
CUDART_VERSION=13.0.96
CUPTI_VERSION=13.0.85

root=$(cd "$(dirname "$0")/.." && pwd)
dest=${MPDR_LIBTORCH_DIR:-$root/.libtorch}
flavour=${MPDR_TORCH:-auto}
arch=${MPDR_TORCH_ARCH:-$(uname -m)}
case "$arch" in
    x86_64|amd64) arch=x86_64 ;;
    aarch64|arm64) arch=aarch64 ;;
    *) echo "setup-libtorch: no PyPI libtorch for architecture '$arch' (x86_64 and aarch64 are served); build with make LIBTORCH=<a libtorch $TORCH_VERSION folder>" >&2; exit 1 ;;
esac

if [ -n "${LIBTORCH:-}" ] && [ "${LIBTORCH}" != "$dest/torch" ]; then
    if [ -f "$LIBTORCH/lib/libtorch_cpu.so" ]; then
        echo "setup-libtorch: using LIBTORCH=$LIBTORCH"
        exit 0
    fi
    echo "setup-libtorch: LIBTORCH=$LIBTORCH has no lib/libtorch_cpu.so; unset it or point it at a libtorch $TORCH_VERSION folder" >&2
    exit 1
fi

if [ "$flavour" = auto ]; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q GPU; then
        flavour=cuda
    else
        flavour=cpu
    fi
fi
case "$flavour" in cpu|cuda) ;; *) echo "setup-libtorch: MPDR_TORCH must be auto, cpu or cuda, got '$flavour'" >&2; exit 1;; esac

stamp="$dest/.installed-$TORCH_VERSION-$flavour"
if [ -f "$stamp" ]; then
    have=$(cat "$dest/torch/build-arch" 2>/dev/null || echo x86_64)
    if [ "$have" != "$arch" ]; then
        echo "setup-libtorch: $dest holds the $have libtorch, not $arch; remove it or set MPDR_LIBTORCH_DIR" >&2
        exit 1
    fi
    exit 0
fi
# A cuda install also serves cpu builds.
if [ "$flavour" = cpu ] && [ -f "$dest/.installed-$TORCH_VERSION-cuda" ]; then
    exit 0
fi

command -v patchelf >/dev/null || { echo "setup-libtorch: patchelf is needed (apt-get install patchelf; make setup installs it)" >&2; exit 1; }
python=${PYTHON:-python3}
command -v "$python" >/dev/null || { echo "setup-libtorch: python3 with pip is needed to fetch the torch wheel" >&2; exit 1; }

wheels="$dest/wheels"
mkdir -p "$wheels"
pip_dl=("$python" -m pip download --quiet --disable-pip-version-check --only-binary=:all:
        --python-version 3.11 --implementation cp -d "$wheels")
for tag in manylinux_2_28 manylinux_2_27 manylinux_2_25 manylinux_2_17 manylinux2014; do
    pip_dl+=(--platform "${tag}_$arch")
done

echo "setup-libtorch: downloading torch==$TORCH_VERSION ($flavour, $arch) from PyPI into $wheels"
if [ "$flavour" = cpu ]; then
    "${pip_dl[@]}" --no-deps "torch==$TORCH_VERSION" "nvidia-cuda-runtime==$CUDART_VERSION" "nvidia-cuda-cupti==$CUPTI_VERSION"
elif ! "${pip_dl[@]}" "torch==$TORCH_VERSION" 2> "$dest/pip.err"; then
    # An index (a mirror, a proxy) may lack one of torch's exact CUDA pins. The CUDA libraries
    # keep their soname within a major version, so take each pin, or where it is missing the
    # newest release of the same major, and say which.
    echo "setup-libtorch: the index cannot resolve torch's pinned CUDA wheels ($(grep -m1 -o 'No matching distribution.*' "$dest/pip.err" || tail -1 "$dest/pip.err")); taking each pin, or the newest release of its major"
    "${pip_dl[@]}" --no-deps "torch==$TORCH_VERSION"
    "$python" - "$wheels" "$arch" > "$dest/cuda-pins" <<'PY'
import pathlib, sys, zipfile
from pip._vendor.packaging.requirements import Requirement
wheels, arch = pathlib.Path(sys.argv[1]), sys.argv[2]
whl = next(wheels.glob("torch-*.whl"))
with zipfile.ZipFile(whl) as z:
    meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
env = {"platform_system": "Linux", "sys_platform": "linux", "platform_machine": arch,
       "python_version": "3.11", "python_full_version": "3.11.0", "implementation_name": "cpython",
       "platform_python_implementation": "CPython", "os_name": "posix", "extra": ""}
for line in meta.splitlines():
    if not line.startswith("Requires-Dist:"):
        continue
    r = Requirement(line.split(":", 1)[1].strip())
    if not r.name.lower().startswith(("nvidia", "cuda")) or (r.marker and not r.marker.evaluate(env)):
        continue
    pins = [s.version for s in r.specifier if s.operator == "=="]
    if pins:  # extras (cuda-toolkit[cublas,cudart,...]) pull in the libraries themselves
        print(r.name, pins[0], ",".join(sorted(r.extras)) or "-")
PY
    while read -r name pin extras; do
        deps=(--no-deps) spec=$name
        [ "$extras" = - ] || { deps=(); spec="$name[$extras]"; }
        "${pip_dl[@]}" "${deps[@]}" "$spec==$pin" 2>/dev/null && continue
        major=${pin%%.*}
        "${pip_dl[@]}" "${deps[@]}" "$spec>=$pin,<$((major + 1))" \
            || { echo "setup-libtorch: no $name $major.x at or after $pin on this index" >&2; exit 1; }
        echo "setup-libtorch: $name $pin is not on this index; took $(ls "$wheels" | grep -i "^${name//-/_}-" | head -1)"
    done < "$dest/cuda-pins"
fi
rm -f "$dest/pip.err" "$dest/cuda-pins"

echo "setup-libtorch: unpacking into $dest"
"$python" - "$wheels" "$dest" "$flavour" <<'PY'
import pathlib, sys, zipfile
wheels, dest, flavour = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
keep_torch = ("torch/lib/", "torch/include/", "torch/share/")
cpu_libs = ("libcudart.so", "libcupti.so")
# GPU-only parts of torch/lib a cpu install leaves out (about 550 MB): nothing CPU-side loads them.
gpu_only = ("libtorch_cuda", "libc10_cuda", "libcaffe2_nvrtc", "libtorch_nvshmem", "libtorch_python")
for whl in sorted(wheels.glob("*.whl")):
    name = whl.name.lower()
    if not (name.startswith("torch-") or name.startswith("nvidia")):
        continue
    with zipfile.ZipFile(whl) as z:
        for info in z.infolist():
            n = info.filename
            if name.startswith("torch-"):
                ok = n.startswith(keep_torch) and not (
                    flavour == "cpu" and pathlib.PurePosixPath(n).name.startswith(gpu_only))
            elif flavour == "cpu":
                ok = "/lib/" in n and pathlib.PurePosixPath(n).name.startswith(cpu_libs)
            else:
                ok = n.startswith("nvidia/")
            if ok and not n.endswith("/"):
                z.extract(info, dest)
                mode = (info.external_attr >> 16) & 0o777
                if mode:
                    (dest / n).chmod(mode)
PY
# libtorch.so is a shim that pulls in libtorch_cpu and libtorch_cuda. A cpu install has no
# libtorch_cuda, and where the linker binds a C++ library symbol to the shim (aarch64 with
# Debian's GCC 12 does), the binary would need it at start: drop that entry from the shim.
if [ "$flavour" = cpu ] && patchelf --print-needed "$dest/torch/lib/libtorch.so" | grep -qx libtorch_cuda.so; then
    patchelf --remove-needed libtorch_cuda.so "$dest/torch/lib/libtorch.so"
fi
echo "$TORCH_VERSION" > "$dest/torch/build-version"
echo "$arch" > "$dest/torch/build-arch"
echo "$flavour" > "$dest/torch/build-flavour"
test -f "$dest/torch/lib/libtorch_cpu.so" || { echo "setup-libtorch: torch/lib/libtorch_cpu.so missing after unpacking" >&2; exit 1; }
rm -rf "$wheels"
touch "$stamp"
echo "setup-libtorch: libtorch $TORCH_VERSION ($flavour, $arch) ready in $dest/torch ($(du -sh "$dest" | cut -f1))"
