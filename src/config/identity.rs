//! Who a daemon is on a shared broker: its `site` (optional) and its `box` (default: the host
//! name). Both are topic levels and labels, so both are short names of letters, digits, `-`,
//! `_` and `.`.

use serde::{Deserialize, Serialize};

use super::Problems;

/// `[identity]` of the monitor config.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// The plant or building this box is in (shown by `mpdr plant`, carried by every event).
    pub site: Option<String>,
    /// This box's name, unique on the broker. Default: the host name.
    #[serde(rename = "box")]
    pub box_name: Option<String>,
}

/// The resolved identity.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Identity {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    #[serde(rename = "box")]
    pub box_name: String,
}

impl IdentityConfig {
    pub fn validate(&self, key: &str, p: &mut Problems) {
        for (k, v) in [("site", &self.site), ("box", &self.box_name)] {
            if let Some(v) = v {
                if let Err(e) = check_name(v) {
                    p.push(format!("{key}.{k}"), e);
                }
            }
        }
    }

    /// The identity: the given names, the box defaulting to [`host_name`].
    pub fn resolve(&self) -> Identity {
        Identity { site: self.site.clone(), box_name: self.box_name.clone().unwrap_or_else(host_name) }
    }
}

/// A name that can be a topic level and a label: 1–64 of letters, digits, `-`, `_`, `.`.
pub fn check_name(v: &str) -> Result<(), String> {
    if v.is_empty() || v.len() > 64 || !v.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return Err(format!("1–64 letters, digits, '-', '_' or '.', got \"{v}\""));
    }
    Ok(())
}

/// This host's name made a valid box name (other characters become `-`); `mpdr` when none
/// can be read.
pub fn host_name() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let name: String = raw
        .trim()
        .chars()
        .take(64)
        .map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '-' })
        .collect();
    if name.is_empty() {
        "mpdr".into()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_topic_levels_and_the_box_defaults_to_the_host() {
        let mut p = Problems::default();
        IdentityConfig { site: Some("north/hall".into()), box_name: Some("edge+7".into()) }
            .validate("identity", &mut p);
        let keys: Vec<&str> = p.0.iter().map(|x| x.key.as_str()).collect();
        assert_eq!(keys, ["identity.site", "identity.box"]);
        let id = IdentityConfig::default().resolve();
        assert!(check_name(&id.box_name).is_ok(), "{}", id.box_name);
        assert_eq!(id.box_name, host_name());
        let given = IdentityConfig { site: Some("north".into()), box_name: Some("edge-07".into()) }.resolve();
        assert_eq!(serde_json::to_string(&given).unwrap(), r#"{"site":"north","box":"edge-07"}"#);
    }
}
