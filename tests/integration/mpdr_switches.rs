//! The issue-12 recipe switches, each on a tiny synthetic problem: it changes the negatives or
//! the loss exactly as documented. And the product rule: a broken MPDR stage is not shipped.

use mpdr::config::Valid;
use mpdr::model::ModelKind;
use mpdr::mpdr::diagnose::SplitMixNoise;
use mpdr::mpdr::recipe::{self, Selection, TrainConfig, TrainData};
use mpdr::mpdr::select::{pseudo_anomaly_auc, PseudoAnomaly};
use mpdr::mpdr::train::{MpdrObjective, Objective};
use mpdr::mpdr::{mpdr_loss, sample_negatives, MpdrConfig, Texture, TorchNoise};
use mpdr::nn::ae::{AeSpec, AutoEncoder};
use mpdr::nn::{Activation, Energy};
use tch::{nn, Device, Kind, Tensor};

fn net(vs: &nn::VarStore, latent: i64) -> AutoEncoder {
    let spec = AeSpec::mlp(12, &[16], latent, &[16], Activation::Relu, Activation::LeakyRelu);
    AutoEncoder::new(&vs.root(), &spec)
}

fn close(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn residual_textures_add_the_samples_own_residual_to_the_negatives() {
    tch::manual_seed(1);
    let (vs_e, vs_m) = (nn::VarStore::new(Device::Cpu), nn::VarStore::new(Device::Cpu));
    let (energy, ae) = (net(&vs_e, 3), net(&vs_m, 4));
    let x = Tensor::randn([32, 12], (Kind::Float, Device::Cpu));
    let residual = &x - ae.decode(&ae.encode(&x));
    let ens = [ae];
    let mut cfg = MpdrConfig::default();
    cfg.visible.steps = 0;
    let draw = |cfg: &MpdrConfig| sample_negatives(&energy, &ens, &x, cfg, &mut SplitMixNoise::new(7)).x_neg;
    let plain = draw(&cfg);
    let after = draw(&MpdrConfig { texture: Texture::ResidualAfter, ..cfg.clone() });
    let before = draw(&MpdrConfig { texture: Texture::ResidualBefore, ..cfg.clone() });
    assert!(close(&(&after - &plain), &residual) < 1e-5, "after = spec negative + residual");
    assert!(close(&before, &after) < 1e-5, "without chain steps before and after agree");
    // With chain steps the two differ: the chain runs on the textured start, or before the residual.
    cfg.visible = mpdr::mpdr::VisibleChain { steps: 3, step_size: 10.0, noise: 0.0, bound: None };
    let after = draw(&MpdrConfig { texture: Texture::ResidualAfter, ..cfg.clone() });
    let before = draw(&MpdrConfig { texture: Texture::ResidualBefore, ..cfg.clone() });
    assert!(close(&after, &before) > 1e-4);
    assert!(close(&(&after - draw(&cfg)), &residual) < 1e-5, "after = the spec's chain end + residual");
    // Matched noise: per-dimension std of the added noise follows the residual's.
    cfg.visible.steps = 0;
    let big = Tensor::randn([600, 12], (Kind::Float, Device::Cpu))
        * Tensor::linspace(0.1, 3.0, 12, (Kind::Float, Device::Cpu));
    let r_std = (&big - ens[0].decode(&ens[0].encode(&big))).std_dim([0i64].as_slice(), true, false);
    let spec = sample_negatives(&energy, &ens, &big, &cfg, &mut SplitMixNoise::new(9)).x_neg;
    let cfg_m = MpdrConfig { texture: Texture::MatchedNoise, ..cfg.clone() };
    let matched = sample_negatives(&energy, &ens, &big, &cfg_m, &mut SplitMixNoise::new(9)).x_neg;
    let added = (matched - spec).std_dim([0i64].as_slice(), true, false);
    let ratio = (added / r_std).to_kind(Kind::Double);
    let (lo, hi) = (ratio.min().double_value(&[]), ratio.max().double_value(&[]));
    assert!(lo > 0.8 && hi < 1.2, "added noise std / residual std per dim in [{lo}, {hi}]");
}

#[test]
fn the_anchor_adds_its_pull_and_vanishes_at_the_start() {
    tch::manual_seed(2);
    let vs = nn::VarStore::new(Device::Cpu);
    let energy = net(&vs, 3);
    let params = vs.trainable_variables();
    let start: Vec<Tensor> = params.iter().map(|p| p.detach().copy()).collect();
    let x = Tensor::randn([16, 12], (Kind::Float, Device::Cpu));
    let xn = Tensor::randn([16, 12], (Kind::Float, Device::Cpu));
    let cfg = MpdrConfig { anchor: 0.5, energy_reg: false, ..MpdrConfig::default() };
    let loss = |a: Option<&[Tensor]>| mpdr_loss(&energy, &x, &xn, &cfg, &params, a).0.double_value(&[]);
    assert!((loss(Some(&start)) - loss(None)).abs() < 1e-6, "no pull at θ₀");
    let moved: Vec<Tensor> = start.iter().map(|p| p - 0.01).collect();
    let n: i64 = params.iter().map(|p| p.numel() as i64).sum();
    let want = 0.5 * n as f64 * 1e-4;
    assert!((loss(Some(&moved)) - loss(None) - want).abs() < 1e-4 * want.max(1.0), "pull = anchor·Σ(θ−θ₀)²");
}

/// One short MPDR objective run on a fresh problem; everything compared comes from this one
/// run (tests in this binary share libtorch's generator, so two runs need not start alike).
struct Run {
    start: Vec<Tensor>,
    /// The weights before `finish` (the raw ones when EMA is on).
    raw: Vec<Tensor>,
    /// The weights the stage leaves in place.
    end: Vec<Tensor>,
    e_neg: Vec<f64>,
    /// E of the first row of `real` under the starting weights.
    e_real0: Option<f64>,
}

fn objective_run(cfg: MpdrConfig, ema: f64, steps: usize, real: Option<Tensor>) -> Run {
    tch::manual_seed(3);
    let (vs_e, vs_m) = (nn::VarStore::new(Device::Cpu), nn::VarStore::new(Device::Cpu));
    let (energy, ae) = (net(&vs_e, 3), net(&vs_m, 4));
    let ens = [ae];
    let x = Tensor::randn([64, 12], (Kind::Float, Device::Cpu));
    let copies =
        |vs: &nn::VarStore| -> Vec<Tensor> { vs.trainable_variables().iter().map(|p| p.detach().copy()).collect() };
    let start = copies(&vs_e);
    let e_real0 = real.as_ref().map(|r| energy.energy(&r.narrow(0, 0, 1), false).double_value(&[0]));
    let mut obj = MpdrObjective::new(&energy, &vs_e, &ens, cfg, Box::new(TorchNoise))
        .unwrap()
        .with_ema(ema)
        .with_real_negatives(real);
    let mut e_neg = Vec::new();
    for _ in 0..steps {
        e_neg.push(obj.step(&x).unwrap().e_neg.unwrap());
    }
    let raw = copies(&vs_e);
    obj.finish();
    Run { start, raw, end: copies(&vs_e), e_neg, e_real0 }
}

fn max_change(a: &[Tensor], b: &[Tensor]) -> f64 {
    a.iter().zip(b).map(|(x, y)| close(x, y)).fold(0.0, f64::max)
}

#[test]
fn warm_up_scales_the_first_steps_and_ema_ships_the_averaged_weights() {
    let lr = 1e-2;
    let base = MpdrConfig { lr, ..MpdrConfig::default() };
    let r = objective_run(base.clone(), 0.0, 1, None);
    let plain = max_change(&r.start, &r.end);
    assert!((plain - lr).abs() < 0.2 * lr, "Adam's first step moves a weight by ≈ lr: {plain}");
    let r = objective_run(MpdrConfig { warmup_steps: 10, ..base.clone() }, 0.0, 1, None);
    let warm = max_change(&r.start, &r.end);
    assert!((warm - lr / 10.0).abs() < 0.2 * lr / 10.0, "warm-up step 1 of 10: {warm}");
    let r = objective_run(base, 0.9, 20, None);
    let (d_raw, d_avg) = (max_change(&r.start, &r.raw), max_change(&r.start, &r.end));
    assert!(max_change(&r.raw, &r.end) > 1e-4, "the stage ends with the EMA weights, not the raw ones");
    assert!(d_avg < d_raw, "the average lags behind the raw weights: {d_avg} vs {d_raw}");
    let no_ema = objective_run(MpdrConfig { lr, ..MpdrConfig::default() }, 0.0, 3, None);
    assert_eq!(max_change(&no_ema.raw, &no_ema.end), 0.0, "without EMA the raw weights stay");
}

#[test]
fn real_negatives_replace_their_share_and_neg_equilibrium_rescales_gamma() {
    tch::manual_seed(4);
    let constant = Tensor::full([50, 12], 5.0, (Kind::Float, Device::Cpu));
    let all_real = MpdrConfig { other_ids_negatives: 1.0, lr: 1e-9, ..MpdrConfig::default() };
    let r = objective_run(all_real.clone(), 0.0, 1, Some(constant.shallow_clone()));
    let want = r.e_real0.unwrap();
    // E(x⁻) of the step is taken before the optimiser moves: every negative is the real row.
    assert!((r.e_neg[0] - want).abs() < 1e-5 * want.max(1.0), "every negative is a real row: {} vs {want}", r.e_neg[0]);
    let none = objective_run(MpdrConfig { other_ids_negatives: 0.0, ..all_real }, 0.0, 1, Some(constant));
    assert!((none.e_neg[0] - none.e_real0.unwrap()).abs() > 1e-3, "share 0 keeps the manifold negatives");

    tch::manual_seed(3);
    let (vs_e, vs_m) = (nn::VarStore::new(Device::Cpu), nn::VarStore::new(Device::Cpu));
    let (energy, ae) = (net(&vs_e, 3), net(&vs_m, 4));
    let ens = [ae];
    let x = Tensor::randn([64, 12], (Kind::Float, Device::Cpu));
    let e0 = energy.energy(&x, false).mean(Kind::Double).double_value(&[]);
    let cfg = MpdrConfig { neg_equilibrium: 2.0, ..MpdrConfig::default() };
    let mut obj = MpdrObjective::new(&energy, &vs_e, &ens, cfg, Box::new(TorchNoise)).unwrap();
    obj.step(&x).unwrap();
    let g = obj.gamma_neg_recon.unwrap();
    assert!((g - 1.0 / (4.0 * e0)).abs() < 1e-6 * g, "γ = 1/(2·k·Ē₀): {g} vs {}", 1.0 / (4.0 * e0));
}

use super::recipe::data;

/// The recipe test's small problem with one manifold AE, the spec's negatives and push (so an
/// absurd lr wrecks the energy without overflowing), and the watch's diagnostics on.
fn small(select: Selection, mpdr_lr: f64) -> TrainConfig {
    let mut c = super::recipe::small_config();
    c.manifold.latent_dims = vec![4];
    c.manifold.epochs = 2;
    c.pretrain.epochs = 8;
    c.mpdr.lr = mpdr_lr;
    c.mpdr.texture = Texture::None;
    c.mpdr.neg_equilibrium = 0.0;
    c.mpdr.visible.steps = 1;
    c.mpdr.visible.step_size = 10.0;
    c.mpdr_schedule.validation_samples = 0;
    c.mpdr_schedule.select = select;
    c.mpdr_schedule.diagnostics = true;
    c
}

#[test]
fn a_broken_mpdr_stage_is_not_shipped() {
    mpdr::device::init_threads();
    tch::manual_seed(1);
    let w = Tensor::randn([6, 40], (Kind::Float, Device::Cpu));
    let (train, heldout) = (data(400, &w), data(100, &w));
    let others = data(100, &(w.shallow_clone() * -1.0));
    let input = TrainData {
        train: &train,
        heldout: Some(&heldout),
        other_ids: Some(&others),
        other_ids_train: None,
        n_mels: 8,
        frames: 5,
    };
    let run = |select, lr| {
        recipe::train(
            ModelKind::MpdrR,
            &input,
            &Valid::new(small(select, lr)).unwrap(),
            Device::Cpu,
            &mut recipe::Quiet,
            None,
        )
        .unwrap()
    };
    // An absurd learning rate (2,000x the default) wrecks the energy within two epochs.
    let broken = run(Selection::Last, 0.02);
    let mut guarded = run(Selection::Guard, 0.02);
    let sh = broken.manifest.provenance.shipped.clone().unwrap();
    assert_eq!((sh.rule.as_str(), sh.shipped.as_str(), sh.epoch), ("last", "mpdr", 2));
    assert!(sh.score_last < sh.score_pretrained, "the broken stage scores below its start: {sh:?}");
    let g = guarded.manifest.provenance.shipped.clone().unwrap();
    assert_eq!((g.rule.as_str(), g.shipped.as_str(), g.epoch), ("guard", "pretrained", 0), "{g:?}");
    assert!(g.reason.contains("pre-trained"), "{}", g.reason);
    // Labelled by what it scores with, without the manifold AEs it does not use (issue 26).
    assert_eq!(guarded.manifest.kind, ModelKind::Ae);
    assert!(guarded.manifest.manifold.is_empty() && guarded.manifold.is_empty() && guarded.manifold_vs.is_empty());
    assert_eq!((broken.manifest.kind, broken.manifold.len()), (ModelKind::MpdrR, 1), "MPDR shipped: kept whole");
    let saved = tempfile::tempdir().unwrap();
    guarded.save(saved.path()).unwrap();
    let loaded = mpdr::model::Bundle::load(saved.path(), Device::Cpu).unwrap();
    assert_eq!((loaded.manifest.kind, loaded.manifold.len()), (ModelKind::Ae, 0), "it loads as an ae bundle");
    // The shipped weights are the ones scored: recompute the criterion of each bundle's energy
    // on the watch's own pseudo-anomalies (deterministic, independent of libtorch's generator,
    // which the tests running in parallel share).
    let criterion = |b: &mpdr::model::Bundle| {
        let p = PseudoAnomaly { n_mels: 8, frames: 5, band: 1, shift: 2.0, clamp: 3.0 };
        pseudo_anomaly_auc(&b.energy, &heldout, &p.make(&heldout, 5 ^ 0x5EED)).unwrap()
    };
    assert_eq!(criterion(&guarded), g.score_pretrained, "the guard shipped exactly the pre-trained energy");
    assert_eq!(criterion(&broken), sh.score_last, "`last` shipped the broken last epoch");
    // A sane stage is shipped by the guard when it does not lose on the criterion.
    let sane = run(Selection::Guard, 1e-6);
    let s = sane.manifest.provenance.shipped.unwrap();
    assert!(s.margin > 0.0, "one standard error by default: {s:?}");
    assert_eq!(s.shipped == "mpdr", s.score_last > s.score_pretrained + s.margin, "{s:?}");
    for k in
        ["mpdr_epoch0_criterion", "mpdr_epoch2_other_ids_auc", "mpdr_epoch2_diag_probe_auc", "mpdr_epoch1_diag_e_neg"]
    {
        assert!(broken.manifest.provenance.metrics.contains_key(k), "{k} recorded");
    }
}

#[test]
fn a_fused_bundle_scores_the_mean_of_both_standardised_energies_and_survives_save_and_load() {
    mpdr::device::init_threads();
    tch::manual_seed(6);
    let w = Tensor::randn([6, 40], (Kind::Float, Device::Cpu));
    let (train, heldout) = (data(400, &w), data(100, &w));
    let input = TrainData {
        train: &train,
        heldout: Some(&heldout),
        other_ids: None,
        other_ids_train: None,
        n_mels: 8,
        frames: 5,
    };
    let mut cfg = small(Selection::Last, 1e-3);
    cfg.mpdr_schedule.fuse = true;
    let mut b = recipe::train(
        ModelKind::MpdrR,
        &input,
        &Valid::new(cfg.clone()).unwrap(),
        Device::Cpu,
        &mut recipe::Quiet,
        None,
    )
    .unwrap();
    let f = b.manifest.fusion.expect("MPDR shipped, so the bundle is fused");
    let (_, reference) = b.reference.as_ref().unwrap();
    let (e, e_ref) = tch::no_grad(|| (b.energy.energy(&heldout, false), reference.energy(&heldout, false)));
    let want = ((&e - f.energy_mean) / f.energy_std + (&e_ref - f.reference_mean) / f.reference_std) * 0.5;
    let got = b.score(&heldout, 33).unwrap();
    assert!(close(&got, &want) < 1e-5, "score = mean of the standardised energies");
    assert!(got.mean(Kind::Double).double_value(&[]).abs() < 1e-4, "held-out normals average 0 after fusion");
    assert!(close(&e, &e_ref) > 1e-6, "the reference is the pre-trained energy, not the MPDR one");
    let dir = tempfile::tempdir().unwrap();
    b.save(dir.path()).unwrap();
    assert!(dir.path().join("reference.safetensors").exists());
    let back = mpdr::model::Bundle::load(dir.path(), Device::Cpu).unwrap();
    assert!(close(&back.score(&heldout, 7).unwrap(), &got) < 1e-6);
}

#[test]
fn mel_shifted_negatives_move_every_frame_by_one_or_two_bins_with_edges_repeated() {
    let (n, frames, n_mels) = (64i64, 3i64, 8i64);
    // Row r, frame f, bin m holds 100·r + 10·f + m: a shift is visible in every cell.
    let cells: Vec<f32> = (0..n * frames * n_mels)
        .map(|i| (100 * (i / (frames * n_mels)) + 10 * (i / n_mels % frames) + i % n_mels) as f32)
        .collect();
    let x = Tensor::from_slice(&cells).view([n, frames * n_mels]);
    let y = mpdr::mpdr::mel_shifted(&x, n_mels, 2, &mut SplitMixNoise::new(11));
    let (xv, yv) = (Vec::<f32>::try_from(x.flatten(0, -1)).unwrap(), Vec::<f32>::try_from(y.flatten(0, -1)).unwrap());
    let mut seen = std::collections::BTreeSet::new();
    for r in 0..n as usize {
        let row = |v: &[f32], f: usize, m: usize| v[r * 24 + f * 8 + m];
        // The shift is the one k in ±1, ±2 that explains bin 4 of frame 0.
        let k = [-2i64, -1, 1, 2]
            .into_iter()
            .find(|&k| row(&yv, 0, 4) == row(&xv, 0, (4 - k) as usize))
            .expect("a shift of 1 or 2 bins");
        seen.insert(k);
        for f in 0..3 {
            for m in 0..8i64 {
                let src = (m - k).clamp(0, 7) as usize;
                assert_eq!(row(&yv, f, m as usize), row(&xv, f, src), "row {r} frame {f} bin {m} shift {k}");
            }
        }
    }
    assert_eq!(seen.len(), 4, "all four shifts occur: {seen:?}");
}
