//! The whole training recipe (manifold AEs -> pre-training -> MPDR) on a small problem.

use std::cell::Cell;

use mpdr::config::Valid;
use mpdr::model::{Bundle, ModelKind};
use mpdr::mpdr::recipe::{self, EnergyPreset, TrainConfig, TrainData, TrainHooks};
use mpdr::mpdr::train::EpochSummary;
use tch::{Device, Kind, Tensor};

pub(super) fn data(n: i64, w: &Tensor) -> Tensor {
    let g = Tensor::rand([n, 3], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
    let g = Tensor::cat(&[g.sin(), g.cos() * 0.5], 1);
    g.matmul(w) + Tensor::randn([n, 40], (Kind::Float, Device::Cpu)) * 0.02
}

pub(super) fn small_config() -> TrainConfig {
    let mut c = TrainConfig { seed: 5, ..TrainConfig::default() };
    c.manifold.latent_dims = vec![4, 6];
    c.manifold.hidden = vec![32];
    c.manifold.epochs = 3;
    c.manifold.lr = 1e-3;
    c.manifold.batch_size = 64;
    c.energy.preset = EnergyPreset::PaperAe128;
    c.pretrain.epochs = 5;
    c.pretrain.batch_size = 64;
    c.mpdr.lr = 1e-4;
    c.mpdr.visible.steps = 2;
    c.mpdr.visible.step_size = 1.0;
    c.mpdr_schedule.epochs = 2;
    c.mpdr_schedule.batch_size = 64;
    c.mpdr_schedule.validation_samples = 64;
    c
}

#[derive(Default)]
struct Record {
    epochs: Vec<String>,
    stop_after: Option<usize>,
    seen: Cell<usize>,
}

impl TrainHooks for Record {
    fn on_epoch(
        &mut self,
        stage: &str,
        s: &EpochSummary,
        bundle: &Bundle,
    ) -> Result<(), mpdr::mpdr::error::TrainError> {
        assert!(s.loss.is_finite());
        assert_eq!(bundle.manifest.kind, ModelKind::MpdrR);
        self.epochs.push(format!("{stage}:{}", s.epoch));
        self.seen.set(self.seen.get() + 1);
        Ok(())
    }
    fn stop_requested(&self) -> bool {
        self.stop_after.is_some_and(|n| self.seen.get() >= n)
    }
}

#[test]
fn mpdr_r_recipe_trains_every_stage_and_ships_a_loadable_bundle() {
    mpdr::device::init_threads();
    tch::manual_seed(1);
    let w = Tensor::randn([6, 40], (Kind::Float, Device::Cpu));
    let (train, heldout) = (data(600, &w), data(100, &w));
    let mut rec = Record::default();
    let mut b = recipe::train(
        ModelKind::MpdrR,
        &TrainData {
            train: &train,
            heldout: Some(&heldout),
            other_ids: None,
            other_ids_train: None,
            n_mels: 8,
            frames: 5,
        },
        &Valid::new(small_config()).unwrap(),
        Device::Cpu,
        &mut rec,
        None,
    )
    .unwrap();
    let want: Vec<String> =
        ["manifold-0:1", "manifold-0:2", "manifold-0:3", "manifold-1:1", "manifold-1:2", "manifold-1:3"]
            .iter()
            .map(|s| s.to_string())
            .chain((1..=5).map(|e| format!("pretrain:{e}")))
            .chain((1..=2).map(|e| format!("mpdr:{e}")))
            .collect();
    assert_eq!(rec.epochs, want);
    let st = &b.manifest.provenance.stages;
    assert_eq!((st["manifold-0_steps"], st["pretrain_steps"], st["mpdr_steps"]), (30, 50, 20));
    let auc = b.manifest.provenance.metrics["mpdr_epoch2_manifold_uniform_auc"];
    assert!((0.0..=1.0).contains(&auc));
    // The energy learned the data: held-out normals score below isotropic noise of the same scale.
    let noise = Tensor::randn([100, 40], (Kind::Float, Device::Cpu)) * train.std(true);
    let (e_in, e_out) =
        (b.score(&heldout, 64).unwrap().mean(Kind::Float), b.score(&noise, 64).unwrap().mean(Kind::Float));
    assert!(e_in.double_value(&[]) < e_out.double_value(&[]) * 0.5, "{e_in} vs {e_out}");
    // And it survives a save/load.
    let dir = tempfile::tempdir().unwrap();
    b.save(dir.path()).unwrap();
    let back = Bundle::load(dir.path(), Device::Cpu).unwrap();
    assert_eq!(
        Vec::<f32>::try_from(back.score(&heldout, 7).unwrap()).unwrap(),
        Vec::<f32>::try_from(b.score(&heldout, 7).unwrap()).unwrap()
    );
}

#[test]
fn a_stop_request_ends_training_early_with_a_usable_bundle() {
    mpdr::device::init_threads();
    let w = Tensor::randn([6, 40], (Kind::Float, Device::Cpu));
    let train = data(300, &w);
    let mut rec = Record { stop_after: Some(7), ..Default::default() };
    let b = recipe::train(
        ModelKind::MpdrR,
        &TrainData { train: &train, heldout: None, other_ids: None, other_ids_train: None, n_mels: 8, frames: 5 },
        &Valid::new(small_config()).unwrap(),
        Device::Cpu,
        &mut rec,
        None,
    )
    .unwrap();
    assert_eq!(rec.epochs.len(), 7, "stopped after the 7th epoch (first pre-training epoch)");
    assert!(!b.manifest.provenance.stages.contains_key("mpdr_steps"));
    assert!(b.manifest.provenance.stages["pretrain_steps"] > 0);
    let e = b.score(&train, 100).unwrap();
    assert!(e.isfinite().all().int64_value(&[]) == 1);
}
