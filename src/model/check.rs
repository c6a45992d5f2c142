//! Every manifest field against its working range and against the others, before a network
//! is built from it (a `hidden = [2^40]` would allocate terabytes, `frames = 0` never ends a
//! window): sizes positive and bounded, the energy's input = n_mels × frames, the scaler as
//! long as the input and finite, thresholds and fusion statistics finite. Weights are checked
//! finite once loaded ([`non_finite_tensor`]).

use std::collections::BTreeMap;

use tch::nn::VarStore;

use super::{Manifest, Scaler};
use crate::config::Problems;
use crate::nn::ae::AeSpec;
use crate::nn::{EnergySpec, MlpSpec, NetSpec};

/// Largest layer width, latent or image side a bundle may declare.
pub const MAX_WIDTH: i64 = 1 << 16;
/// Largest number of parameters of one network (4 GB of float32).
pub const MAX_PARAMETERS: i64 = 1 << 30;

fn size(p: &mut Problems, key: &str, v: i64) {
    if !(1..=MAX_WIDTH).contains(&v) {
        p.push(key, format!("must be in 1..={MAX_WIDTH}, got {v}"));
    }
}

/// Checks a network; returns (input dim, output dim, parameter count) when its sizes are sane.
fn net(p: &mut Problems, key: &str, n: &NetSpec) -> Option<(i64, i64, i64)> {
    let before = p.0.len();
    let dims = match n {
        NetSpec::Mlp(MlpSpec { input, hidden, output, .. }) => {
            size(p, &format!("{key}.input"), *input);
            size(p, &format!("{key}.output"), *output);
            if hidden.len() > 64 {
                p.push(format!("{key}.hidden"), format!("at most 64 layers, got {}", hidden.len()));
            }
            for (i, h) in hidden.iter().enumerate() {
                size(p, &format!("{key}.hidden[{i}]"), *h);
            }
            let widths: Vec<i64> = std::iter::once(*input).chain(hidden.iter().copied()).chain([*output]).collect();
            let params = widths
                .windows(2)
                .fold(0i64, |acc, w| acc.saturating_add(w[0].saturating_mul(w[1]).saturating_add(w[1])));
            (*input, *output, params)
        }
        NetSpec::ConvEncoder(c) => {
            for (k, v) in [
                ("in_channels", c.in_channels),
                ("size", c.size),
                ("nh", c.nh),
                ("nh_mlp", c.nh_mlp),
                ("output", c.output),
            ] {
                size(p, &format!("{key}.{k}"), v);
            }
            let params =
                c.nh.saturating_mul(c.nh)
                    .saturating_mul(64 * 9)
                    .saturating_add(c.nh_mlp.saturating_mul(c.nh.saturating_mul(8)));
            (c.in_channels.saturating_mul(c.size).saturating_mul(c.size), c.output, params)
        }
        NetSpec::ConvDecoder(c) => {
            for (k, v) in [("latent", c.latent), ("out_channels", c.out_channels), ("nh", c.nh)] {
                size(p, &format!("{key}.{k}"), v);
            }
            let params =
                c.nh.saturating_mul(c.nh)
                    .saturating_mul(64 * 9)
                    .saturating_add(c.latent.saturating_mul(c.nh.saturating_mul(8)));
            (c.latent, 0, params)
        }
    };
    if p.0.len() > before {
        return None;
    }
    if dims.2 > MAX_PARAMETERS {
        p.push(key, format!("has about {} parameters, more than the {MAX_PARAMETERS} a bundle may have", dims.2));
        return None;
    }
    Some(dims)
}

