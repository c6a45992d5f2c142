#!/usr/bin/env python3
"""Write the librosa golden fixtures for the log-mel front-end (run by developers, not CI).

    python3 -m pip install -r scripts/requirements-dev.txt
    python3 scripts/gen_golden_logmel.py            # writes tests/fixtures/golden/

For each deterministic synthetic signal: `<name>.wav` (float32 WAV, 16 kHz, the exact samples)
and `<name>.<pad>.npy` = 10*log10(librosa.feature.melspectrogram(...) + eps), shape (128, T),
for pad in {constant, reflect}. librosa runs in float64 on the float32 samples, so the
reference is free of float32 round-off (matters for the quiet bands of pure tones).
Also `mel_filterbank.npy`: librosa.filters.mel(sr=16000, n_fft=1024, n_mels=128).
"""
import pathlib
import sys

import librosa
import numpy as np
import soundfile as sf

SR = 16000
OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "golden"


def lcg_spec_signal():
    # MPDR-SPEC §1.4 reference signal.
    s = 12345
    y = np.empty(16000)
    for n in range(16000):
        s = (1664525 * s + 1013904223) % 2**32
        y[n] = 0.2 * (s / 2**32 - 0.5) + 0.3 * np.sin(2 * np.pi * 440 * n / SR)
    return y


def signals():
    t = lambda seconds: np.arange(int(seconds * SR)) / SR
    rng = np.random.default_rng(20231)
    tt = t(1.0)
    f0, f1 = 50.0, 7900.0
    chirp = 0.4 * np.sin(2 * np.pi * (f0 * tt + (f1 - f0) / 2 * tt**2))
    return {
        "tone440": 0.5 * np.sin(2 * np.pi * 440 * t(0.5)),
        "tones": 0.3 * np.sin(2 * np.pi * 100 * t(0.6))
        + 0.2 * np.sin(2 * np.pi * 1234.5 * t(0.6))
        + 0.1 * np.sin(2 * np.pi * 5000 * t(0.6)),
        "chirp": chirp,
        "noise": 0.1 * rng.standard_normal(int(0.7 * SR)),
        "silence": np.zeros(8000),
        "one_sample": np.array([0.25]),
        "short": 0.3 * np.sin(2 * np.pi * 700 * t(700 / SR)) + 0.05 * rng.standard_normal(700),
        "spec_lcg": lcg_spec_signal(),
    }


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    print(f"librosa {librosa.__version__}, numpy {np.__version__}", file=sys.stderr)
    for name, y in signals().items():
        y32 = y.astype(np.float32)
        sf.write(OUT / f"{name}.wav", y32, SR, subtype="FLOAT")
        back, sr = sf.read(OUT / f"{name}.wav", dtype="float32")
        assert sr == SR and np.array_equal(back, y32)
        for pad in ("constant", "reflect"):
            S = librosa.feature.melspectrogram(
                y=y32.astype(np.float64), sr=SR, n_fft=1024, hop_length=512, n_mels=128, power=2.0, pad_mode=pad
            )
            lm = 10.0 * np.log10(S + sys.float_info.epsilon)
            np.save(OUT / f"{name}.{pad}.npy", lm.astype(np.float32))
            print(f"{name:11s} {pad:8s} shape {lm.shape} range [{lm.min():.2f}, {lm.max():.2f}]", file=sys.stderr)
    np.save(OUT / "mel_filterbank.npy", librosa.filters.mel(sr=SR, n_fft=1024, n_mels=128))


if __name__ == "__main__":
    main()
