#!/usr/bin/env python3
"""PyTorch reference of one MPDR training step, written from MPDR-SPEC §2.4 (run by developers,
not CI):

    python3 -m pip install torch==2.13.0 safetensors
    python3 scripts/gen_mpdr_parity.py        # writes tests/fixtures/mpdr/*.safetensors

Float64 throughout. Each case file holds: the weights (`energy.<name>`, `manifold<k>.<name>`,
names as mpdr's VarStores use them), the batch `x`, every random draw in the order mpdr asks
for them (`draw.<i>`), and the reference results: `out.x_init`, `out.x_neg`, `out.loss`,
`out.e_pos`, `out.e_neg`, `grad.<name>` after backward, `after.<name>` after one Adam step.
"""
import json
import pathlib

import torch
from safetensors.torch import save_file

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "mpdr"
torch.set_default_dtype(torch.float64)


def linear_params(prefix, sizes, gen):
    p = {}
    for i in range(len(sizes) - 1):
        b = 1.0 / sizes[i] ** 0.5
        p[f"{prefix}{i}.weight"] = (torch.rand(sizes[i + 1], sizes[i], generator=gen) * 2 - 1) * b
        p[f"{prefix}{i}.bias"] = (torch.rand(sizes[i + 1], generator=gen) * 2 - 1) * b
    return p


def act(name, x):
    return {"relu": torch.relu, "leaky-relu": lambda t: torch.nn.functional.leaky_relu(t, 0.2), "linear": lambda t: t}[name](x)


def mlp(p, prefix, n_layers, activation, x):
    for i in range(n_layers):
        x = x @ p[f"{prefix}{i}.weight"].T + p[f"{prefix}{i}.bias"]
        if i < n_layers - 1:
            x = act(activation, x)
    return x


def proj(v):
    return v / (v.norm(dim=-1, keepdim=True) + 1e-6)


class AE:
    def __init__(self, p, prefix, enc_layers, dec_layers, enc_act, dec_act, l2_enc):
        self.p, self.prefix = p, prefix
        self.enc_layers, self.dec_layers, self.enc_act, self.dec_act, self.l2 = enc_layers, dec_layers, enc_act, dec_act, l2_enc

    def encode(self, x):
        return proj(mlp(self.p, self.prefix + "enc.", self.enc_layers, self.enc_act, x))

    def decode(self, z):
        return mlp(self.p, self.prefix + "dec.", self.dec_layers, self.dec_act, z)

    def energy(self, x):
        return ((x - self.decode(self.encode(x))) ** 2).mean(dim=1)

    def reg(self):
        return self.l2 * sum((v**2).sum() for k, v in self.p.items() if k.startswith(self.prefix + "enc."))


class Scalar:
    def __init__(self, p, prefix, n_layers, activation):
        self.p, self.prefix, self.n, self.act = p, prefix, n_layers, activation

    def energy(self, x):
        return mlp(self.p, self.prefix + "net.", self.n, self.act, x).reshape(-1)

    def reg(self):
        return torch.zeros(())


def recovery(energy, ae, x, zt, sigma, cfg):
    e = energy.energy(x) / cfg["temperature"]
    z = ae.encode(x)
    if cfg["distance"] == "geodesic":
        cos = (z * zt).sum(1) - 1e-6
        d2 = torch.acos(cos.clamp(-1 + 1e-6, 1 - 1e-6)) ** 2
    else:
        d2 = ((z - zt) ** 2).sum(1)
    return e + cfg["gamma"] * d2 / (2 * sigma**2)


