//! Where tch runs: `auto` (CUDA when libtorch sees a GPU, else CPU), `cpu`, or `cuda[:N]`.
//! On CPU, libtorch's default OpenMP pool is 10-40x slower on small VMs; every front door
//! calls [`init_threads`] first.

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
                        reason: format!(
                            "libtorch sees {count} CUDA device(s) (is this a CPU-only libtorch? see README, GPU notes)"
                        ),
                    })
                }
            }
        }
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
