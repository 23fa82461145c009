//! The consumer groups' state in the cluster's key-value bucket (DESIGN.md §4 "Consumer groups"):
//! one key per group (`groups.<name in hex>`), its whole encoded state as the value, always written
//! over the revision this node last read or wrote. A node that no longer leads but still saves (a
//! late checkpoint from a deposed leader) fails its compare-and-set instead of erasing what the
//! leader saved since — parked events are not lost, a deleted group does not come back.

use async_nats::jetstream::kv;
use futures_util::StreamExt;
use std::future::Future;
use std::time::Duration;

const KEY_PREFIX: &str = "groups.";
/// How long one request to the bucket may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// [`strata_storage::GroupStates`] on a JetStream key-value bucket. A state's version is its key's
/// revision.
#[derive(Debug)]
pub struct KvGroupStates {
    bucket: kv::Store,
    name: String,
    runtime: tokio::runtime::Handle,
}

impl KvGroupStates {
    pub fn new(bucket: kv::Store, name: String, runtime: tokio::runtime::Handle) -> KvGroupStates {
        KvGroupStates { bucket, name, runtime }
    }

    /// Runs `future` on the node's runtime and waits for it (at most `REQUEST_TIMEOUT`), from any
    /// thread. On a worker of a multi-threaded runtime the worker is handed over first
    /// (`block_in_place`), so the runtime — the NATS connection's task included — goes on while this
    /// thread waits; elsewhere a thread of its own waits.
    fn block<T: Send>(&self, future: impl Future<Output = Result<T, String>> + Send) -> Result<T, String> {
        let runtime = &self.runtime;
        let bounded = async {
            tokio::time::timeout(REQUEST_TIMEOUT, future)
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {} s", REQUEST_TIMEOUT.as_secs())))
        };
        let current = tokio::runtime::Handle::try_current().ok().map(|handle| handle.runtime_flavor());
        match current {
            Some(tokio::runtime::RuntimeFlavor::CurrentThread) => std::thread::scope(|scope| {
                scope
                    .spawn(|| runtime.block_on(bounded))
                    .join()
                    .unwrap_or_else(|_| Err("the request to the bucket panicked".to_owned()))
            }),
            _ => tokio::task::block_in_place(|| runtime.block_on(bounded)),
        }
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
    fn load_all(&self) -> Result<Vec<(String, Vec<u8>, u64)>, String> {
        let bucket = self.bucket.clone();
        self.block(async move {
            // `keys` lists the keys that hold a value (not deleted ones).
            let mut keys = bucket.keys().await.map_err(|error| format!("list the keys: {error}"))?;
            let mut names = Vec::new();
            while let Some(key) = keys.next().await {
                let key = key.map_err(|error| format!("list the keys: {error}"))?;
                if key.starts_with(KEY_PREFIX) {
                    names.push(key);
                }
            }
            let mut loaded = Vec::new();
            for key in names {
                let entry = bucket.entry(key.as_str()).await.map_err(|error| format!("read {key}: {error}"))?;
                let Some(entry) =
                    entry.filter(|entry| entry.operation == kv::Operation::Put && !entry.value.is_empty())
                else {
                    continue;
                };
                if let Some(name) = name_of(&key) {
                    loaded.push((name, entry.value.to_vec(), entry.revision));
                }
            }
            Ok(loaded)
        })
    }

    fn save(&self, name: &str, state: &[u8], version: Option<u64>) -> Result<u64, String> {
        let (bucket, value, key) = (self.bucket.clone(), bytes::Bytes::copy_from_slice(state), key(name));
        self.block(async move {
            match version {
                // A new group: the key must hold nothing (or a delete marker).
                None => bucket.create(&key, value).await.map_err(|error| error.to_string()),
                Some(revision) => bucket.update(&key, value, revision).await.map_err(|error| error.to_string()),
            }
        })
        .map_err(|error| {
            format!(
                "group {name}: its state in the cluster is not the one this node holds, or the bucket did not \
                 answer ({error}); another node may lead"
            )
        })
    }

    fn delete(&self, name: &str, version: u64) -> Result<(), String> {
        let (bucket, key) = (self.bucket.clone(), key(name));
        self.block(async move {
            bucket.delete_expect_revision(&key, Some(version)).await.map_err(|error| error.to_string())
        })
        .map_err(|error| format!("group {name}: could not delete its state in the cluster ({error})"))
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
