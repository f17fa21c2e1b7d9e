//! Finds libvosk (speech recognition) for the link and for run time.
//!
//! libvosk comes from the PyPI `vosk` wheel, which `scripts/setup-vosk.sh`
//! (run by the README's commands) unpacks into `.tools/vosk/lib`. Set
//! `VOSK_LIB_DIR` to use another folder. The binary looks for libvosk.so
//! beside itself first (`$ORIGIN`, for packaged installs), then in that
//! folder.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=VOSK_LIB_DIR");
    let dir = std::env::var_os("VOSK_LIB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"))
                .join(".tools/vosk/lib")
        });
    let lib = dir.join("libvosk.so");
    println!("cargo:rerun-if-changed={}", lib.display());
    if !lib.is_file() {
        println!(
            "cargo::error=libvosk.so not found in {}: run scripts/setup-vosk.sh (or set VOSK_LIB_DIR to a folder holding libvosk.so)",
            dir.display()
        );
        return;
    }
    println!("cargo:rustc-link-search=native={}", dir.display());
    println!("cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN:{}", dir.display());
}
