//! The consumer groups' state in the cluster's key-value bucket (DESIGN.md §4 "Consumer groups"):
//! one key per group (`groups.<name in hex>`), its whole encoded state as the value, always written
//! over the revision this node last read or wrote. A node that no longer leads but still saves (a
//! late checkpoint from a deposed leader) fails its compare-and-set instead of erasing what the
//! leader saved since — parked events are not lost, a deleted group does not come back.

use async_nats::jetstream::kv;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

const KEY_PREFIX: &str = "groups.";
/// How long one request to the bucket may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// [`strata_storage::GroupStates`] on a JetStream key-value bucket.
#[derive(Debug)]
pub struct KvGroupStates {
    bucket: kv::Store,
    name: String,
    runtime: tokio::runtime::Handle,
    /// Key → the revision this node last read or wrote (0: absent, or deleted by this node).
    revisions: Mutex<HashMap<String, u64>>,
}

impl KvGroupStates {
    pub fn new(bucket: kv::Store, name: String, runtime: tokio::runtime::Handle) -> KvGroupStates {
        KvGroupStates { bucket, name, runtime, revisions: Mutex::default() }
    }

    /// Runs `future` on the node's runtime and waits for it, from any thread — a request handler's
    /// included (a thread of its own does the waiting, as a file's fdatasync would block).
    fn block<T: Send>(&self, future: impl Future<Output = Result<T, String>> + Send) -> Result<T, String> {
        let runtime = &self.runtime;
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    runtime.block_on(async {
                        tokio::time::timeout(REQUEST_TIMEOUT, future)
                            .await
                            .unwrap_or_else(|_| Err(format!("no answer within {} s", REQUEST_TIMEOUT.as_secs())))
                    })
                })
                .join()
                .unwrap_or_else(|_| Err("the request to the bucket panicked".to_owned()))
        })
    }

    fn revision(&self, key: &str) -> u64 {
        self.revisions.lock().expect("revisions lock").get(key).copied().unwrap_or(0)
    }

    fn set_revision(&self, key: &str, revision: u64) {
        self.revisions.lock().expect("revisions lock").insert(key.to_owned(), revision);
    }
}

fn key(name: &str) -> String {
    let hex: String = name.bytes().map(|byte| format!("{byte:02x}")).collect();
    format!("{KEY_PREFIX}{hex}")
}

fn name_of(key: &str) -> Option<String> {
    let hex = key.strip_prefix(KEY_PREFIX)?;
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|at| hex.get(at..at + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok()))
        .collect();
    String::from_utf8(bytes?).ok()
}

impl strata_storage::GroupStates for KvGroupStates {
    fn load_all(&self) -> Result<Vec<(String, Vec<u8>)>, String> {
        let bucket = self.bucket.clone();
        let entries = self.block(async move {
            let mut keys = bucket.keys().await.map_err(|error| format!("list the keys: {error}"))?;
            let mut names = Vec::new();
            while let Some(key) = keys.next().await {
                let key = key.map_err(|error| format!("list the keys: {error}"))?;
                if key.starts_with(KEY_PREFIX) {
                    names.push(key);
                }
            }
            let mut entries = Vec::new();
            for key in names {
                let entry = bucket.entry(key.as_str()).await.map_err(|error| format!("read {key}: {error}"))?;
                if let Some(entry) = entry {
                    entries.push((key, entry));
                }
            }
            Ok(entries)
        })?;
        let mut loaded = Vec::new();
        let mut revisions = self.revisions.lock().expect("revisions lock");
        revisions.clear();
        for (key, entry) in entries {
            if entry.operation != kv::Operation::Put || entry.value.is_empty() {
                // Deleted: creating the group again writes over this revision.
                revisions.insert(key, entry.revision);
                continue;
            }
            let Some(name) = name_of(&key) else { continue };
            revisions.insert(key, entry.revision);
            loaded.push((name, entry.value.to_vec()));
        }
        Ok(loaded)
    }

    fn save(&self, name: &str, state: &[u8]) -> Result<(), String> {
        let key = key(name);
        let revision = self.revision(&key);
        let (bucket, value, at) = (self.bucket.clone(), bytes::Bytes::copy_from_slice(state), key.clone());
        let written = self.block(async move {
            if revision == 0 {
                bucket.create(&at, value).await.map_err(|error| error.to_string())
            } else {
                bucket.update(&at, value, revision).await.map_err(|error| error.to_string())
            }
        });
        match written {
            Ok(revision) => {
                self.set_revision(&key, revision);
                Ok(())
            }
            Err(error) => Err(format!(
                "the group {name}'s state in the cluster changed since this node last read it, or the bucket did \
                 not answer ({error}); another node may lead"
            )),
        }
    }

    fn delete(&self, name: &str) -> Result<(), String> {
        let key = key(name);
        let revision = self.revision(&key);
        let (bucket, at) = (self.bucket.clone(), key.clone());
        self.block(async move {
            bucket
                .delete_expect_revision(&at, Some(revision).filter(|&revision| revision > 0))
                .await
                .map_err(|error| format!("delete the group {name}'s state: {error}"))
        })?;
        // A delete is a new revision too; the next create writes over it.
        let (bucket, at) = (self.bucket.clone(), key.clone());
        let after =
            self.block(
                async move { Ok(bucket.entry(at.as_str()).await.ok().flatten().map_or(0, |entry| entry.revision)) },
            )?;
        self.set_revision(&key, after);
        Ok(())
    }

    fn describe(&self) -> String {
        format!("NATS key-value bucket {}", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_hold_every_valid_group_name() {
        for name in ["billing", "a..b", "-x_y.z", "Z9"] {
            let key = key(name);
            assert!(key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.'), "{key}");
            assert_eq!(name_of(&key).as_deref(), Some(name));
        }
        assert_eq!(name_of("leader"), None);
        assert_eq!(name_of("groups.zz"), None);
    }
}
