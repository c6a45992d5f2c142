//! Progress bars on stderr with true totals (a leaf: no other module of the crate is
//! imported). indicatif draws nothing when stderr is not a terminal, so logs and CI output
//! stay clean.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar of `len` steps, `what` in front (e.g. "features", "scoring").
pub fn bar(len: u64, what: &str) -> ProgressBar {
    let b = ProgressBar::new(len);
    b.set_style(
        ProgressStyle::with_template("{prefix} {bar:30} {pos}/{len} [{elapsed}<{eta}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    b.set_prefix(what.to_string());
    b
}
