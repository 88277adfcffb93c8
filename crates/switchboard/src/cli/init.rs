//! `switchboard init DIR`.

use std::path::Path;
use std::process::ExitCode;
use switchboard_core::Result;
use switchboard_runtime::demo;

/// Writes the demo as editable files into `dir`.
pub fn run(dir: &Path) -> Result<ExitCode> {
    demo::write_to(dir)?;
    println!("wrote the demo configuration to {}", dir.display());
    println!(
        "try: switchboard chat --config {}/switchboard.toml --as alice@example.com \"total revenue by region\"",
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}
