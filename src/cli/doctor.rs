//! `mpdr doctor`: what this box is and what mpdr can use on it — the architecture, the libtorch
//! this process loaded (its folder, version and build: cpu or cuda), the GPUs libtorch sees
//! (name and memory from the driver), the sound cards; `--bench` times scoring on the box
//! (vectors per second and real-time streams) through the same `Bundle::score` as the daemon.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use tch::{Device, Tensor};

use crate::device::{loaded_torch, DeviceChoice};
use crate::model::{Bundle, Manifest, ModelKind};

#[derive(Debug, Clone, clap::Args)]
pub struct DoctorArgs {
    /// Also time scoring: the bundle below (default: the shipped `models/pump` next to the
    /// binary or in the working folder) and the 640-D frame-level AE of the default recipe.
    #[arg(long)]
    pub bench: bool,
    /// Where to score for --bench: auto | cpu | cuda | cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// The bundle --bench times (a folder with manifest.toml).
    #[arg(long)]
    pub bundle: Option<PathBuf>,
    /// Seconds each --bench measurement runs.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
}

/// One line per GPU the driver reports: name and memory (nvidia-smi; else the kernel driver's
/// /proc entries; else a Jetson's L4T release).
fn gpu_lines() -> Vec<String> {
    if let Ok(o) = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=index,name,memory.total,driver_version", "--format=csv,noheader"])
        .output()
    {
        if o.status.success() {
            return String::from_utf8_lossy(&o.stdout).lines().map(|l| format!("GPU {l} (driver)")).collect();
        }
    }
    let mut out = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc/driver/nvidia/gpus") {
        for e in dir.flatten() {
            let info = std::fs::read_to_string(e.path().join("information")).unwrap_or_default();
            if let Some(model) = info.lines().find_map(|l| l.strip_prefix("Model:")) {
                out.push(format!("GPU {} (kernel driver)", model.trim()));
            }
        }
    }
    if out.is_empty() {
        if let Ok(rel) = std::fs::read_to_string("/etc/nv_tegra_release") {
            let model = std::fs::read_to_string("/proc/device-tree/model").unwrap_or_default();
            out.push(format!(
                "Jetson {} ({}): integrated GPU, shares the system memory",
                model.trim_end_matches('\0').trim(),
                rel.lines().next().unwrap_or("").trim_start_matches("# ").trim()
            ));
        }
    }
    out
}

/// The report, as lines (printed by `mpdr doctor`, tested as text).
pub fn report() -> Vec<String> {
    let mut out = vec![format!(
        "mpdr {} on {} ({} CPUs)",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    )];
    let t = loaded_torch();
    match &t.lib {
        Some(lib) => {
            let root = lib.parent().unwrap_or(lib);
            out.push(format!(
                "libtorch: {} (version {}, {})",
                root.display(),
                stamp(lib, "build-version").unwrap_or_else(|| "unknown".into()),
                flavour(lib).map_or("installed outside make setup".into(), |f| format!("{f} install"))
            ));
        }
        None => out.push("libtorch: not found in this process's mappings".into()),
    }
    let gpus = gpu_lines();
    let cudart = if t.cuda_linked { tch::utils::version_cudart() } else { 0 };
    out.push(format!(
        "libtorch build: {}",
        build_line(tch::utils::has_cuda(), t.cuda_linked, !gpus.is_empty(), cudart)
    ));
    let visible = if tch::utils::has_cuda() { tch::Cuda::device_count() } else { 0 };
    out.push(format!(
        "GPUs visible: {visible}{}",
        if visible > 0 && tch::Cuda::cudnn_is_available() { " (cuDNN available)" } else { "" }
    ));
    if gpus.is_empty() {
        out.push("driver: no NVIDIA GPU reported (no nvidia-smi, /proc/driver/nvidia or Jetson release)".into());
    }
    out.extend(gpus.into_iter().map(|g| format!("driver: {g}")));
    if visible == 0 {
        out.push("scoring.device: \"cuda\" would be refused here; \"auto\" and \"cpu\" score on the CPU".into());
    }
    match crate::audio::source::device::list_devices() {
        Ok(list) => {
            let names: Vec<&str> = list.iter().map(|(_, n, _)| n.as_str()).collect();
            if names.is_empty() {
                out.push("sound inputs: none found (`mpdr devices` says why)".into());
            } else {
                out.push(format!("sound inputs: {} ({})", names.len(), names.join(", ")));
            }
        }
        Err(e) => out.push(format!("sound inputs: none ({e})")),
    }
    out
}

/// What the linked libtorch can do here: a CUDA build with a GPU, a CUDA build on a box
/// without a driver (idle, not broken), one that sees no GPU the driver reports, or a CPU build.
fn build_line(has_cuda: bool, cuda_linked: bool, driver_reports_gpu: bool, cudart: i64) -> String {
    let runtime = if cudart > 0 { format!(", CUDA runtime {}", cuda_version(cudart)) } else { String::new() };
    match (has_cuda, cuda_linked, driver_reports_gpu) {
        (true, _, _) => format!("cuda (in use{runtime})"),
        (false, true, false) => format!("cuda (libtorch_cuda linked{runtime}; idle: no NVIDIA driver or GPU on this box)"),
        (false, true, true) => format!("cuda (libtorch_cuda linked{runtime}), but it sees no GPU the driver reports: a driver older than the wheels need (≥ 580 for CUDA 13, `nvidia-smi` shows it), or device nodes this process cannot open (/dev/nvidia*, the unit's DeviceAllow=)"),
        (false, false, _) => "cpu (libtorch_cuda not linked: this binary scores on the CPU only)".into(),
    }
}