fn autoencoder(p: &mut Problems, key: &str, s: &AeSpec) -> Option<i64> {
    size(p, &format!("{key}.latent"), s.latent);
    if !(s.l2_enc.is_finite() && s.l2_enc >= 0.0) {
        p.push(format!("{key}.l2_enc"), format!("must be finite and >= 0, got {}", s.l2_enc));
    }
    let enc = net(p, &format!("{key}.encoder"), &s.encoder);
    let dec = net(p, &format!("{key}.decoder"), &s.decoder);
    let (Some((input, enc_out, _)), Some((dec_in, dec_out, _))) = (enc, dec) else { return None };
    if enc_out != s.latent {
        p.push(format!("{key}.encoder.output"), format!("must equal latent = {}, got {enc_out}", s.latent));
    }
    if dec_in != s.latent {
        p.push(format!("{key}.decoder.input"), format!("must equal latent = {}, got {dec_in}", s.latent));
    }
    if dec_out != 0 && dec_out != input {
        p.push(format!("{key}.decoder.output"), format!("must equal the encoder's input = {input}, got {dec_out}"));
    }
    Some(input)
}

/// The energy's input dimension, when its sizes are sane.
fn energy(p: &mut Problems, e: &EnergySpec) -> Option<i64> {
    match e {
        EnergySpec::Ae(s) => autoencoder(p, "energy", s),
        EnergySpec::Idnn(s) => {
            size(p, "energy.n_mels", s.n_mels);
            if !(3..=64).contains(&s.frames) {
                p.push("energy.frames", format!("an IDNN needs 3..=64 frames, got {}", s.frames));
            }
            size(p, "energy.latent", s.latent);
            for (k, list) in [("context_hidden", &s.context_hidden), ("decoder_hidden", &s.decoder_hidden)] {
                if list.len() > 64 {
                    p.push(format!("energy.{k}"), format!("at most 64 layers, got {}", list.len()));
                }
                for (i, h) in list.iter().enumerate() {
                    size(p, &format!("energy.{k}[{i}]"), *h);
                }
            }
            p.is_empty().then(|| s.n_mels * s.frames)
        }
        EnergySpec::Scalar(s) => {
            let (input, output, _) = net(p, "energy.net", &s.net)?;
            if output != 1 {
                p.push("energy.net.output", format!("a scalar energy has one output, got {output}"));
            }
            Some(input)
        }
        // A D × D factor per component: D ≤ 4096 and k ≤ 64 keep a bundle under 8 GB.
        EnergySpec::Gaussian(s) => {
            if !(1..=4096).contains(&s.dim) {
                p.push("energy.dim", format!("must be in 1..=4096, got {}", s.dim));
            }
            p.is_empty().then_some(s.dim)
        }
        EnergySpec::GaussResidual(s) => {
            if !(1..=4096).contains(&s.gaussian.dim) {
                p.push("energy.gaussian.dim", format!("must be in 1..=4096, got {}", s.gaussian.dim));
            }
            let (input, output, _) = net(p, "energy.correction", &NetSpec::Mlp(s.correction.clone()))?;
            if output != 1 || input != s.gaussian.dim {
                p.push(
                    "energy.correction",
                    format!("must map the {}-D input to one output, got {input} -> {output}", s.gaussian.dim),
                );
            }
            p.is_empty().then_some(s.gaussian.dim)
        }
        EnergySpec::Gmm(s) => {
            if !(1..=4096).contains(&s.dim) {
                p.push("energy.dim", format!("must be in 1..=4096, got {}", s.dim));
            }
            if !(1..=64).contains(&s.components) {
                p.push("energy.components", format!("must be in 1..=64, got {}", s.components));
            }
            if !(s.reg.is_finite() && s.reg >= 0.0) {
                p.push("energy.reg", format!("must be finite and >= 0, got {}", s.reg));
            }
            p.is_empty().then_some(s.dim)
        }
    }
}

fn finite_list(p: &mut Problems, key: &str, v: &[f32], positive: bool) {
    if let Some((i, x)) = v.iter().enumerate().find(|(_, x)| !x.is_finite() || (positive && **x <= 0.0)) {
        let want = if positive { "finite and > 0" } else { "finite" };
        p.push(format!("{key}[{i}]"), format!("must be {want}, got {x}"));
    }
}

