//! Log-mel of many files at once: in parallel over files (one kernel per worker thread) and
//! cached on disk, keyed by the file's content and the front-end parameters, so a second run
//! over the same data reads features instead of recomputing them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use sha2::{Digest, Sha256};

use super::{load_logmel_with, npy};
use crate::audio::AudioOptions;
use crate::error::InputError;
use crate::features::{FeatureParams, FrameKernel, LogMel};

/// What to do with a file that cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OnBadFile {
    /// Stop with the file's error (default).
    #[default]
    Fail,
    /// Warn, count and leave the file out.
    Skip,
}

/// Where features are cached: `$MPDR_CACHE`, else `$XDG_CACHE_HOME/mpdr`, else `~/.cache/mpdr`.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("MPDR_CACHE") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(d).join("mpdr"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("mpdr"))
}

fn cache_key(bytes: &[u8], params: &FeatureParams, audio: &AudioOptions) -> String {
    let mut h = Sha256::new();
    h.update(bytes);
    // The log-mel does not depend on how frames are stacked or profiled afterwards: one entry
    // serves every model of the same front-end.
    let front = FeatureParams { frames: FeatureParams::default().frames, profile: None, ..params.clone() };
    h.update(toml::to_string(&front).unwrap_or_default().as_bytes());
    h.update(toml::to_string(audio).unwrap_or_default().as_bytes());
    h.finalize().iter().take(20).map(|b| format!("{b:02x}")).collect()
}

/// One file's log-mel, through the cache when one is given.
fn one(
    kernel: &mut FrameKernel,
    path: &Path,
    params: &FeatureParams,
    audio: &AudioOptions,
    cache: Option<&Path>,
) -> Result<LogMel, InputError> {
    let Some(cache) = cache else { return load_logmel_with(kernel, path, params, audio) };
    let bytes = crate::files::read_regular(path).map_err(|e| InputError::new(path, format!("cannot read: {e}")))?;
    let entry = cache.join("features").join(format!("{}.npy", cache_key(&bytes, params, audio)));
    if let Ok(a) = npy::read(&entry) {
        if a.shape.len() == 2 && a.shape[1] == params.n_mels {
            return Ok(LogMel { n_mels: a.shape[1], n_frames: a.shape[0], data: a.data });
        }
    }
    let lm = load_logmel_with(kernel, path, params, audio)?;
    // A cache that cannot be written only costs time.
    if std::fs::create_dir_all(entry.parent().unwrap_or(cache)).is_ok() {
        let tmp = entry.with_extension(format!("tmp{}", std::process::id()));
        if npy::write(&tmp, &[lm.n_frames, lm.n_mels], &lm.data).is_ok() {
            let _ = std::fs::rename(&tmp, &entry);
        }
    }
    Ok(lm)
}

/// Log-mel of every file, in order; `None` for files skipped under [`OnBadFile::Skip`].
pub fn logmels(
    files: &[PathBuf],
    params: &FeatureParams,
    audio: &AudioOptions,
    cache: Option<&Path>,
    on_bad: OnBadFile,
) -> Result<Vec<Option<LogMel>>, InputError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, files.len().max(1));
    let next = AtomicUsize::new(0);
    let slots: Vec<std::sync::Mutex<Option<Result<LogMel, InputError>>>> =
        (0..files.len()).map(|_| std::sync::Mutex::new(None)).collect();
    let bar = crate::progress::bar(files.len() as u64, "features");
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut kernel = FrameKernel::new(params);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= files.len() {
                        break;
                    }
                    // A reader bug must not take the run down: it is this file's error (and
                    // `--on-bad-file skip` skips it like any other unreadable file).
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        one(&mut kernel, &files[i], params, audio, cache)
                    }))
                    .unwrap_or_else(|_| {
                        kernel = FrameKernel::new(params);
                        Err(InputError::new(
                            &files[i],
                            "internal error while reading this file (a bug: please report it with the file)",
                        ))
                    });
                    bar.inc(1);
                    if let Ok(mut slot) = slots[i].lock() {
                        *slot = Some(r);
                    }
                }
            });
        }
    });
    bar.finish_and_clear();
    let results: Vec<Option<Result<LogMel, InputError>>> =
        slots.into_iter().map(|s| s.into_inner().ok().flatten()).collect();
    let mut out = Vec::with_capacity(files.len());
    let mut skipped = 0;
    for (path, r) in files.iter().zip(results) {
        match r {
            Some(Ok(lm)) => out.push(Some(lm)),
            Some(Err(e)) if on_bad == OnBadFile::Skip => {
                tracing::warn!(error = %e, "skipping unreadable file");
                skipped += 1;
                out.push(None);
            }
            Some(Err(e)) => return Err(e),
            None => return Err(InputError::new(path, "feature extraction did not finish")),
        }
    }
    if skipped > 0 {
        tracing::warn!(skipped, total = files.len(), "files skipped");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::wav;

    #[test]
    fn parallel_cached_extraction_equals_direct_and_skips_or_fails_on_bad_files() {
        let d = tempfile::tempdir().unwrap();
        let mut files = Vec::new();
        for i in 0..5 {
            let p = d.path().join(format!("f{i}.wav"));
            let x: Vec<f32> = (0..4000).map(|n| ((n * (i + 1)) as f32 * 0.01).sin() * 0.3).collect();
            wav::write_f32(&p, 16000, 1, &x).unwrap();
            files.push(p);
        }
        let params = FeatureParams::default();
        let audio = AudioOptions::default();
        let cache = d.path().join("cache");
        let a = logmels(&files, &params, &audio, Some(&cache), OnBadFile::Fail).unwrap();
        assert_eq!(std::fs::read_dir(cache.join("features")).unwrap().count(), 5);
        let b = logmels(&files, &params, &audio, Some(&cache), OnBadFile::Fail).unwrap();
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            let direct = crate::data::load_logmel(&files[i], &params, &audio).unwrap();
            assert_eq!(x.as_ref().unwrap(), &direct);
            assert_eq!(y.as_ref().unwrap(), &direct, "cached copy differs");
        }
        // Another pad mode is another cache entry.
        let reflect = FeatureParams { pad_mode: crate::features::PadMode::Reflect, ..params.clone() };
        logmels(&files[..1], &reflect, &audio, Some(&cache), OnBadFile::Fail).unwrap();
        assert_eq!(std::fs::read_dir(cache.join("features")).unwrap().count(), 6);
        std::fs::write(&files[2], b"garbage").unwrap();
        let err = logmels(&files, &params, &audio, None, OnBadFile::Fail).unwrap_err();
        assert!(err.to_string().contains("f2.wav"));
        let s = logmels(&files, &params, &audio, None, OnBadFile::Skip).unwrap();
        assert_eq!(s.iter().filter(|x| x.is_none()).count(), 1);
        assert!(s[2].is_none());
    }
}
