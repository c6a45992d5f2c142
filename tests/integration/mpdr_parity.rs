//! One MPDR step (perturbation, latent + visible chains, loss, gradients, Adam) against the
//! PyTorch reference of scripts/gen_mpdr_parity.py, in float64, to 1e-5 relative.

use std::collections::{BTreeMap, VecDeque};

use mpdr::mpdr::train::{MpdrObjective, Objective};
use mpdr::mpdr::{sample_negatives, Distance, LatentChain, MpdrConfig, ReplayNoise, VisibleChain};
use mpdr::nn::ae::{AeSpec, AutoEncoder};
use mpdr::nn::scalar::ScalarSpec;
use mpdr::nn::{Activation, EnergySpec, MlpSpec, NetSpec};
use tch::{nn, Device, Kind, Tensor};

use super::util::fixtures;

fn load(name: &str) -> BTreeMap<String, Tensor> {
    let path = fixtures().join(format!("mpdr/{name}.safetensors"));
    Tensor::read_safetensors(&path).unwrap().into_iter().collect()
}

fn set_from(vs: &mut nn::VarStore, file: &BTreeMap<String, Tensor>, prefix: &str) {
    vs.double();
    for (name, mut var) in vs.variables() {
        let src = file.get(&format!("{prefix}{name}")).unwrap_or_else(|| panic!("fixture lacks {prefix}{name}"));
        tch::no_grad(|| var.copy_(src));
    }
}

fn assert_close(what: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.size(), want.size(), "{what}: shape");
    let scale = want.abs().max().double_value(&[]).max(1e-8);
    let err = (got.to_kind(Kind::Double) - want).abs().max().double_value(&[]);
    assert!(err / scale <= 1e-5, "{what}: max |Δ| {err:e} vs scale {scale:e}");
}

fn draws(file: &BTreeMap<String, Tensor>) -> ReplayNoise {
    let draws: VecDeque<Tensor> =
        file.iter().filter(|(k, _)| k.starts_with("draw.")).map(|(_, v)| v.shallow_clone()).collect();
    ReplayNoise { draws }
}

fn run_case(name: &str, energy_spec: EnergySpec, cfg: MpdrConfig) {
    mpdr::device::init_threads();
    let file = load(name);
    let manifold_spec = AeSpec::mlp(12, &[16], 4, &[16], Activation::LeakyRelu, Activation::LeakyRelu);
    let mut ensemble_vs = Vec::new();
    let mut ensemble = Vec::new();
    for k in 0..2 {
        let mut vs = nn::VarStore::new(Device::Cpu);
        ensemble.push(AutoEncoder::new(&vs.root(), &manifold_spec));
        set_from(&mut vs, &file, &format!("manifold{k}."));
        vs.freeze();
        ensemble_vs.push(vs);
    }
    let mut evs = nn::VarStore::new(Device::Cpu);
    let energy = energy_spec.build(&evs.root());
    set_from(&mut evs, &file, "energy.");
    let x = &file["x"];

    let negs = sample_negatives(&energy, &ensemble, x, &cfg, &mut draws(&file));
    assert_close("x_init", &negs.x_init, &file["out.x_init"]);
    assert_close("x_neg", &negs.x_neg, &file["out.x_neg"]);

    let mut obj = MpdrObjective::new(&energy, &evs, &ensemble, cfg, Box::new(draws(&file))).unwrap();
    let stats = obj.step(x).unwrap();
    assert!((stats.loss - file["out.loss"].double_value(&[0])).abs() <= 1e-5 * stats.loss.abs().max(1e-3), "loss");
    assert!((stats.e_pos.unwrap() - file["out.e_pos"].double_value(&[0])).abs() < 1e-9);
    assert!((stats.e_neg.unwrap() - file["out.e_neg"].double_value(&[0])).abs() < 1e-9);
    for (pname, var) in evs.variables() {
        assert_close(&format!("grad {pname}"), &var.grad(), &file[&format!("grad.{pname}")]);
        assert_close(&format!("after-Adam {pname}"), &var, &file[&format!("after.{pname}")]);
    }
    // The frozen manifold AEs were not touched.
    for (k, vs) in ensemble_vs.iter().enumerate() {
        for (pname, var) in vs.variables() {
            assert_close(&format!("manifold{k} {pname}"), &var, &file[&format!("manifold{k}.{pname}")]);
        }
    }
}

#[test]
fn recon_energy_geodesic_step_matches_pytorch() {
    let mut spec = AeSpec::mlp(12, &[16], 4, &[16], Activation::Relu, Activation::LeakyRelu);
    spec.l2_enc = 1e-3;
    let cfg = MpdrConfig {
        gamma: 1e-2,
        latent: LatentChain { steps: 2, step_size: 0.1, noise: 0.01, temperature: 1.0 },
        visible: VisibleChain { steps: 3, step_size: 1.0, noise: 0.005, bound: None },
        lr: 1e-3,
        ..MpdrConfig::default()
    };
    run_case("recon_geodesic", EnergySpec::Ae(spec), cfg);
}

#[test]
fn scalar_energy_euclidean_bounded_step_matches_pytorch() {
    let spec = ScalarSpec {
        net: NetSpec::Mlp(MlpSpec::new(12, &[16, 16], 1, Activation::LeakyRelu)),
        out_scale: false,
        l2: 0.0,
    };
    let cfg = MpdrConfig {
        sigma_min: 0.1,
        sigma_max: 0.2,
        gamma: 1e-2,
        distance: Distance::Euclidean,
        temperature: 2.0,
        latent: LatentChain { steps: 0, ..LatentChain::default() },
        visible: VisibleChain { steps: 4, step_size: 0.5, noise: 0.01, bound: Some([-1.5, 1.5]) },
        gamma_vx: 0.5,
        lr: 1e-3,
        ..MpdrConfig::default()
    };
    run_case("scalar_euclidean", EnergySpec::Scalar(spec), cfg);
}
