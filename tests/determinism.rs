//! Same seed, same model: training is bit-for-bit reproducible on CPU. Its own test binary,
//! because libtorch's generator is process-global and parallel tests would interleave draws.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // a test or benchmark: failing loudly is the point

use mpdr::model::ModelKind;
use mpdr::mpdr::recipe::{self, EnergyPreset, Quiet, TrainConfig, TrainData};
use tch::{Device, Kind, Tensor};

#[test]
fn same_seed_gives_identical_models_and_another_seed_does_not() {
    mpdr::device::init_threads();
    tch::manual_seed(0);
    let data = Tensor::randn([256, 24], (Kind::Float, Device::Cpu));
    let probe = Tensor::randn([32, 24], (Kind::Float, Device::Cpu));
    let mut cfg = TrainConfig::default();
    cfg.manifold.latent_dims = vec![3, 5];
    cfg.manifold.hidden = vec![16];
    cfg.manifold.epochs = 2;
    cfg.energy.preset = EnergyPreset::PaperAe128;
    cfg.pretrain.epochs = 2;
    cfg.mpdr_schedule.epochs = 2;
    cfg.mpdr_schedule.batch_size = 64;
    cfg.mpdr.lr = 1e-3;
    let run = |seed: u64| {
        let c = TrainConfig { seed, ..cfg.clone() };
        let b = recipe::train(
            ModelKind::MpdrR,
            &TrainData { train: &data, heldout: None, other_ids: None, other_ids_train: None, n_mels: 8, frames: 3 },
            &mpdr::config::Valid::new(c).unwrap(),
            Device::Cpu,
            &mut Quiet,
            None,
        )
        .unwrap();
        Vec::<f32>::try_from(b.score(&probe, 32).unwrap()).unwrap()
    };
    let (a, b, c) = (run(7), run(7), run(8));
    assert_eq!(a, b, "same seed must give the same energies");
    assert_ne!(a, c, "another seed should give another model");
}
