//! Build script: make the `mpdr` binaries, tests and benches find libtorch at run time
//! without LD_LIBRARY_PATH — first in `$ORIGIN/../lib` (an installed layout such as
//! `/opt/mpdr/{bin,lib}`, `make install`), then in `$LIBTORCH/lib` (the build tree) — and link `torch_cuda` eagerly
//! when a CUDA libtorch is present — with `--as-needed` (the default on Debian) the
//! linker drops it, its static initialisers never run and tch never sees the GPU.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=MPDR_LINK_CUDA");
    println!("cargo:rerun-if-changed=build.rs");
    alsa_quiet();
    let Some(libtorch) = std::env::var_os("LIBTORCH").map(PathBuf::from) else {
        return;
    };
    let lib = libtorch.join("lib");
    println!("cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN/../lib");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());

    // The slim CPU install (scripts/setup-libtorch.sh, MPDR_TORCH=cpu) ships libtorch_cuda.so
    // without the CUDA libraries it needs, so presence of the file alone is not enough.
    let slim = libtorch
        .parent()
        .map(|p| p.join(".installed-2.13.0-cpu").exists() && !p.join(".installed-2.13.0-cuda").exists())
        .unwrap_or(false);
    let link_cuda = match std::env::var("MPDR_LINK_CUDA").as_deref() {
        Ok("1") => true,
        Ok("0") => false,
        _ => lib.join("libtorch_cuda.so").exists() && !slim,
    };
    if link_cuda {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-L{},-ltorch_cuda,--as-needed", lib.display());
    }
}

/// libasound's stderr messages silenced by a constructor in `src/audio/alsa_quiet.c`: the object
/// is given to the linker directly (not in an archive), so it is always linked and runs.
fn alsa_quiet() {
    println!("cargo:rerun-if-changed=src/audio/alsa_quiet.c");
    println!("cargo:rerun-if-env-changed=MPDR_NO_ALSA_QUIET");
    if std::env::var_os("MPDR_NO_ALSA_QUIET").is_some() {
        return;
    }
    let objects = cc::Build::new().file("src/audio/alsa_quiet.c").warnings(true).compile_intermediates();
    for o in objects {
        println!("cargo:rustc-link-arg={}", o.display());
    }
}