fn scaler(p: &mut Problems, s: &Scaler, dim: Option<i64>) {
    if let Some(d) = dim {
        for (k, v) in [("mean", &s.mean), ("std", &s.std)] {
            if v.len() as i64 != d {
                p.push(format!("scaler.{k}"), format!("has {} entries, the energy's input has {d}", v.len()));
            }
        }
    }
    finite_list(p, "scaler.mean", &s.mean, false);
    finite_list(p, "scaler.std", &s.std, true);
    if let Some(c) = s.clamp {
        if !(c.is_finite() && c > 0.0) {
            p.push("scaler.clamp", format!("must be finite and > 0, got {c}"));
        }
    }
}

/// The energy a kind of bundle is trained with, and whether it has manifold autoencoders.
fn kind_matches(p: &mut Problems, m: &Manifest) {
    use crate::model::ModelKind as K;
    let name = |e: &EnergySpec| match e {
        EnergySpec::Ae(_) => "autoencoder",
        EnergySpec::Idnn(_) => "IDNN",
        EnergySpec::Scalar(_) => "scalar",
        EnergySpec::Gaussian(_) => "gaussian",
        EnergySpec::GaussResidual(_) => "gaussian-residual",
        EnergySpec::Gmm(_) => "gmm",
    };
    let want = match m.kind {
        K::Ae | K::MpdrR => "autoencoder",
        K::Idnn | K::MpdrIdnn => "IDNN",
        K::MpdrS => "scalar",
        K::Gaussian => "gaussian",
        K::Gmm => "gmm",
        K::MpdrGaussian => "gaussian-residual",
    };
    if name(&m.energy) != want {
        p.push("energy", format!("a {} bundle has a {want} energy, this one has a {} energy", m.kind, name(&m.energy)));
    }
    if m.kind.is_mpdr() == m.manifold.is_empty() {
        let need = if m.kind.is_mpdr() { "one or more [[manifold]] autoencoders" } else { "no [[manifold]]" };
        p.push("manifold", format!("a {} bundle has {need}, this one has {}", m.kind, m.manifold.len()));
    }
}

/// Every problem of a manifest, keys as in `manifest.toml`.
pub fn problems(m: &Manifest) -> Problems {
    let mut p = Problems::default();
    kind_matches(&mut p, m);
    let input = energy(&mut p, &m.energy);
    for (k, ae) in m.manifold.iter().enumerate() {
        let key = format!("manifold[{k}]");
        if let (Some(i), Some(want)) = (autoencoder(&mut p, &key, ae), input) {
            if i != want {
                p.push(format!("{key}.encoder.input"), format!("must equal the energy's input = {want}, got {i}"));
            }
        }
    }
    if let Some(f) = &m.features {
        f.validate("features", &mut p);
        let dim = f.model_dim() as i64;
        if let Some(i) = input {
            if i != dim && p.is_empty() {
                let what = if f.profile.is_some() { "n_mels × profile statistics" } else { "n_mels × frames" };
                p.push("energy", format!("takes {i}-D vectors, the features make {what} = {dim}"));
            }
        }
        if m.scaler.is_none() {
            p.push("scaler", "an audio model needs its [scaler] (the training vectors' mean and std)");
        }
        if let Some(b) = &m.band_stats {
            for (k, v) in [("mean", &b.mean), ("std", &b.std)] {
                if v.len() != f.n_mels || v.iter().any(|x| !x.is_finite()) {
                    p.push(
                        format!("band_stats.{k}"),
                        format!("must be {} finite numbers (one per mel band)", f.n_mels),
                    );
                }
            }
            // Explanations divide by the spread: a zero one makes every band infinitely abnormal.
            if b.std.iter().any(|x| *x <= 0.0) {
                p.push("band_stats.std", "every band's spread must be > 0");
            }
        }
    }
    if let Some(Err((k, why))) = m.levels.as_ref().map(|l| l.check()) {
        p.push(format!("levels.{k}"), why);
    }
    if let Some(s) = &m.scaler {
        scaler(&mut p, s, input);
    }
    if let Some(t) = &m.threshold {
        threshold(&mut p, t);
        // A reconstruction error is never negative: a threshold <= 0 alarms on everything.
        let error_energy = matches!(m.kind, crate::model::ModelKind::Ae | crate::model::ModelKind::Idnn);
        if error_energy && m.fusion.is_none() && t.value <= 0.0 {
            p.push(
                "threshold.value",
                format!("must be > 0 for a {} bundle (its scores are errors >= 0), got {}", m.kind, t.value),
            );
        }
    }
    if let Some(f) = &m.fusion {
        let ok = [f.energy_mean, f.reference_mean].iter().all(|v| v.is_finite())
            && [f.energy_std, f.reference_std].iter().all(|v| v.is_finite() && *v > 0.0);
        if !ok {
            p.push("fusion", "means must be finite and standard deviations finite and > 0");
        }
    }
    p
}

