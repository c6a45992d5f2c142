# mpdr — the two commands that matter: `make demo` and `make test`.
# Everything else (system packages, libtorch) is installed on demand by `make setup`.
SHELL := /bin/bash
ROOT := $(CURDIR)
# An existing libtorch 2.13.x can be used with `make LIBTORCH=/path/to/libtorch ...`.
LIBTORCH ?= $(ROOT)/.libtorch/torch
export LIBTORCH
# libtorch's OpenMP workers spin and steal the CPU from the audio threads on small boxes.
export OMP_WAIT_POLICY ?= PASSIVE
CARGO ?= cargo

.PHONY: all setup build test lint fmt bench demo models parity fuzz install clean

all: build

setup:
	@scripts/setup-system.sh
	@scripts/setup-libtorch.sh

build: setup
	$(CARGO) build --release --locked

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