/// A file `make setup` wrote beside a libtorch (`torch/build-*`), or `make install` copied in
/// with its libraries (`lib/build-*`).
fn stamp(lib: &Path, name: &str) -> Option<String> {
    let root = lib.parent().unwrap_or(lib);
    [root.join(name), lib.join(name)].iter().find_map(|p| std::fs::read_to_string(p).ok()).map(|s| s.trim().to_string())
}

/// `cpu` or `cuda` for a libtorch `make setup` installed (its `build-flavour`, or the stamp
/// beside it of an install made before that file existed).
fn flavour(lib: &Path) -> Option<String> {
    if let Some(f) = stamp(lib, "build-flavour") {
        return Some(f);
    }
    let stamps = lib.parent()?.parent()?;
    ["cuda", "cpu"].into_iter().find(|f| stamps.join(format!(".installed-2.13.0-{f}")).exists()).map(String::from)
}

fn cuda_version(v: i64) -> String {
    format!("{}.{}", v / 1000, (v % 1000) / 10)
}

/// Vectors per second through `bundle.score` on random inputs of its dimension (batch 512).
fn time_scoring(bundle: &Bundle, seconds: f64) -> Result<(f64, u64)> {
    let dim = bundle.manifest.energy.input_dim();
    let x = Tensor::randn([4096, dim], tch::kind::FLOAT_CPU);
    let _ = bundle.score(&x, 512).context("scoring a warm-up batch")?;
    let t0 = Instant::now();
    let mut n = 0u64;
    while t0.elapsed().as_secs_f64() < seconds || n == 0 {
        let _ = bundle.score(&x, 512).context("scoring")?;
        n += 4096;
    }
    Ok((n as f64 / t0.elapsed().as_secs_f64(), n))
}

fn default_bundle() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let beside = exe.parent()?.parent()?.join("models/pump");
    [beside, PathBuf::from("models/pump")].into_iter().find(|p| p.join("manifest.toml").is_file())
}

/// Vectors one real-time stream needs per second: a frame-level model one per hop (31.25 at
/// 16 kHz / 512), a profile model one per decision (hop_s 1 s by default).
fn per_stream(m: &Manifest) -> f64 {
    match &m.features {
        Some(f) if f.profile.is_some() => 1.0,
        Some(f) => f.sample_rate as f64 / f.hop_length as f64,
        None => 31.25,
    }
}

fn bench(a: &DoctorArgs) -> Result<()> {
    let device = a.device.resolve().map_err(|e| anyhow::anyhow!("--device: {e}"))?;
    let where_ = match device {
        Device::Cuda(n) => format!("cuda:{n}"),
        _ => "cpu (1 libtorch thread)".into(),
    };
    let mut cases: Vec<(String, Bundle)> = Vec::new();
    if let Some(dir) = a.bundle.clone().or_else(default_bundle) {
        let b = Bundle::load(&dir, device).with_context(|| format!("--bundle {}", dir.display()))?;
        cases.push((format!("{} ({})", dir.display(), b.manifest.kind), b));
    } else {
        println!("bench: no bundle given and no models/pump found: timing the AE only");
    }
    let recipe = crate::mpdr::recipe::TrainConfig::default();
    let mut ae = Manifest::new(ModelKind::Ae, recipe.energy_spec(640, 128, 5), vec![]);
    ae.features = Some(crate::features::FeatureParams::default());
    cases.push(("frame-level AE, 640-D (default recipe, random weights)".into(), Bundle::build(ae, device)));
    for (label, b) in &cases {
        let (rate, n) = time_scoring(b, a.seconds)?;
        let need = per_stream(&b.manifest);
        println!(
            "bench {where_}: {label}: {rate:.0} vectors/s ({n} scored) = {:.0} real-time streams at {need} vectors/s each",
            rate / need
        );
    }
    Ok(())
}

/// `mpdr doctor`.
pub fn doctor(a: &DoctorArgs) -> Result<()> {
    for line in report() {
        println!("{line}");
    }
    if a.bench {
        bench(a)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cuda_build_without_a_driver_is_idle_not_broken() {
        assert_eq!(build_line(true, true, true, 13000), "cuda (in use, CUDA runtime 13.0)");
        let idle = build_line(false, true, false, 13000);
        assert!(idle.contains("idle: no NVIDIA driver") && idle.contains("13.0"), "{idle}");
        let unseen = build_line(false, true, true, 0);
        assert!(unseen.contains("≥ 580") && unseen.contains("DeviceAllow"), "{unseen}");
        assert!(build_line(false, false, true, 0).starts_with("cpu"));
    }

    #[test]
    fn this_process_has_the_cpu_libtorch_mapped_and_says_so() {
        let t = loaded_torch();
        assert!(t.lib.as_ref().is_some_and(|l| l.join("libtorch_cpu.so").exists()), "{t:?}");
        let text = report().join("\n");
        assert!(text.contains("libtorch build:") && text.contains("GPUs visible:"), "{text}");
        if !tch::utils::has_cuda() {
            assert!(text.contains("GPUs visible: 0") && text.contains("\"cuda\" would be refused"), "{text}");
        }
    }

    #[test]
    fn a_profile_stream_needs_one_vector_per_decision_a_frame_stream_one_per_hop() {
        let recipe = crate::mpdr::recipe::TrainConfig::default();
        let mut m = Manifest::new(ModelKind::Ae, recipe.energy_spec(640, 128, 5), vec![]);
        m.features = Some(crate::features::FeatureParams::default());
        assert_eq!(per_stream(&m), 31.25);
        assert_eq!(cuda_version(13000), "13.0");
        assert_eq!(cuda_version(12060), "12.6");
    }
}
