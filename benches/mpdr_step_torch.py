#!/usr/bin/env python3
"""The same MPDR-R iteration as benches/mpdr_step.rs, in PyTorch (MPDR-SPEC §2.4), one thread.

    python3 benches/mpdr_step_torch.py [--device cpu|cuda] [--iters 10]
Prints the median seconds per iteration for the dcase_ae1024, paper_ae128 and idnn energies.
"""
import argparse
import statistics
import time

import torch
import torch.nn as nn


def mlp(sizes, act):
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


LRelu = lambda: nn.LeakyReLU(0.2)  # noqa: E731


def proj(v):
    return v / (v.norm(dim=-1, keepdim=True) + 1e-6)


class AE(nn.Module):
    def __init__(self, d, hid, dz, enc_act, dec_act, l2=1e-5):
        super().__init__()
        self.enc, self.dec, self.l2 = mlp([d, *hid, dz], enc_act), mlp([dz, *hid[::-1], d], dec_act), l2

    def encode(self, x):
        return proj(self.enc(x))

    def energy(self, x):
        return ((x - self.dec(self.encode(x))) ** 2).mean(1)

    def reg(self):
        return self.l2 * sum((p**2).sum() for p in self.enc.parameters())


class IDNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.ctx, self.dec = mlp([512, 128, 128, 128, 128, 32], LRelu), mlp([32, 128, 128, 128, 128, 128], LRelu)

    def energy(self, x):
        c = torch.cat([x[:, :256], x[:, 384:]], 1)
        return ((x[:, 256:384] - self.dec(self.ctx(c))) ** 2).mean(1)

    def reg(self):
        return torch.zeros(())


def iteration(energy, ens, opt, x, gamma=1e-4, steps=5, step=10.0, noise=0.005):
    K = len(ens)
    n = x.shape[0] // K
    negs = []
    for k, ae in enumerate(ens):
        xk = x[k * n : (k + 1) * n]
        sigma = torch.rand(n) * (0.05 - 0.3) + 0.3
        with torch.no_grad():
            zt = proj(ae.encode(xk) + torch.randn(n, ae.enc[-1].out_features) * sigma[:, None])
            xv = ae.dec(zt)
        for _ in range(steps):
            xr = xv.detach().requires_grad_(True)
            cos = (ae.encode(xr) * zt).sum(1) - 1e-6
            E = energy.energy(xr) + gamma * torch.acos(cos.clamp(-1 + 1e-6, 1 - 1e-6)) ** 2 / (2 * sigma**2)
            (g,) = torch.autograd.grad(E.sum(), [xr])
            xv = (xv - step * g + noise * torch.randn_like(xv)).detach()
        negs.append(xv)
    xn = torch.cat(negs)
    ep, en = energy.energy(x), energy.energy(xn)
    loss = ep.mean() - en.mean() + (en**2).mean() + energy.reg()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--iters", type=int, default=10)
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    torch.set_default_device(a.device)
    x = torch.randn(512, 640)
    ens = [AE(640, [1024, 1024], dz, LRelu, LRelu).requires_grad_(False) for dz in (32, 64, 128)]
    energies = {
        "dcase_ae1024": AE(640, [1024, 1024], 32, LRelu, LRelu),
        "paper_ae128": AE(640, [128] * 4, 32, nn.ReLU, LRelu),
        "idnn": IDNN(),
    }
    for name, e in energies.items():
        opt = torch.optim.Adam(e.parameters(), lr=1e-5)
        iteration(e, ens, opt, x)
        times = []
        for _ in range(a.iters):
            t = time.perf_counter()
            iteration(e, ens, opt, x)
            if a.device != "cpu":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
        print(f"torch {torch.__version__} {a.device} {name}: median {statistics.median(times):.4f} s/iteration")


if __name__ == "__main__":
    main()
