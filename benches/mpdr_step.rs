//! One MPDR-R training iteration at DCASE scale on one CPU thread: batch 512 of 640-D
//! vectors, 3 manifold AEs (640-1024-1024-D_z, D_z 32/64/128), 5 visible steps, the released
//! 1024-wide AE energy. Compare with `benches/mpdr_step_torch.py` (same iteration, PyTorch).
//! Also the paper's 128-wide energy and the IDNN energy, which are far cheaper.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // a test or benchmark: failing loudly is the point

use criterion::{criterion_group, criterion_main, Criterion};
use mpdr::mpdr::recipe::{EnergyPreset, TrainConfig};
use mpdr::mpdr::train::{MpdrObjective, Objective};
use mpdr::mpdr::TorchNoise;
use mpdr::nn::ae::AutoEncoder;
use tch::{nn, Device, Kind, Tensor};

fn bench(c: &mut Criterion) {
    mpdr::device::init_threads();
    tch::manual_seed(0);
    let device = if tch::Cuda::is_available() { Device::Cuda(0) } else { Device::Cpu };
    let x = Tensor::randn([512, 640], (Kind::Float, device));
    let base = TrainConfig::default();
    let mut ens_vs = Vec::new();
    let mut ens = Vec::new();
    for spec in base.manifold_specs(640) {
        let mut vs = nn::VarStore::new(device);
        ens.push(AutoEncoder::new(&vs.root(), &spec));
        vs.freeze();
        ens_vs.push(vs);
    }
    let mut group =
        c.benchmark_group(format!("mpdr_iteration_{}", if device == Device::Cpu { "cpu1" } else { "cuda" }));
    group.sample_size(10);
    for (name, preset) in [
        ("dcase_ae1024", EnergyPreset::DcaseAe1024),
        ("paper_ae128", EnergyPreset::PaperAe128),
        ("idnn", EnergyPreset::Idnn),
    ] {
        let mut cfg = base.clone();
        cfg.energy.preset = preset;
        let vs = nn::VarStore::new(device);
        let energy = cfg.energy_spec(640, 128, 5).build(&vs.root());
        let mut obj = MpdrObjective::new(&energy, &vs, &ens, cfg.mpdr.clone(), Box::new(TorchNoise)).unwrap();
        group.bench_function(name, |b| {
            b.iter(|| {
                let s = obj.step(&x).unwrap();
                if device != Device::Cpu {
                    tch::Cuda::synchronize(0);
                }
                s
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
