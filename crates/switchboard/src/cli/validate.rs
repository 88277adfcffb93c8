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
            let functions: Vec<String> = loaded
                .agents
                .iter()
                .filter_map(|a| {
                    let function = a.settings.get("function")?.get("name")?.as_str()?;
                    Some(format!("`{}` calls `{function}`", a.name))
                })
                .collect();
            if !functions.is_empty() {
                println!(
                    "note: function tools ({}) need a program that embeds Switchboard and registers \
                     their functions (Runtime::load_with_functions); `switchboard serve` and `chat` \
                     register none and will refuse this configuration",
                    functions.join(", ")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            eprint!("{errors}");
            Ok(ExitCode::FAILURE)
        }
    }
}