/// How a threshold may have been set.
pub const THRESHOLD_METHODS: [&str; 4] = ["gamma-moments", "empirical-quantile", "gamma-fit", "manual"];

/// A threshold a detector can use, and a calibration the console's false-alarm estimate and
/// the daemon's window check can read.
fn threshold(p: &mut Problems, t: &crate::model::Threshold) {
    if !THRESHOLD_METHODS.contains(&t.method.as_str()) {
        p.push("threshold.method", format!("must be one of {}, got {:?}", THRESHOLD_METHODS.join(", "), t.method));
    }
    if !(t.value.is_finite() && t.value.abs() < 1e30) {
        p.push("threshold.value", format!("must be a finite number of sensible size, got {}", t.value));
    }
    let d = &t.details;
    for k in ["gamma_shape", "gamma_scale", "window_s", "target_false_alarms_per_day"] {
        if let Some(v) = d.get(k).filter(|v| !(v.is_finite() && **v > 0.0)) {
            p.push(format!("threshold.details.{k}"), format!("must be > 0, got {v}"));
        }
    }
    if let Some(v) = d.get("window_exceedance_probability").filter(|v| !(**v > 0.0 && **v <= 1.0)) {
        p.push("threshold.details.window_exceedance_probability", format!("must be a probability in (0, 1], got {v}"));
    }
}

