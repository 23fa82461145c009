//! Connecting to NATS, and what a node refuses before it writes anything (DESIGN §4 "What it
//! refuses"): servers older than 2.14, a `max_payload` that cannot hold the largest frame one append
//! can make, a log stream with asynchronous persistence, and — given monitoring URLs — a server that
//! does not sync always.

use crate::config::{ClusterConfig, NatsAuth};
use async_nats::jetstream::{self, stream};
use std::time::Duration;

/// The oldest nats-server cluster mode runs on: 2.9's clustered compare-and-set admitted two writers
/// (reproduced here: 222 of 300 racing rounds had 2–3 winners); fixes landed up to 2.14.
pub const SERVER_VERSION_MIN: (u64, u64) = (2, 14);

/// Room for a frame message's headers (expected sequence, message id, positions) under `max_payload`.
pub const HEADER_ROOM_BYTES: usize = 4096;

/// The largest frame this node's committer may build: what the servers carry, less the headers.
pub fn frame_bytes_max(max_payload: usize) -> usize {
    max_payload.saturating_sub(HEADER_ROOM_BYTES)
}

/// Connects to the servers of `config`. The receiver hears of every connection the client makes —
/// the first and each reconnect (possibly to another server) — so that the node can check the
/// server it is on now as it checked the first ([`check_server`]).
pub async fn connect(
    config: &ClusterConfig,
) -> Result<(async_nats::Client, tokio::sync::mpsc::UnboundedReceiver<()>), String> {
    let (connected, connections) = tokio::sync::mpsc::unbounded_channel();
    let mut options = match &config.auth {
        NatsAuth::CredsFile(path) => async_nats::ConnectOptions::with_credentials_file(path)
            .await
            .map_err(|error| format!("read the NATS credentials file {}: {error}", path.display()))?,
        _ => async_nats::ConnectOptions::new(),
    };
    options = match &config.auth {
        NatsAuth::None | NatsAuth::CredsFile(_) => options,
        NatsAuth::UserPassword { user, password } => options.user_and_password(user.clone(), password.clone()),
        NatsAuth::Token(token) => options.token(token.clone()),
        NatsAuth::NKey(seed) => options.nkey(seed.clone()),
    };
    if config.tls.required {
        options = options.require_tls(true);
    }
    if let Some(ca) = &config.tls.ca_file {
        options = options.add_root_certificates(ca.clone());
    }
    if let Some((cert, key)) = &config.tls.client_cert {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    let options = options
        .name(format!("strata {} {}", config.cluster_name, config.node_id))
        .connection_timeout(Duration::from_secs(5))
        .ping_interval(Duration::from_secs(2))
        .max_reconnects(None)
        .event_callback(move |event| {
            let connected = connected.clone();
            async move {
                if matches!(event, async_nats::Event::Connected) {
                    let _ = connected.send(());
                }
            }
        });
    let servers: Vec<async_nats::ServerAddr> = config
        .servers
        .iter()
        .map(|url| url.parse().map_err(|error| format!("NATS server URL {url:?}: {error}")))
        .collect::<Result<_, _>>()?;
    let client = options
        .connect(servers)
        .await
        .map_err(|error| format!("connect to NATS at {}: {error}", config.servers.join(",")))?;
    Ok((client, connections))
}

/// The start-up checks again, after the client connected anew: the server it is on now (version,
/// `max_payload`) and, given their monitoring URLs, every server that answers (also syncing always); and no
/// `max_payload` smaller than the `started_with` the node's frame limit was set from.
pub async fn check_again(
    client: &async_nats::Client,
    monitoring: &[String],
    started_with: usize,
) -> Result<(), String> {
    let connected = check_server(client)?;
    let monitored = check_monitored(monitoring, true).await?;
    let smallest = monitored.map_or(connected, |smallest| smallest.min(connected));
    if smallest < started_with {
        return Err(format!(
            "a NATS server's max_payload is now {smallest} bytes, below the {started_with} this node's frames were \
             sized for at start"
        ));
    }
    Ok(())
}

/// Refuses a server too old for clustered compare-and-set, or one whose `max_payload` cannot carry
/// every append the limits admit. Returns the `max_payload`.
pub fn check_server(client: &async_nats::Client) -> Result<usize, String> {
    let info = client.server_info();
    check_version_and_payload(&format!("NATS server {}", info.server_name), &info.version, info.max_payload)?;
    Ok(info.max_payload)
}

/// What a node refuses in any server: a version before 2.14, a `max_payload` too small for the
/// largest frame one append makes.
fn check_version_and_payload(server: &str, version_text: &str, max_payload: usize) -> Result<(), String> {
    let version = parse_version(version_text)
        .ok_or_else(|| format!("{server} reports version {version_text:?}, which is not a version"))?;
    if (version.0, version.1) < SERVER_VERSION_MIN {
        return Err(format!(
            "{server} is version {version_text}: cluster mode needs {}.{} or newer (older servers can admit two \
             conflicting writes to a clustered stream; see docs/design.md, \"Cluster mode\")",
            SERVER_VERSION_MIN.0, SERVER_VERSION_MIN.1
        ));
    }
    let needed = strata_storage::append_frame_bytes_max() + HEADER_ROOM_BYTES;
    if max_payload < needed {
        return Err(format!(
            "{server} has max_payload {max_payload} bytes: the largest frame one append can make needs {needed} \
             (set max_payload: 24MB in the server's configuration)"
        ));
    }
    Ok(())
}

fn parse_version(text: &str) -> Option<(u64, u64, u64)> {
    let core = text.trim_start_matches('v').split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|part| part.parse::<u64>().ok());
    Some((parts.next()??, parts.next()??, parts.next().flatten().unwrap_or(0)))
}

