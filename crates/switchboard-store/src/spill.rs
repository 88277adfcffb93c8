//! The spill file: where spans and audit rows wait, on local disk, while the store is unavailable.
//!
//! One JSON record per line, appended and fsync'd a batch at a time, read back in order by the
//! replay. The file is bounded ([`SpillConfig::max_bytes`]); rows that would exceed the budget are
//! refused with an error naming the file and the budget, because silently dropping evidence is
//! worse than saying so. A line cut short by a crash mid-append is skipped with a warning (its row
//! was never acknowledged to anyone). The file is locked while a process uses it, so two
//! processes sharing a data dir never interleave; a process that finds it locked spills to a file
//! of its own (`…-PID.jsonl`), and whoever starts next adopts every unlocked spill file it finds.

use crate::queue::Record;
use fs4::fs_std::FileExt;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use switchboard_core::{Error, Result};

/// The default disk budget of a spill file: 1 GiB, about a million audit rows.
pub const DEFAULT_SPILL_MAX_BYTES: u64 = 1 << 30;

/// Where a store spills, and how much disk it may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpillConfig {
    /// The spill file (`….jsonl`); its directory is created if needed.
    pub path: PathBuf,
    /// The most bytes the file may hold; rows beyond it are refused (and logged as an error).
    pub max_bytes: u64,
}

impl SpillConfig {
    /// A spill file at `path` with the default budget.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into(), max_bytes: DEFAULT_SPILL_MAX_BYTES }
    }
}

/// An open, locked spill file and how far the replay has read it.
pub(crate) struct Spill {
    file: File,
    path: PathBuf,
    max_bytes: u64,
    /// Bytes in the file.
    len: u64,
    /// Bytes already replayed into the store; the rest is pending.
    replayed: u64,
    /// Whether appended bytes still await an fsync.
    dirty: bool,
    /// Rows refused because the budget was exhausted, since the last time that was reported.
    refused: u64,
}