/// The first variable holding a NaN or an infinity, by name.
pub fn non_finite_tensor(vs: &VarStore) -> Option<String> {
    let vars: BTreeMap<String, tch::Tensor> = vs.variables().into_iter().collect();
    vars.into_iter().find(|(_, t)| !tch::no_grad(|| t.isfinite().all().int64_value(&[]) != 0)).map(|(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::FeatureParams;
    use crate::model::ModelKind;
    use crate::nn::Activation;

    fn audio_ae() -> Manifest {
        let spec = AeSpec::mlp(640, &[128, 128], 8, &[128, 128], Activation::Relu, Activation::Relu);
        let mut m = Manifest::new(ModelKind::Ae, EnergySpec::Ae(spec), vec![]);
        m.features = Some(FeatureParams::default());
        m.scaler = Some(Scaler { mean: vec![0.0; 640], std: vec![1.0; 640], clamp: None });
        m
    }

    fn keys(m: &Manifest) -> Vec<String> {
        problems(m).0.into_iter().map(|p| p.key).collect()
    }

    #[test]
    fn a_trained_shape_passes_and_each_broken_field_is_named() {
        assert!(keys(&audio_ae()).is_empty());
        type Edit = Box<dyn Fn(&mut Manifest)>;
        let cases: Vec<(&str, Edit)> = vec![
            ("features.n_mels", Box::new(|m| m.features.as_mut().unwrap().n_mels = 0)),
            ("features.frames", Box::new(|m| m.features.as_mut().unwrap().frames = 0)),
            ("features.hop_length", Box::new(|m| m.features.as_mut().unwrap().hop_length = 0)),
            ("features.n_fft", Box::new(|m| m.features.as_mut().unwrap().n_fft = 0)),
            ("features.power", Box::new(|m| m.features.as_mut().unwrap().power = -2.0)),
            ("energy", Box::new(|m| m.features.as_mut().unwrap().n_mels = 64)),
            ("scaler", Box::new(|m| m.scaler = None)),
            ("scaler.mean", Box::new(|m| m.scaler.as_mut().unwrap().mean.truncate(40))),
            ("scaler.std[3]", Box::new(|m| m.scaler.as_mut().unwrap().std[3] = 0.0)),
            (
                "energy.latent",
                Box::new(|m| {
                    if let EnergySpec::Ae(a) = &mut m.energy {
                        a.latent = 0
                    }
                }),
            ),
            (
                "energy.encoder.input",
                Box::new(|m| {
                    if let EnergySpec::Ae(AeSpec { encoder: NetSpec::Mlp(e), .. }) = &mut m.energy {
                        e.input = 0
                    }
                }),
            ),
            (
                "energy.encoder.hidden[0]",
                Box::new(|m| {
                    if let EnergySpec::Ae(AeSpec { encoder: NetSpec::Mlp(e), .. }) = &mut m.energy {
                        e.hidden[0] = 1 << 40
                    }
                }),
            ),
            // issue 25: calibrations a detector or the console cannot use.
            ("threshold.value", Box::new(|m| m.threshold = Some(threshold(1e308, &[])))),
            (
                "threshold.details.gamma_shape",
                Box::new(|m| m.threshold = Some(threshold(1.0, &[("gamma_shape", 0.0)]))),
            ),
            ("threshold.details.window_s", Box::new(|m| m.threshold = Some(threshold(1.0, &[("window_s", f64::NAN)])))),
            (
                "threshold.details.window_exceedance_probability",
                Box::new(|m| m.threshold = Some(threshold(1.0, &[("window_exceedance_probability", 2.0)]))),
            ),
            ("threshold.value", Box::new(|m| m.threshold = Some(threshold(-1.0, &[])))),
            (
                "threshold.method",
                Box::new(|m| {
                    m.threshold = Some(crate::model::Threshold { method: "vibes".into(), ..threshold(1.0, &[]) })
                }),
            ),
            ("features.fmax", Box::new(|m| m.features.as_mut().unwrap().fmax = Some(10.0))),
            ("features.power", Box::new(|m| m.features.as_mut().unwrap().power = 100.0)),
            (
                "energy.l2_enc",
                Box::new(|m| {
                    if let EnergySpec::Ae(a) = &mut m.energy {
                        a.l2_enc = f64::NAN
                    }
                }),
            ),
            ("manifold", Box::new(|m| m.kind = ModelKind::MpdrR)),
            ("energy", Box::new(|m| m.kind = ModelKind::MpdrS)),
            (
                "band_stats.std",
                Box::new(|m| {
                    m.band_stats =
                        Some(crate::model::BandStats { windows: 4, mean: vec![0.1; 128], std: vec![0.0; 128] })
                }),
            ),
        ];
        fn threshold(value: f64, details: &[(&str, f64)]) -> crate::model::Threshold {
            crate::model::Threshold {
                value,
                method: "gamma-moments".into(),
                details: details.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
                warnings: vec![],
                fitted_on: None,
            }
        }
        for (key, edit) in cases {
            let mut m = audio_ae();
            edit(&mut m);
            let k = keys(&m);
            assert!(k.iter().any(|x| x == key), "{key}: got {k:?}");
        }
    }

    #[test]
    fn weights_with_a_nan_are_named() {
        let vs = VarStore::new(tch::Device::Cpu);
        let _ = vs.root().var("ok", &[3], tch::nn::Init::Const(1.0));
        let mut bad = vs.root().var("bad", &[3], tch::nn::Init::Const(1.0));
        assert_eq!(non_finite_tensor(&vs), None);
        tch::no_grad(|| {
            let _ = bad.get(1).fill_(f64::NAN);
        });
        let _ = &mut bad;
        assert_eq!(non_finite_tensor(&vs).as_deref(), Some("bad"));
    }
}