/// The log's stream: created if missing, checked if present.
pub async fn log_stream(
    js: &jetstream::Context,
    config: &ClusterConfig,
    namespace: &str,
) -> Result<stream::Stream, String> {
    let name = config.stream_name(namespace);
    let wanted = stream::Config {
        name: name.clone(),
        subjects: vec![config.subject(namespace)],
        description: Some(format!("Strata log of cluster {}, namespace {namespace}", config.cluster_name)),
        storage: stream::StorageType::File,
        num_replicas: config.replicas,
        allow_direct: true,
        deny_delete: true,
        deny_purge: true,
        // Retention is Strata's: no limits, nothing discarded.
        max_messages: -1,
        max_bytes: -1,
        max_message_size: -1,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    };
    let mut stream = js
        .get_or_create_stream(wanted)
        .await
        .map_err(|error| format!("open or create the JetStream stream {name}: {error}"))?;
    let info = stream.info().await.map_err(|error| format!("read the JetStream stream {name}: {error}"))?;
    let found = &info.config;
    if found.storage != stream::StorageType::File {
        return Err(format!(
            "the JetStream stream {name} keeps its messages in memory: the log must be on file storage"
        ));
    }
    if matches!(found.persist_mode, Some(stream::PersistenceMode::Async)) {
        return Err(format!(
            "the JetStream stream {name} persists asynchronously (acknowledged before stored): the log needs the default persistence"
        ));
    }
    if found.num_replicas != config.replicas {
        return Err(format!(
            "the JetStream stream {name} has {} replicas, --cluster-replicas says {}",
            found.num_replicas, config.replicas
        ));
    }
    if !found.allow_direct || !found.deny_delete || !found.deny_purge {
        return Err(format!("the JetStream stream {name} must allow direct gets and deny deletes and purges"));
    }
    Ok(stream)
}

/// Checks every server whose monitoring endpoint (`/varz`) is given — the same version and
/// `max_payload` rules as the server connected to, and syncing every write — and answers the smallest
/// `max_payload` among them (`None` when none is given).
pub async fn check_monitored_servers(monitoring: &[String]) -> Result<Option<usize>, String> {
    check_monitored(monitoring, false).await
}