impl Spill {
    /// Opens (creating) the spill file, adopting the rows of any unlocked sibling spill files left
    /// by other processes (a crash, or a replica that found the main file locked).
    pub(crate) fn open(config: &SpillConfig) -> Result<Self> {
        let dir = config.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::config(format!("store: cannot create the spill directory {}: {e}", dir.display()))
        })?;
        let (file, path) = match open_locked(&config.path)? {
            Some(file) => (file, config.path.clone()),
            None => {
                let own = sibling(&config.path, &std::process::id().to_string());
                tracing::info!(path = %config.path.display(), own = %own.display(),
                    "store: the spill file is in use by another process; spilling to a file of this process");
                let file = open_locked(&own)?.ok_or_else(|| {
                    Error::config(format!(
                        "store: the spill file {} is locked by another process",
                        own.display()
                    ))
                })?;
                (file, own)
            }
        };
        let len = file
            .metadata()
            .map_err(|e| {
                Error::internal(format!("store: cannot read the spill file {}: {e}", path.display()))
            })?
            .len();
        let mut spill =
            Self { file, path, max_bytes: config.max_bytes, len, replayed: 0, dirty: false, refused: 0 };
        spill.adopt_siblings(&config.path)?;
        if spill.pending() {
            tracing::warn!(path = %spill.path.display(), bytes = spill.len,
                "store: found spilled telemetry from an earlier run; replaying it");
        }
        Ok(spill)
    }

    /// Whether rows are waiting to be replayed.
    pub(crate) fn pending(&self) -> bool {
        self.replayed < self.len
    }

    /// The file in use.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `records` (unsynced; see [`Self::sync`]) and returns the indices of those it did
    /// not write: beyond the disk budget (refused and counted; the error is logged once per
    /// exhausted stretch, not once per row), unencodable, or lost to a failed write. The caller
    /// must forget them wherever they are still expected to be written.
    pub(crate) fn append(&mut self, records: &[Record]) -> Vec<usize> {
        let mut buf = Vec::with_capacity(records.len() * 512);
        let mut lost = Vec::new();
        let mut buffered = Vec::with_capacity(records.len());
        let mut refused = 0u64;
        for (i, record) in records.iter().enumerate() {
            let start = buf.len();
            if serde_json::to_writer(&mut buf, record).is_err() {
                buf.truncate(start);
                tracing::error!("store: a telemetry row could not be encoded for the spill file");
                lost.push(i);
                continue;
            }
            buf.push(b'\n');
            if self.len + buf.len() as u64 > self.max_bytes {
                buf.truncate(start);
                refused += 1;
                lost.push(i);
            } else {
                buffered.push(i);
            }
        }
        if refused > 0 {
            if self.refused == 0 {
                tracing::error!(path = %self.path.display(), max_bytes = self.max_bytes,
                    "store: the spill file has reached its disk budget (store.spill_max_bytes); \
                     telemetry rows are being refused until the store is back");
            }
            self.refused += refused;
        }
        if buf.is_empty() {
            return lost;
        }
        match self.file.write_all(&buf) {
            Ok(()) => {
                self.len += buf.len() as u64;
                self.dirty = true;
            }
            Err(e) => {
                tracing::error!(path = %self.path.display(), rows = buffered.len(), error = %e,
                    "store: writing the spill file failed; these telemetry rows are lost");
                // A partial line may be on disk; what follows must start on a line of its own.
                self.len = self.file.metadata().map(|m| m.len()).unwrap_or(self.len);
                let _ = self.file.write_all(b"\n").map(|()| self.len += 1);
                lost.extend(buffered);
                lost.sort_unstable();
            }
        }
        lost
    }

    /// Makes what was appended durable. Called once per batch, so the cost of an fsync is shared
    /// by every row of the batch.
    pub(crate) fn sync(&mut self) {
        if self.dirty {
            if let Err(e) = self.file.sync_data() {
                tracing::error!(path = %self.path.display(), error = %e, "store: fsync of the spill file failed");
            }
            self.dirty = false;
        }
    }

    /// A handle to fsync what was appended, outside the lock (`None` when nothing is unsynced):
    /// whoever needs the lock meanwhile, a request overflowing a full queue among them, then
    /// waits for a `write`, never for the disk.
    pub(crate) fn sync_handle(&mut self) -> Option<File> {
        if !self.dirty {
            return None;
        }
        match self.file.try_clone() {
            Ok(file) => {
                self.dirty = false;
                Some(file)
            }
            // Without a second handle, sync under the lock: slower for others, never less durable.
            Err(_) => {
                self.sync();
                None
            }
        }
    }

    /// Up to `max` pending records, in order, and the offset just past them (to pass to
    /// [`Self::replayed_to`] once they are committed). Undecodable lines are skipped with a warning.
    pub(crate) fn next_chunk(&mut self, max: usize) -> Result<(Vec<Record>, u64)> {
        let read_error = |e: std::io::Error| {
            Error::internal(format!("store: reading the spill file {} failed: {e}", self.path.display()))
        };
        let mut reader = BufReader::new(&self.file);
        reader.seek(SeekFrom::Start(self.replayed)).map_err(read_error)?;
        let mut records = Vec::new();
        let mut offset = self.replayed;
        let mut line = Vec::new();
        while records.len() < max && offset < self.len {
            line.clear();
            let n = (&mut reader).take(self.len - offset).read_until(b'\n', &mut line).map_err(read_error)?;
            if n == 0 {
                break;
            }
            offset += n as u64;
            let text = line.strip_suffix(b"\n").unwrap_or(&line);
            if text.is_empty() {
                continue;
            }
            match serde_json::from_slice::<Record>(text) {
                Ok(record) => records.push(record),
                Err(e) => tracing::warn!(path = %self.path.display(), offset, error = %e,
                    "store: skipping an unreadable line of the spill file (cut short by a crash?)"),
            }
        }
        // Appends go through the same handle with O_APPEND, so the read position needs no reset.
        Ok((records, offset))
    }

    /// Marks everything before `offset` as committed to the store. Once all of it is, the file is
    /// emptied (and the budget freed).
    pub(crate) fn replayed_to(&mut self, offset: u64) {
        self.replayed = offset;
        if self.replayed >= self.len {
            match self.file.set_len(0).and_then(|()| self.file.sync_all()) {
                Ok(()) => {
                    self.len = 0;
                    self.replayed = 0;
                    if self.refused > 0 {
                        tracing::error!(path = %self.path.display(), refused = self.refused,
                            "store: telemetry rows were refused while the spill file was full");
                        self.refused = 0;
                    }
                }
                Err(e) => tracing::error!(path = %self.path.display(), error = %e,
                    "store: emptying the replayed spill file failed; it will be replayed again (idempotently)"),
            }
        }
    }

    /// Appends the rows of unlocked `…*.jsonl` siblings of `main` (other than this file) and
    /// deletes them, so one file holds everything pending, in order.
    fn adopt_siblings(&mut self, main: &Path) -> Result<()> {
        let (Some(dir), Some(stem)) = (main.parent(), main.file_stem().and_then(|s| s.to_str())) else {
            return Ok(());
        };
        let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
        let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
        let mut siblings: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p != &self.path)
            .filter(|p| {
                p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                    n == format!("{stem}.jsonl")
                        || (n.starts_with(&format!("{stem}-")) && n.ends_with(".jsonl"))
                })
            })
            .collect();
        siblings.sort();
        for path in siblings {
            let Ok(Some(mut other)) = open_locked(&path) else { continue };
            let mut bytes = Vec::new();
            if other.read_to_end(&mut bytes).is_err() {
                continue;
            }
            if !bytes.is_empty() && !bytes.ends_with(b"\n") {
                bytes.push(b'\n');
            }
            self.file.write_all(&bytes).map_err(|e| {
                Error::internal(format!("store: adopting the spill file {} failed: {e}", path.display()))
            })?;
            self.len += bytes.len() as u64;
            self.dirty = true;
            self.sync();
            tracing::info!(from = %path.display(), bytes = bytes.len(), "store: adopted a spill file");
            let _ = std::fs::remove_file(&path);
        }
        Ok(())
    }
}

