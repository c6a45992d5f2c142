#!/usr/bin/env python3
"""Opt-in real-data check: `mpdr features` vs librosa 0.11 on real DCASE clips.

    make parity                                   # builds, then runs this
    python3 scripts/check_librosa_parity.py [DATA_DIR] [--per-machine N]

DATA_DIR defaults to $MPDR_DATA/dcase-mini or ../shared/data/dcase-mini. For every WAV picked
(N per machine folder, default all), both pad modes: librosa.load(sr=None) then
melspectrogram(y, sr=16000, n_fft=1024, hop_length=512, n_mels=128, power=2.0, pad_mode=...)
and 10*log10(S + eps); mpdr's output must match within 1e-3 dB on every cell. Exits 0 with a
message when the data is absent, 1 on any mismatch.
"""
import argparse
import os
import pathlib
import subprocess
import sys
import tempfile

import librosa
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
TOL_DB = 1e-3


def default_data():
    if os.environ.get("MPDR_DATA"):
        return pathlib.Path(os.environ["MPDR_DATA"]) / "dcase-mini"
    return ROOT.parent / "shared" / "data" / "dcase-mini"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data", nargs="?", type=pathlib.Path, default=default_data())
    ap.add_argument("--per-machine", type=int, default=0, help="clips per machine folder (0 = all)")
    ap.add_argument("--mpdr", type=pathlib.Path, default=ROOT / "target" / "release" / "mpdr")
    args = ap.parse_args()
    if not args.data.is_dir():
        print(f"skipped: no DCASE data at {args.data} (set MPDR_DATA or pass a folder)")
        return 0
    worst_all, n_files, failures = 0.0, 0, 0
    with tempfile.TemporaryDirectory() as tmp:
        for machine in sorted(p for p in args.data.iterdir() if p.is_dir()):
            wavs = sorted(machine.rglob("*.wav"))
            if args.per_machine:
                wavs = wavs[: args.per_machine]
            worst_machine = 0.0
            for wav in wavs:
                y, sr = librosa.load(wav, sr=None, mono=False)
                for pad in ("constant", "reflect"):
                    S = librosa.feature.melspectrogram(
                        y=y, sr=sr, n_fft=1024, hop_length=512, n_mels=128, power=2.0, pad_mode=pad
                    )
                    want = 10.0 * np.log10(S + sys.float_info.epsilon)
                    out = pathlib.Path(tmp) / "f.npy"
                    subprocess.run(
                        [str(args.mpdr), "features", str(wav), "--out", str(out), "--pad", pad],
                        check=True,
                        env={**os.environ, "MPDR_LOG": "warn"},
                    )
                    got = np.load(out)
                    if got.shape != want.shape:
                        print(f"{wav} {pad}: shape {got.shape} vs librosa {want.shape}")
                        failures += 1
                        continue
                    d = float(np.abs(got - want).max())
                    worst_machine = max(worst_machine, d)
                    if d > TOL_DB:
                        print(f"{wav} {pad}: max |delta| {d:.2e} dB > {TOL_DB}")
                        failures += 1
                n_files += 1
            if wavs:
                print(f"{machine.name:8s} {len(wavs):4d} clips, both pad modes: max |delta| = {worst_machine:.2e} dB")
            worst_all = max(worst_all, worst_machine)
    print(f"librosa {librosa.__version__}: {n_files} clips, max |delta| {worst_all:.2e} dB, {failures} over {TOL_DB} dB")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
