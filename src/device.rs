//! Where tch runs: `auto` (CUDA when libtorch sees a GPU, else CPU), `cpu`, or `cuda[:N]`.
//! On CPU, libtorch's default OpenMP pool is 10-40x slower on small VMs; every front door
//! calls [`init_threads`] first.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::Device;

/// Device choice as written in configs and on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceChoice {
    #[default]
    Auto,
    Cpu,
    Cuda(usize),
}

impl std::str::FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceChoice::Cuda)
                .ok_or_else(|| format!("expected auto, cpu, cuda or cuda:N, got \"{s}\"")),
        }
    }
}

impl TryFrom<String> for DeviceChoice {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<DeviceChoice> for String {
    fn from(d: DeviceChoice) -> String {
        match d {
            DeviceChoice::Auto => "auto".into(),
            DeviceChoice::Cpu => "cpu".into(),
            DeviceChoice::Cuda(n) => format!("cuda:{n}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("device {requested}: {reason}")]
pub struct DeviceError {
    pub requested: String,
    pub reason: String,
}

impl DeviceChoice {
    /// Resolve to a tch device; asking for a GPU that libtorch cannot see is an error.
    pub fn resolve(self) -> Result<Device, DeviceError> {
        match self {
            DeviceChoice::Auto => Ok(Device::cuda_if_available()),
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Cuda(n) => {
                let count = tch::Cuda::device_count() as usize;
                if n < count {
                    Ok(Device::Cuda(n))
                } else {
                    Err(DeviceError {
                        requested: String::from(self),
                        reason: no_such_gpu(count, loaded_torch().cuda_linked),
                    })
                }
            }
        }
    }
}

/// The libtorch this process has mapped: its `lib` folder, and whether libtorch_cuda is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedTorch {
    pub lib: Option<PathBuf>,
    pub cuda_linked: bool,
}

/// Read from `/proc/self/maps` (the loader's truth, not the build's intent).
pub fn loaded_torch() -> LoadedTorch {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    parse_maps(&maps)
}

fn parse_maps(maps: &str) -> LoadedTorch {
    let path_of = |name: &str| {
        maps.lines()
            .filter_map(|l| l.split_whitespace().nth(5))
            .find(|p| Path::new(p).file_name().is_some_and(|f| f == name))
            .map(PathBuf::from)
    };
    LoadedTorch {
        lib: path_of("libtorch_cpu.so").and_then(|p| p.parent().map(Path::to_path_buf)),
        cuda_linked: path_of("libtorch_cuda.so").is_some(),
    }
}

/// Why `cuda:N` cannot be had: a CPU-only libtorch, a CUDA one that sees no GPU, or fewer GPUs.
fn no_such_gpu(count: usize, cuda_linked: bool) -> String {
    match (count, cuda_linked) {
        (0, false) => "this libtorch is a CPU-only build (a GPU needs `make CUDA=1 build`; README, Edge boxes)".into(),
        (0, true) => "the CUDA libtorch sees no GPU: no NVIDIA driver or GPU on this box, or device nodes this process may not open (`mpdr doctor` says which)".into(),
        (n, _) => format!("libtorch sees {n} GPU(s), cuda:0 to cuda:{}", n - 1),
    }
}

/// One intra-op and one inter-op thread for libtorch on CPU (call once, before any tensor op).
pub fn init_threads() {
    tch::set_num_threads(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loaded_libtorch_is_read_from_the_mappings() {
        let maps = "7f00-7f01 r-xp 00000000 fd:01 1 /opt/mpdr/lib/libtorch_cpu.so\n\
                    7f02-7f03 r--p 00000000 fd:01 2 /usr/lib/x86_64-linux-gnu/libc.so.6\n";
        let t = parse_maps(maps);
        assert_eq!(t.lib.as_deref(), Some(Path::new("/opt/mpdr/lib")));
        assert!(!t.cuda_linked);
        let t = parse_maps(&format!("{maps}7f04-7f05 r-xp 0 fd:01 3 /opt/mpdr/lib/libtorch_cuda.so\n"));
        assert!(t.cuda_linked);
        assert_eq!(parse_maps("").lib, None);
    }

    #[test]
    fn a_missing_gpu_is_explained_by_the_libtorch_build() {
        assert!(no_such_gpu(0, false).contains("CPU-only") && no_such_gpu(0, false).contains("CUDA=1"));
        assert!(no_such_gpu(0, true).contains("no NVIDIA driver"));
        assert_eq!(no_such_gpu(2, true), "libtorch sees 2 GPU(s), cuda:0 to cuda:1");
    }

    #[test]
    fn device_choices_parse_and_print() {
        for (text, want) in [
            ("auto", DeviceChoice::Auto),
            ("cpu", DeviceChoice::Cpu),
            ("cuda", DeviceChoice::Cuda(0)),
            ("cuda:1", DeviceChoice::Cuda(1)),
        ] {
            assert_eq!(text.parse::<DeviceChoice>().unwrap(), want);
        }
        assert!("gpu".parse::<DeviceChoice>().unwrap_err().contains("gpu"));
        assert_eq!(DeviceChoice::Cpu.resolve().unwrap(), Device::Cpu);
    }
}