/// [`check_monitored_servers`]; with `skip_unreachable`, a server whose monitoring does not answer
/// is passed over (after a reconnect, servers that are down are what a cluster survives, not a
/// misconfiguration; each is checked when it answers at a later reconnect).
async fn check_monitored(monitoring: &[String], skip_unreachable: bool) -> Result<Option<usize>, String> {
    let mut smallest: Option<usize> = None;
    for url in monitoring {
        let varz = match http_get(&format!("{}/varz", url.trim_end_matches('/'))).await {
            Ok(varz) => varz,
            Err(_) if skip_unreachable => continue,
            Err(error) => return Err(error),
        };
        let value: serde_json::Value =
            serde_json::from_str(&varz).map_err(|error| format!("{url}/varz is not JSON: {error}"))?;
        let max_payload = check_varz(url, &value)?;
        smallest = Some(smallest.map_or(max_payload, |smallest| smallest.min(max_payload)));
    }
    Ok(smallest)
}

/// One server's `/varz`, as a node checks it: version, `max_payload`, `sync_always`. Its
/// `max_payload`.
fn check_varz(url: &str, varz: &serde_json::Value) -> Result<usize, String> {
    let server = format!("NATS server at {url}");
    let version = varz.get("version").and_then(|v| v.as_str()).unwrap_or("");
    let max_payload = varz.get("max_payload").and_then(|v| v.as_u64()).unwrap_or(0) as usize;
    check_version_and_payload(&server, version, max_payload)?;
    let always = varz.pointer("/jetstream/config/sync_always").and_then(|v| v.as_bool()).unwrap_or(false);
    if !always {
        return Err(format!(
            "{server} does not sync every write (its /varz has no jetstream.config.sync_always): \
             set sync_interval: always, or an acknowledged append could be lost when servers lose power"
        ));
    }
    Ok(max_payload)
}

/// A plain HTTP/1.0 GET of a loopback or LAN monitoring endpoint (no TLS), the body as text.
async fn http_get(url: &str) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").ok_or_else(|| format!("monitoring URL {url:?} must start with http://"))?;
    let (host, path) = rest.split_once('/').map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let connect = tokio::net::TcpStream::connect(host);
    let mut socket = tokio::time::timeout(Duration::from_secs(5), connect)
        .await
        .map_err(|_| format!("connect to {url}: timed out"))?
        .map_err(|error| format!("connect to {url}: {error}"))?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    socket.write_all(request.as_bytes()).await.map_err(|error| format!("GET {url}: {error}"))?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut response))
        .await
        .map_err(|_| format!("GET {url}: timed out"))?
        .map_err(|error| format!("GET {url}: {error}"))?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| format!("GET {url}: no HTTP answer"))?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(format!("GET {url}: {}", head.lines().next().unwrap_or("")));
    }
    Ok(body.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_monitored_server_is_checked_for_version_payload_and_sync() {
        let varz = |version: &str, max_payload: u64, sync: bool| serde_json::json!({ "version": version, "max_payload": max_payload, "jetstream": { "config": { "sync_always": sync } } });
        let url = "http://127.0.0.1:8222";
        assert_eq!(check_varz(url, &varz("2.15.1", 25_165_824, true)), Ok(25_165_824));
        let old = check_varz(url, &varz("2.9.10", 25_165_824, true)).unwrap_err();
        assert!(
            old.contains("NATS server at http://127.0.0.1:8222 is version 2.9.10") && old.contains("2.14"),
            "{old}"
        );
        let small = check_varz(url, &varz("2.15.1", 1_048_576, true)).unwrap_err();
        assert!(small.contains("max_payload 1048576"), "{small}");
        let unsynced = check_varz(url, &varz("2.15.1", 25_165_824, false)).unwrap_err();
        assert!(unsynced.contains("sync_interval: always"), "{unsynced}");
        assert!(check_varz(url, &serde_json::json!({})).unwrap_err().contains("not a version"));
    }

    #[test]
    fn versions_parse_and_compare() {
        assert_eq!(parse_version("2.15.1"), Some((2, 15, 1)));
        assert_eq!(parse_version("v2.9.10"), Some((2, 9, 10)));
        assert_eq!(parse_version("2.14.0-beta.1"), Some((2, 14, 0)));
        assert_eq!(parse_version("x"), None);
        assert!((2, 9) < SERVER_VERSION_MIN && (2, 14) >= SERVER_VERSION_MIN && (3, 0) > SERVER_VERSION_MIN);
    }
}
