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

.PHONY: all setup build test lint fmt bench demo parity clean

all: build

setup:
	@scripts/setup-system.sh
	@scripts/setup-libtorch.sh

build: setup
	$(CARGO) build --release --locked

lint: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

test: lint
	$(CARGO) test --locked

fmt:
	$(CARGO) fmt --all

bench: setup
	$(CARGO) bench --locked

# Opt-in: compare `mpdr features` with librosa on the real DCASE clips in ../shared/data.
parity: build
	python3 scripts/check_librosa_parity.py

demo: setup
	@echo "make demo: the synthetic-plant demo arrives with the monitor (issue 7); nothing to show yet." >&2
	@exit 1

clean:
	$(CARGO) clean
