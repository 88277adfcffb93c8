//! Lays out the `dist` build's code so that what start-up runs sits together. Each page fault
//! maps 64 kB of the binary around the page it needs, so start-up code scattered over 34 MB of
//! text kept 20 MB of it resident at idle; packed, about 10 MB (README, Performance: idle RSS).
//! The functions are listed in `startup-order.txt`, made by `scripts/startup-order`.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=startup-order.txt");
    println!("cargo:rerun-if-env-changed=SWITCHBOARD_NO_STARTUP_ORDER");
    // Build scripts are told only `debug` or `release`; the profile's own name is the directory
    // above `build/`: <target dir>/[<triple>/]<profile>/build/<package>/out.
    let out = std::env::var("OUT_DIR").unwrap_or_default();
    let profile = Path::new(&out).ancestors().nth(3).and_then(Path::file_name);
    if profile.is_some_and(|p| p == "dist") && links_with_rust_lld() {
        let order = Path::new(env!("CARGO_MANIFEST_DIR")).join("startup-order.txt");
        println!("cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}", order.display());
        // Symbols the code no longer has are skipped: a stale list costs memory, not the build.
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}

/// Whether the binary is linked by rustc's own lld, which takes an ordering file (GNU ld does not):
/// the default for x86_64 Linux since rustc 1.90, unless a linker is configured or this is
/// turned off with `SWITCHBOARD_NO_STARTUP_ORDER`.
fn links_with_rust_lld() -> bool {
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    if var("TARGET") != "x86_64-unknown-linux-gnu"
        || std::env::var_os("SWITCHBOARD_NO_STARTUP_ORDER").is_some()
        || std::env::var_os("RUSTC_LINKER").is_some()
        || ["linker", "link-self-contained"].iter().any(|f| var("CARGO_ENCODED_RUSTFLAGS").contains(f))
    {
        return false;
    }
    let version = std::process::Command::new(var("RUSTC")).arg("--version").output();
    // "rustc 1.95.0 (…)": the minor version.
    let minor = version.ok().and_then(|o| {
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        text.split_whitespace().nth(1)?.split('.').nth(1)?.parse::<u32>().ok()
    });
    minor.is_some_and(|m| m >= 90)
}
