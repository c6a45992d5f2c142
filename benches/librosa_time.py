#!/usr/bin/env python3
"""Time librosa on the clip benches/features.rs uses (10 s, 16 kHz), one thread.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python3 benches/librosa_time.py
Prints the median time of melspectrogram + 10*log10, and with 5-frame stacking.
"""
import os
import sys
import timeit

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import librosa  # noqa: E402
import numpy as np  # noqa: E402


def clip():
    s = 12345
    n = np.arange(160000)
    u = np.empty(160000)
    for i in range(160000):
        s = (1664525 * s + 1013904223) % 2**32
        u[i] = s / 2**32
    t = n / 16000
    return (0.2 * (u - 0.5) + 0.3 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 3150 * t)).astype(np.float32)


def logmel(y):
    S = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=1024, hop_length=512, n_mels=128, power=2.0)
    return 10.0 * np.log10(S + sys.float_info.epsilon)


def vectors(y):
    lm = logmel(y)
    v = lm.shape[1] - 4
    return np.concatenate([lm[:, t : t + v] for t in range(5)], axis=0).T


def main():
    y = clip()
    logmel(y)  # warm caches (filterbank, FFT plan)
    for name, fn in (("logmel", logmel), ("logmel+vectors", vectors)):
        runs = timeit.repeat(lambda: fn(y), number=20, repeat=7)
        best = sorted(r / 20 for r in runs)
        print(f"librosa {librosa.__version__} {name}: median {best[3] * 1e3:.2f} ms, min {best[0] * 1e3:.2f} ms per 10-s clip")


if __name__ == "__main__":
    main()
