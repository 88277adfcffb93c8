//! Embeds the demo (the repository's `switchboard.toml`, `agents/`, `prompts/` and `data/`) into
//! the binary, so `switchboard chat` works from any directory with no configuration.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn files_under(root: &Path, dir: &str) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut stack = vec![root.join(dir)];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(rel) = path.strip_prefix(root) {
                out.push((rel.to_string_lossy().replace('\\', "/"), path.clone()));
            }
        }
    }
    out.sort();
    out
}

fn list(name: &str, files: &[(String, PathBuf)]) -> String {
    let mut s = format!("pub(crate) static {name}: &[(&str, &str)] = &[\n");
    for (rel, path) in files {
        let _ = writeln!(s, "    ({rel:?}, include_str!({:?})),", path.display().to_string());
    }
    s.push_str("];\n");
    s
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest.join("../..").canonicalize().expect("the workspace root exists");
    let mut config = files_under(&root, "agents");
    config.extend(files_under(&root, "prompts"));
    config.push(("switchboard.toml".into(), root.join("switchboard.toml")));
    let data = files_under(&root, "data");

    for dir in ["agents", "prompts", "data", "switchboard.toml"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    let code = list("CONFIG_FILES", &config) + &list("DATA_FILES", &data);
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("demo_files.rs");
    std::fs::write(out, code).expect("OUT_DIR is writable");
}
