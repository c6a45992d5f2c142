# mpdr — the two commands that matter: `make demo` and `make test`.
# Everything else (system packages, libtorch) is installed on demand by `make setup`.
SHELL := /bin/bash
ROOT := $(CURDIR)
# An existing libtorch 2.13.x can be used with `make LIBTORCH=/path/to/libtorch ...` (Jetson:
# JetPack's torch). `make CUDA=1 build` fetches the full CUDA wheel set (about 5 GB) into
# .libtorch-cuda and builds against it in target/cuda, apart from the CPU build and its libtorch.
CUDA ?= 0
ifeq ($(CUDA),1)
LIBTORCH ?= $(ROOT)/.libtorch-cuda/torch
export MPDR_TORCH := cuda
export MPDR_LIBTORCH_DIR := $(ROOT)/.libtorch-cuda
export MPDR_LINK_CUDA := 1
export CARGO_TARGET_DIR := $(ROOT)/target/cuda
else
LIBTORCH ?= $(ROOT)/.libtorch/torch
endif
export LIBTORCH
# libtorch's OpenMP workers spin and steal the CPU from the audio threads on small boxes.
export OMP_WAIT_POLICY ?= PASSIVE
CARGO ?= cargo

.PHONY: all setup build test lint fmt bench demo models parity fuzz install clean \
	cross-aarch64 cross-aarch64-test cross-aarch64-deb deb deb-test gpu-check

all: build

setup:
	@scripts/setup-system.sh
	@scripts/setup-libtorch.sh

build: setup
	$(CARGO) build --release --locked
	@echo "built $${CARGO_TARGET_DIR:-target}/release/mpdr against $(LIBTORCH) ($$(cat $(LIBTORCH)/build-flavour 2>/dev/null || echo 'libtorch of your own'))"

lint: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --locked --no-deps --lib

test: lint
	$(CARGO) test --locked

fmt:
	$(CARGO) fmt --all

bench: setup
	$(CARGO) bench --locked

# Opt-in: compare `mpdr features` with librosa on the real DCASE clips in ../shared/data.
parity: build
	python3 scripts/check_librosa_parity.py

# Binary + libtorch under PREFIX (default /opt/mpdr), the unit, /etc/mpdr/monitor.toml if absent.
install:
	scripts/install.sh

# Opt-in (not in `make test`; times in BENCHMARKS.md). An aarch64 release binary built here
# (Rust target, Debian's cross compiler, multiarch ALSA, PyPI's aarch64 libtorch in
# .libtorch-aarch64), and that binary run under qemu-user: --version, features, train, eval and
# a file-source monitor to the end with a file sink.
cross-aarch64:
	scripts/cross-aarch64.sh build

cross-aarch64-test:
	scripts/cross-aarch64.sh test

# A Debian package (dpkg-deb over the `make install` layout): /opt/mpdr with the binary and the
# libtorch it loads, the units, /etc/mpdr/monitor.toml as a conffile, the mpdr system user.
# `make deb-test` installs it into a fresh debootstrap root and runs validate + a file stream there.
deb: build
	scripts/deb.sh build

deb-test: build
	scripts/deb.sh test

# The arm64 package from the cross build, installed and run in an arm64 Debian root under qemu-user.
cross-aarch64-deb:
	scripts/cross-aarch64.sh build
	MPDR_BINARY=target/aarch64-unknown-linux-gnu/release/mpdr MPDR_DEB_ARCH=arm64 scripts/deb.sh test

# The prepared GPU check (<= 10 min): CUDA build, GPU really used, scoring and training timed
# against the CPU. Runs its CPU half anywhere.
gpu-check:
	scripts/gpu-check.sh

# Coverage-guided fuzzing (AFL++ through cargo-afl, stable Rust) of every parser: each target
# for FUZZ_SECONDS (default 600), two at a time; summary in fuzz/out/summary.tsv.
fuzz: setup
	scripts/fuzz.sh

# The whole product on a synthetic plant (about a minute after the build); report in demo-report/.
demo: build
	target/release/mpdr demo --out demo-report

# Rebuild the demo models in models/ exactly (seeded): synthetic training data, one bundle of the default kind (gmm)
# per machine type, and their eval reports on synthetic anomalies (numbers in BENCHMARKS.md).
MACHINES := fan pump valve slider
models: build
	rm -rf target/synth-data target/synth-reports
	target/release/mpdr synth dataset --out target/synth-data --seed 1
	for m in $(MACHINES); do \
	  target/release/mpdr train --data target/synth-data/$$m --seed 1 --config config/train.demo-models.toml --no-cache --out models/$$m && \
	  target/release/mpdr synth --machine $$m --instance 1000 --seed 500 --seconds 3600 --out target/synth-data/site-$$m.wav && \
	  target/release/mpdr calibrate --bundle models/$$m --data target/synth-data/site-$$m.wav --no-cache && \
	  target/release/mpdr eval --bundle models/$$m --data target/synth-data/$$m --no-cache --out target/synth-reports/$$m || exit 1; \
	done

clean:
	$(CARGO) clean