impl Drop for Spill {
    fn drop(&mut self) {
        // An empty file would only litter the directory (the CLI opens the store next to a running
        // server every time). Removing it while still holding the lock is safe: whoever opens the
        // path meanwhile finds, once it has the lock, that the path is no longer its file, and
        // opens it again (see `open_locked`).
        if self.len == 0 {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Opens `path` for reading and appending and takes an exclusive lock on it; `None` when another
/// process holds the lock.
fn open_locked(path: &Path) -> Result<Option<File>> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let failed = |what: &str, e: std::io::Error| {
        Error::config(format!("store: cannot {what} the spill file {}: {e}", path.display()))
    };
    loop {
        // Audit rows name callers: readable by this user only.
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| failed("open", e))?;
        match FileExt::try_lock_exclusive(&file) {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(failed("lock", e)),
        }
        // The previous holder may have removed the file (empty) between our open and our lock:
        // rows written to that unlinked file would be lost, so only the file still at `path` will do.
        let held = file.metadata().map_err(|e| failed("read", e))?;
        match std::fs::metadata(path) {
            Ok(now) if (now.dev(), now.ino()) == (held.dev(), held.ino()) => return Ok(Some(file)),
            _ => continue,
        }
    }
}

/// `dir/stem-SUFFIX.jsonl` next to `main` (`dir/stem.jsonl`).
fn sibling(main: &Path, suffix: &str) -> PathBuf {
    let stem = main.file_stem().and_then(|s| s.to_str()).unwrap_or("spill");
    main.with_file_name(format!("{stem}-{suffix}.jsonl"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_core::{SpanKind, SpanRecord, SpanStatus};

    fn span(n: u64) -> Record {
        Record::Span(Box::new(
            SpanRecord {
                request_id: "r".into(),
                trace_id: "t".into(),
                span_id: format!("s{n}"),
                parent_id: None,
                name: "execute_tool x".into(),
                kind: SpanKind::Tool,
                agent: None,
                start_unix_nano: n,
                end_unix_nano: n + 1,
                status: SpanStatus::Ok,
                status_message: None,
                attributes: serde_json::Map::new(),
            }
            .into(),
        ))
    }

    fn ids(records: &[Record]) -> Vec<String> {
        records
            .iter()
            .map(|r| match r {
                Record::Span(s) => s.span_id.clone(),
                Record::Audit { id, .. }
                | Record::Payload { id, .. }
                | Record::Turn { id, .. }
                | Record::Response { id, .. }
                | Record::DeleteResponse { id, .. } => id.clone(),
            })
            .collect()
    }

    #[test]
    fn rows_come_back_in_order_and_the_budget_refuses_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.jsonl");
        let one_line = serde_json::to_vec(&span(0)).unwrap().len() as u64 + 1;
        let mut spill = Spill::open(&SpillConfig { path: path.clone(), max_bytes: one_line * 3 }).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "only its owner may read the spilled audit rows: {mode:o}");
        assert!(spill.append(&[span(0), span(1)]).is_empty());
        assert_eq!(spill.append(&[span(2), span(3), span(4)]), [1, 2], "the rows it did not write");
        spill.sync();
        assert_eq!(spill.refused, 2, "two rows did not fit the budget");
        let (records, offset) = spill.next_chunk(2).unwrap();
        assert_eq!(ids(&records), ["s0", "s1"]);
        spill.replayed_to(offset);
        assert!(spill.pending());
        let (records, offset) = spill.next_chunk(10).unwrap();
        assert_eq!(ids(&records), ["s2"]);
        spill.replayed_to(offset);
        assert!(!spill.pending());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "a fully replayed file is emptied");
        spill.append(&[span(5)]);
        assert_eq!(ids(&spill.next_chunk(10).unwrap().0), ["s5"], "appends after emptying are read back");
    }

    #[test]
    fn a_locked_file_sends_a_second_user_to_a_file_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let config = SpillConfig::new(dir.path().join("s.jsonl"));
        let first = Spill::open(&config).unwrap();
        let second = Spill::open(&config).unwrap();
        assert_eq!(first.path(), config.path);
        assert_ne!(second.path(), config.path);
        assert!(second.path().file_name().unwrap().to_string_lossy().starts_with("s-"));
    }
}
