//! The subcommands, one module each, and what they share: finding the configuration.

pub mod audit;
pub mod chat;
pub mod eval;
pub mod grants;
pub mod init;
pub mod logging;
pub mod mcp;
pub mod payloads;
pub mod serve;
pub mod token;
pub mod trace;
pub mod usage;
pub mod validate;

use std::path::Path;
use std::sync::Arc;
use switchboard_core::{Error, Result};
use switchboard_runtime::config::ConfigSource;
use switchboard_runtime::{Runtime, demo};
use switchboard_store::Store;

/// The configuration to use: `--config FILE`, or the built-in demo (preparing its data first).
pub fn source(config: Option<&Path>) -> Result<ConfigSource> {
    match config {
        Some(path) => Ok(ConfigSource::File(path.to_path_buf())),
        None => {
            let dir = demo::data_dir();
            demo::prepare(&dir)?;
            Ok(demo::source(&dir))
        }
    }
}

/// Loads and builds the runtime.
pub async fn runtime(config: Option<&Path>) -> Result<Runtime> {
    Runtime::load(&source(config)?).await
}

/// Opens only the store of a configuration (for `trace` and `audit`, which need nothing else).
pub async fn store(config: Option<&Path>) -> Result<Arc<dyn Store>> {
    let loaded = Runtime::validate(&source(config)?).map_err(|e| Error::config(e.to_string()))?;
    Runtime::open_store(&loaded).await
}

/// Milliseconds between two Unix-nanosecond instants, for display.
pub fn millis(start: u64, end: u64) -> f64 {
    end.saturating_sub(start) as f64 / 1e6
}