def step(energy, ensemble, x, cfg, draws, gen):
    def draw(shape, uniform=False):
        t = torch.rand(*shape, generator=gen) if uniform else torch.randn(*shape, generator=gen)
        draws.append(t.clone())
        return t

    K = len(ensemble)
    n = x.shape[0] // K
    negs, inits = [], []
    for k, ae in enumerate(ensemble):
        xk = x[k * n : (k + 1) * n].detach()
        sigma = draw((n,), uniform=True) * (cfg["sigma_min"] - cfg["sigma_max"]) + cfg["sigma_max"]
        with torch.no_grad():
            z = ae.encode(xk)
            zt = proj(z + draw(z.shape) * sigma[:, None])
            x0 = ae.decode(zt)
        if cfg["latent_steps"] > 0:
            zc = zt.clone()
            for _ in range(cfg["latent_steps"]):
                zr = zc.detach().requires_grad_(True)
                H = recovery(energy, ae, ae.decode(zr), zt, sigma, cfg).sum()
                (g,) = torch.autograd.grad(H, [zr])
                with torch.no_grad():
                    tangent = g - (g * zc).sum(1, keepdim=True) * zc
                    unit = tangent / tangent.norm(dim=1, keepdim=True)
                    s = zc - unit * cfg["latent_step"] / cfg["latent_temperature"] + draw(zc.shape) * cfg["latent_noise"]
                    zc = s / s.norm(dim=1, keepdim=True)
            with torch.no_grad():
                x0 = ae.decode(zc)
        xv = x0.clone()
        for _ in range(cfg["visible_steps"]):
            xr = xv.detach().requires_grad_(True)
            E = recovery(energy, ae, xr, zt, sigma, cfg).sum()
            (g,) = torch.autograd.grad(E, [xr])
            with torch.no_grad():
                xv = xv - cfg["visible_step"] * g + draw(xv.shape) * cfg["visible_noise"]
                if cfg["bound"] is not None:
                    xv = xv.clamp(*cfg["bound"])
        negs.append(xv.detach())
        inits.append(x0.detach())
    x_neg = torch.cat(negs)
    e_pos, e_neg = energy.energy(x), energy.energy(x_neg)
    loss = e_pos.mean() - e_neg.mean()
    if cfg["scalar"]:
        loss = loss + cfg["gamma_vx"] * ((e_pos**2).mean() + (e_neg**2).mean())
    else:
        loss = loss + cfg["gamma_neg_recon"] * (e_neg**2).mean()
    loss = loss + energy.reg()
    return torch.cat(inits), x_neg, loss, e_pos.mean(), e_neg.mean()


CASES = {
    "recon_geodesic": dict(
        scalar=False, distance="geodesic", gamma=1e-2, temperature=1.0, sigma_min=0.05, sigma_max=0.3,
        latent_steps=2, latent_step=0.1, latent_noise=0.01, latent_temperature=1.0,
        visible_steps=3, visible_step=1.0, visible_noise=0.005, bound=None,
        gamma_neg_recon=1.0, gamma_vx=1.0, l2_enc=1e-3, lr=1e-3,
    ),
    "scalar_euclidean": dict(
        scalar=True, distance="euclidean", gamma=1e-2, temperature=2.0, sigma_min=0.1, sigma_max=0.2,
        latent_steps=0, latent_step=0.1, latent_noise=0.01, latent_temperature=1.0,
        visible_steps=4, visible_step=0.5, visible_noise=0.01, bound=[-1.5, 1.5],
        gamma_neg_recon=1.0, gamma_vx=0.5, l2_enc=0.0, lr=1e-3,
    ),
}
D, DZ, H, K, B = 12, 4, 16, 2, 11  # B = 11: the remainder sample gets no negative


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for name, cfg in CASES.items():
        gen = torch.Generator().manual_seed(7)
        p = {}
        for k in range(K):
            p.update(linear_params(f"manifold{k}.enc.", [D, H, DZ], gen))
            p.update(linear_params(f"manifold{k}.dec.", [DZ, H, D], gen))
        ensemble = [AE(p, f"manifold{k}.", 2, 2, "leaky-relu", "leaky-relu", 0.0) for k in range(K)]
        if cfg["scalar"]:
            p.update(linear_params("energy.net.", [D, H, H, 1], gen))
            energy = Scalar(p, "energy.", 3, "leaky-relu")
        else:
            p.update(linear_params("energy.enc.", [D, H, DZ], gen))
            p.update(linear_params("energy.dec.", [DZ, H, D], gen))
            energy = AE(p, "energy.", 2, 2, "relu", "leaky-relu", cfg["l2_enc"])
        x = torch.randn(B, D, generator=gen)
        weights = {k: v.clone() for k, v in p.items()}
        eparams = {k: v for k, v in p.items() if k.startswith("energy.")}
        for v in eparams.values():
            v.requires_grad_(True)
        draws = []
        x_init, x_neg, loss, ep, en = step(energy, ensemble, x, cfg, draws, gen)
        opt = torch.optim.Adam(list(eparams.values()), lr=cfg["lr"])
        opt.zero_grad()
        loss.backward()
        grads = {f"grad.{k[len('energy.'):]}": v.grad.clone() for k, v in eparams.items()}
        opt.step()
        after = {f"after.{k[len('energy.'):]}": v.detach().clone() for k, v in eparams.items()}
        tensors = {**weights, "x": x, **{f"draw.{i:03d}": d for i, d in enumerate(draws)}}
        tensors.update({"out.x_init": x_init, "out.x_neg": x_neg, "out.loss": loss.detach().reshape(1),
                        "out.e_pos": ep.detach().reshape(1), "out.e_neg": en.detach().reshape(1)})
        tensors.update(grads)
        tensors.update(after)
        meta = {"config": json.dumps(cfg), "torch": torch.__version__}
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(OUT / f"{name}.safetensors"), metadata=meta)
        print(f"{name}: loss {loss.item():.6f}, {len(draws)} draws")


if __name__ == "__main__":
    main()
