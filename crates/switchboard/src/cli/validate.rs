//! `switchboard validate`.

use std::path::Path;
use std::process::ExitCode;
use switchboard_core::Result;
use switchboard_runtime::Runtime;

/// Prints every problem with its file and field; exits 1 when there are any.
pub fn run(config: Option<&Path>) -> Result<ExitCode> {
    match Runtime::validate(&super::source(config)?) {
        Ok(loaded) => {
            let names: Vec<&str> = loaded.agents.iter().map(|a| a.name.as_str()).collect();
            println!("configuration OK: {} agents ({})", names.len(), names.join(", "));
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            eprint!("{errors}");
            Ok(ExitCode::FAILURE)
        }
    }
}
