//! `mpdr validate --as-service`: the checks run as the systemd unit will run them — as the
//! service's user (`mpdr`, else `nobody`) with its groups (its own and `audio`), with `/home`,
//! `/root` and `/run/user` hidden (`ProtectHome=yes`) and the unit's `LoadCredential=` files
//! in `$CREDENTIALS_DIRECTORY` — so a model under `/home` or a root-only token file is a
//! problem with its key here, not a service that fails to start.

use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Folders `ProtectHome=yes` makes inaccessible.
pub const HIDDEN: [&str; 3] = ["/home", "/root", "/run/user"];

/// Where the unit (and its drop-ins) may be installed.
const UNITS: [&str; 3] = [
    "/etc/systemd/system/mpdr-monitor.service",
    "/lib/systemd/system/mpdr-monitor.service",
    "/usr/lib/systemd/system/mpdr-monitor.service",
];

/// Who the service runs as.
#[derive(Debug, Clone)]
struct ServiceUser {
    name: String,
    uid: u32,
    gid: u32,
    groups: Vec<(String, u32)>,
}

/// An NSS entry (`getent passwd|group NAME`), split at ':'.
fn getent(db: &str, name: &str) -> Option<Vec<String>> {
    let o = std::process::Command::new("getent").args([db, name]).output().ok()?;
    let line = String::from_utf8_lossy(&o.stdout).lines().next()?.to_string();
    o.status.success().then(|| line.split(':').map(str::to_string).collect())
}

fn user(name: &str) -> Option<(u32, u32)> {
    let f = getent("passwd", name)?;
    Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?))
}

fn group(name: &str) -> Option<u32> {
    getent("group", name)?.get(2)?.parse().ok()
}

fn service_user(wanted: &str) -> Result<ServiceUser> {
    let (name, (uid, gid)) = match user(wanted) {
        Some(ids) => (wanted.to_string(), ids),
        // No such user yet (a dynamic user is made at start): the least privileged one.
        None => ("nobody".to_string(), user("nobody").context("neither the service user nor nobody exists")?),
    };
    let primary = getent("group", &gid.to_string()).and_then(|f| f.first().cloned()).unwrap_or_else(|| gid.to_string());
    let mut groups = vec![(primary, gid)];
    if let Some(audio) = group("audio") {
        groups.push(("audio".into(), audio));
    }
    Ok(ServiceUser { name, uid, gid, groups })
}

/// `LoadCredential=NAME:PATH` lines of a unit file and its drop-ins, in order.
pub fn load_credentials(unit: &Path) -> Vec<(String, PathBuf)> {
    let mut files = vec![unit.to_path_buf()];
    if let Ok(dir) = std::fs::read_dir(format!("{}.d", unit.display())) {
        let mut drop_ins: Vec<PathBuf> =
            dir.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "conf")).collect();
        drop_ins.sort();
        files.extend(drop_ins);
    }
    let mut out = Vec::new();
    for f in files {
        let text = crate::files::read_regular_string(&f).unwrap_or_default();
        for line in text.lines().map(str::trim) {
            if let Some((name, path)) = line.strip_prefix("LoadCredential=").and_then(|v| v.split_once(':')) {
                out.push((name.trim().to_string(), PathBuf::from(path.trim())));
            }
        }
    }
    out
}

/// A folder removed when dropped.
struct Staged(PathBuf);

impl Staged {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The effective user id (from /proc/self/status: real, effective, saved, filesystem).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// Copy the unit's credentials (read as root, as systemd does) into a folder only the service
/// user can read.
fn stage_credentials(creds: &[(String, PathBuf)], u: &ServiceUser) -> Result<Option<Staged>> {
    if creds.is_empty() {
        return Ok(None);
    }
    let path = std::env::temp_dir().join(format!("mpdr-credentials-{}", std::process::id()));
    std::fs::create_dir(&path).with_context(|| format!("{}: a credentials folder", path.display()))?;
    let dir = Staged(path);
    for (name, src) in creds {
        let bytes = crate::files::read_regular(src)
            .with_context(|| format!("LoadCredential={name}:{}: systemd could not read it either", src.display()))?;
        let dst = dir.path().join(name);
        std::fs::write(&dst, bytes)?;
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o400))?;
        chown(&dst, Some(u.uid), Some(u.gid))?;
    }
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o500))?;
    chown(dir.path(), Some(u.uid), Some(u.gid))?;
    Ok(Some(dir))
}

