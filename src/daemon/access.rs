//! Who may change what through the console and the API: named people with their own tokens
//! (`[[server.user]]`: `name`, `token_env` or `token_file`, `role`), and the single shared
//! token of `[server] token_env / token_file`, which keeps working as one user. An `operator`
//! may acknowledge, shelve, set maintenance and override thresholds; a `viewer` token is
//! known but may change nothing (reads need no token at all). The audit trail — every
//! `acknowledged`, `shelved`, `threshold-changed` event — names the person.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Problems;

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Acknowledge, shelve, maintenance, threshold overrides.
    #[default]
    Operator,
    /// Read only (the token is accepted, every change refused with 403).
    Viewer,
}

/// `[[server.user]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    pub token_env: Option<String>,
    pub token_file: Option<PathBuf>,
    #[serde(default)]
    pub role: Role,
}

/// The name the shared `[server]` token acts under in the audit trail.
pub const SHARED_USER: &str = "shared-token";

impl UserConfig {
    pub fn resolve_paths(&mut self, base: &Path) {
        if let Some(f) = &mut self.token_file {
            crate::files::absolute_secret(f, base);
        }
    }
}

/// `[[server.user]]` entries: names unique and plain, one token source each.
pub fn validate(users: &[UserConfig], p: &mut Problems) {
    let mut names = std::collections::BTreeSet::new();
    for (i, u) in users.iter().enumerate() {
        let key = format!("server.user[{i}]");
        if u.name.is_empty() || u.name.len() > 64 || !u.name.chars().all(|c| c.is_alphanumeric() || " -_.@".contains(c))
        {
            p.push(format!("{key}.name"), format!("1–64 letters, digits, ' ', '-', '_', '.' or '@', got {:?}", u.name));
        } else if u.name == SHARED_USER || !names.insert(u.name.as_str()) {
            p.push(format!("{key}.name"), format!("\"{}\" is taken", u.name));
        }
        crate::alarm::sink::check_secret_keys(&key, "token", &u.token_env, &u.token_file, p);
        if u.token_env.is_none() && u.token_file.is_none() {
            p.push(format!("{key}.token_file"), "give token_file or token_env");
        }
    }
}

/// Every user's token can be read, and no two users share one (check step).
pub fn check(users: &[UserConfig], shared: Option<Vec<u8>>, p: &mut Problems) {
    let mut seen: Vec<Vec<u8>> = shared.into_iter().collect();
    for (i, u) in users.iter().enumerate() {
        let key = format!("server.user[{i}]");
        match crate::alarm::sink::read_secret(u.token_env.as_deref(), u.token_file.as_deref()) {
            Ok(Some(t)) if seen.contains(&t) => {
                p.push(format!("{key}.token_file"), "the same token as another user: each person needs their own")
            }
            Ok(Some(t)) => seen.push(t),
            Ok(None) => {}
            Err(e) => {
                let k = if u.token_env.is_some() { "token_env" } else { "token_file" };
                p.push(format!("{key}.{k}"), e);
            }
        }
    }
}

/// A person (or the shared token) and what they may do.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub name: String,
    pub role: Role,
    token: Vec<u8>,
}

/// The users of a server config, tokens read: the shared token (as [`SHARED_USER`], an
/// operator) and each `[[server.user]]`.
pub fn users(shared: Option<Vec<u8>>, list: &[UserConfig]) -> Result<Vec<User>, String> {
    let mut out: Vec<User> =
        shared.map(|token| User { name: SHARED_USER.into(), role: Role::Operator, token }).into_iter().collect();
    for (i, u) in list.iter().enumerate() {
        let token = crate::alarm::sink::read_secret(u.token_env.as_deref(), u.token_file.as_deref())
            .map_err(|e| format!("server.user[{i}]: {e}"))?
            .ok_or_else(|| format!("server.user[{i}]: no token"))?;
        out.push(User { name: u.name.clone(), role: u.role, token });
    }
    Ok(out)
}

/// The user whose token `given` is (compared in constant time with every one).
pub fn find<'a>(users: &'a [User], given: &[u8]) -> Option<&'a User> {
    let mut found = None;
    for u in users {
        if crate::alarm::hmac::constant_time_eq(given, &u.token) && found.is_none() {
            found = Some(u);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_find_their_person_and_bad_entries_are_named() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("ann"), "ann-token\n").unwrap();
        std::fs::write(d.path().join("bob"), "bob-token").unwrap();
        let cfg = |name: &str, file: &str, role| UserConfig {
            name: name.into(),
            token_env: None,
            token_file: Some(d.path().join(file)),
            role,
        };
        let list = vec![cfg("Ann Lee", "ann", Role::Operator), cfg("bob", "bob", Role::Viewer)];
        let mut p = Problems::default();
        validate(&list, &mut p);
        check(&list, Some(b"shared".to_vec()), &mut p);
        assert!(p.is_empty(), "{p:?}");
        let u = users(Some(b"shared".to_vec()), &list).unwrap();
        assert_eq!(find(&u, b"ann-token").map(|u| u.name.as_str()), Some("Ann Lee"));
        assert_eq!(find(&u, b"bob-token").map(|u| u.role), Some(Role::Viewer));
        assert_eq!(find(&u, b"shared").map(|u| u.name.as_str()), Some(SHARED_USER));
        assert!(find(&u, b"ann-token ").is_none() && find(&u, b"").is_none());

        let bad = vec![cfg("", "ann", Role::Operator), cfg("x", "ann", Role::Operator), cfg("x", "bob", Role::Viewer)];
        let mut p = Problems::default();
        validate(&bad, &mut p);
        check(&bad, Some(b"ann-token".to_vec()), &mut p);
        let text = format!("{p:?}");
        assert!(text.contains("server.user[0].name"), "{text}");
        assert!(text.contains("server.user[2].name") && text.contains("taken"), "{text}");
        assert!(text.contains("server.user[1].token_file") && text.contains("same token"), "{text}");
    }
}
