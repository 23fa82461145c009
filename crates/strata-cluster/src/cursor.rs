//! Where the local replica is in the cluster's log: the JetStream sequence of the last message it
//! applied (or skipped) and the local log's next position after it. Kept in memory by the committer's
//! thread and saved to `cluster-cursor.json` in the data directory now and then (not synced: the file
//! is a hint that a restart checks against the log before trusting it — `node::resume_sequence`).

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub const CURSOR_FILE: &str = "cluster-cursor.json";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The JetStream sequence of the last message applied or skipped; 0 before the first.
    pub sequence: u64,
    /// The local log's next position after it.
    pub next_position: u64,
}

/// The cursor shared by the committer's thread (which moves it) and the node's tasks (which read
/// and save it).
#[derive(Debug)]
pub struct SharedCursor {
    current: Mutex<Cursor>,
    file: PathBuf,
    saved: Mutex<Cursor>,
}

impl SharedCursor {
    pub fn new(dir: &Path, start: Cursor) -> Self {
        Self { current: Mutex::new(start), file: dir.join(CURSOR_FILE), saved: Mutex::new(Cursor::default()) }
    }

    pub fn get(&self) -> Cursor {
        *self.current.lock().expect("cursor lock")
    }

    pub fn set(&self, cursor: Cursor) {
        *self.current.lock().expect("cursor lock") = cursor;
    }

    /// Saves the cursor if it moved since the last save.
    pub fn save(&self) -> std::io::Result<()> {
        let cursor = self.get();
        let mut saved = self.saved.lock().expect("cursor lock");
        if *saved == cursor {
            return Ok(());
        }
        let temporary = self.file.with_extension("json.tmp");
        std::fs::write(&temporary, serde_json::to_vec(&cursor).expect("a cursor serializes"))?;
        std::fs::rename(&temporary, &self.file)?;
        *saved = cursor;
        Ok(())
    }
}

/// The saved cursor of `dir`, if there is a readable one.
pub fn load(dir: &Path) -> Option<Cursor> {
    let bytes = std::fs::read(dir.join(CURSOR_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}
