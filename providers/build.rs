//! Links the native libraries of the offline providers when their cargo features are on.
//!
//! Each library is probed with `pkg-config` (falling back to the usual library folders). When
//! found, it is linked and a `voxline_has_<name>` cfg is set so the FFI code is compiled; when
//! missing, the build still succeeds, a warning names the Debian package to install, and the
//! provider reports a configuration error at run time. Set `VOXLINE_OFFLINE_REQUIRED=1` to make
//! a missing library a build error instead (CI uses this so a stub can never pass unnoticed).

use std::path::Path;
use std::process::Command;

/// One native library an offline provider needs.
struct Native {
    /// Cargo feature that asks for it.
    feature: &'static str,
    /// cfg set when it is found.
    cfg: &'static str,
    /// pkg-config package names, all required.
    pkg_config: &'static [&'static str],
    /// Library names to link when pkg-config is unavailable.
    fallback_libs: &'static [&'static str],
    /// A header whose appearance should re-run this probe.
    header: &'static str,
    /// What to install (Debian packages).
    install: &'static str,
}

const NATIVES: &[Native] = &[
    Native {
        feature: "ESPEAK",
        cfg: "voxline_has_espeak",
        pkg_config: &["espeak-ng"],
        fallback_libs: &["espeak-ng"],
        header: "/usr/include/espeak-ng/speak_lib.h",
        install: "libespeak-ng-dev",
    },
    Native {
        feature: "POCKETSPHINX",
        cfg: "voxline_has_pocketsphinx",
        pkg_config: &["pocketsphinx", "sphinxbase"],
        fallback_libs: &["pocketsphinx", "sphinxbase"],
        header: "/usr/include/pocketsphinx/pocketsphinx.h",
        install: "libpocketsphinx-dev libsphinxbase-dev pocketsphinx-en-us",
    },
];

const LIB_DIRS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/lib",
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=VOXLINE_OFFLINE_REQUIRED");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    for native in NATIVES {
        println!("cargo::rustc-check-cfg=cfg({})", native.cfg);
    }
    let required = std::env::var_os("VOXLINE_OFFLINE_REQUIRED").is_some_and(|v| v != "0");
    for native in NATIVES {
        if std::env::var_os(format!("CARGO_FEATURE_{}", native.feature)).is_none() {
            continue;
        }
        // A missing header re-runs the probe on every build until the package is installed.
        println!("cargo:rerun-if-changed={}", native.header);
        if probe(native) {
            println!("cargo:rustc-cfg={}", native.cfg);
        } else if required {
            panic!(
                "voxline-providers: feature `{}` needs {}; install it (scripts/setup.sh does) \
                 or unset VOXLINE_OFFLINE_REQUIRED",
                native.feature.to_lowercase(),
                native.install
            );
        } else {
            println!(
                "cargo:warning=voxline-providers: {} not found; the `{}` provider will report a \
                 configuration error until you install it (scripts/setup.sh) and rebuild",
                native.install,
                native.feature.to_lowercase()
            );
        }
    }
}

/// Finds the library and prints its link flags; false when it is not installed.
fn probe(native: &Native) -> bool {
    if let Some(flags) = pkg_config(native.pkg_config) {
        for flag in flags.split_whitespace() {
            if let Some(dir) = flag.strip_prefix("-L") {
                println!("cargo:rustc-link-search=native={dir}");
            } else if let Some(lib) = flag.strip_prefix("-l") {
                println!("cargo:rustc-link-lib=dylib={lib}");
            }
        }
        // The FFI declarations are hand-written: the `.pc` file and the library are enough.
        return true;
    }
    let found: Vec<&str> = native
        .fallback_libs
        .iter()
        .filter_map(|lib| {
            LIB_DIRS
                .iter()
                .find(|dir| Path::new(dir).join(format!("lib{lib}.so")).exists())
        })
        .copied()
        .collect();
    if found.len() != native.fallback_libs.len() {
        return false;
    }
    for dir in &found {
        println!("cargo:rustc-link-search=native={dir}");
    }
    for lib in native.fallback_libs {
        println!("cargo:rustc-link-lib=dylib={lib}");
    }
    true
}

/// The `-L`/`-l` flags of all `packages`, or `None` when pkg-config is missing or any package is.
fn pkg_config(packages: &[&str]) -> Option<String> {
    let output = Command::new("pkg-config")
        .arg("--libs")
        .args(packages)
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    String::from_utf8(output.stdout).ok()
}