/// The sandbox, through util-linux (no unsafe code here): a private mount namespace
/// (`unshare`), the home folders hidden under empty mode-000 tmpfs mounts, then the service's
/// groups, group and user (`setpriv`), then `mpdr validate`.
fn sandboxed(exe: &Path, config: &Path, u: &ServiceUser) -> std::process::Command {
    let hide: Vec<&str> = HIDDEN.iter().copied().filter(|p| Path::new(p).is_dir()).collect();
    let groups: Vec<String> = u.groups.iter().map(|g| g.1.to_string()).collect();
    let script = format!(
        "set -e; for d in {}; do mount -t tmpfs -o mode=000,nosuid,nodev,noexec tmpfs \"$d\"; done; \
         exec setpriv --reuid={} --regid={} --groups={} --inh-caps=-all -- \"$0\" validate --config \"$1\"",
        hide.join(" "),
        u.uid,
        u.gid,
        groups.join(",")
    );
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script]).arg(exe).arg(config);
    cmd
}

/// Run `mpdr validate --config <config>` as the service; its exit status is the answer.
pub fn validate_as_service(config: &Path, service_user_name: &str, unit: Option<&Path>) -> Result<()> {
    if effective_uid() != Some(0) {
        bail!("--as-service runs the checks as the service's user with /home hidden: run it as root (sudo mpdr validate --as-service --config {})", config.display());
    }
    let config = std::path::absolute(config).with_context(|| format!("{}", config.display()))?;
    let u = service_user(service_user_name)?;
    let unit = unit.map(Path::to_path_buf).or_else(|| UNITS.iter().map(PathBuf::from).find(|p| p.is_file()));
    let creds = unit.as_deref().map(load_credentials).unwrap_or_default();
    let staged = stage_credentials(&creds, &u)?;
    let groups: Vec<&str> = u.groups.iter().map(|g| g.0.as_str()).collect();
    println!(
        "validating as the service: user {} (uid {}), groups {}; {} hidden; {} credential(s) from {}",
        u.name,
        u.uid,
        groups.join(", "),
        HIDDEN.join(", "),
        creds.len(),
        unit.as_deref().map_or("no installed unit".into(), |p| p.display().to_string())
    );
    let exe = std::env::current_exe().context("finding this binary")?;
    let mut cmd = sandboxed(&exe, &config, &u);
    cmd.env_clear().env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").env("OMP_WAIT_POLICY", "PASSIVE");
    cmd.env("STATE_DIRECTORY", "/var/lib/mpdr").current_dir("/");
    if let Some(d) = &staged {
        cmd.env("CREDENTIALS_DIRECTORY", d.path());
    }
    let status =
        cmd.status().context("starting validate as the service user (needs util-linux's unshare and setpriv)")?;
    drop(staged);
    if !status.success() {
        bail!("{}: the service would not start with this config (see above)", config.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_the_unit_and_its_drop_ins_in_order() {
        let d = tempfile::tempdir().unwrap();
        let unit = d.path().join("mpdr-monitor.service");
        std::fs::write(&unit, "[Service]\n#LoadCredential=old:/x\nLoadCredential=token:/etc/mpdr/credentials/token\n")
            .unwrap();
        std::fs::create_dir(d.path().join("mpdr-monitor.service.d")).unwrap();
        std::fs::write(d.path().join("mpdr-monitor.service.d/b.conf"), "[Service]\nLoadCredential=b:/b\n").unwrap();
        std::fs::write(d.path().join("mpdr-monitor.service.d/a.conf"), "[Service]\nLoadCredential=a: /a\n").unwrap();
        std::fs::write(d.path().join("mpdr-monitor.service.d/a.txt"), "LoadCredential=no:/no\n").unwrap();
        let c = load_credentials(&unit);
        let names: Vec<&str> = c.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["token", "a", "b"]);
        assert_eq!(c[1].1, Path::new("/a"));
    }
}
