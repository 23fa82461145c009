//! `export` / `import` (NDJSON, one event per line, as reads render it), `backup` / `restore` (an
//! export of a consistent snapshot and the consumer groups' states, with a manifest and checksums),
//! and `verify`.

use super::target::{Target, expect_status};
use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use strata_wire::{ImportResponse, ReadPage, ScavengeResponse, StreamInfo, StreamList, VerifyResponse};

/// Events per page when exporting or verifying.
const PAGE_EVENTS: u64 = 10_000;
/// Name of the events file in a backup directory, and of its manifest.
const BACKUP_EVENTS_FILE: &str = "events.ndjson";
const BACKUP_MANIFEST_FILE: &str = "manifest.json";
/// The consumer groups' states in a backup: one `{"name", "state"}` per line.
const BACKUP_GROUPS_FILE: &str = "groups.ndjson";

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Write to this file instead of standard output.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// An export (NDJSON); `-` for standard input.
    pub file: PathBuf,
    /// Events per atomic batch. Run an interrupted import again with the same value: batches already
    /// imported are recognised by their event ids and skipped.
    #[arg(long, default_value_t = 1_000)]
    pub batch_events: usize,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The directory to write the backup to (created; must not hold a backup already).
    #[arg(long)]
    pub output: PathBuf,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup directory.
    #[arg(long)]
    pub from: PathBuf,
}

fn progress(total: Option<u64>, what: &str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = match total {
        Some(total) => ProgressBar::new(total),
        None => ProgressBar::new_spinner(),
    };
    let template = format!("{what} {{bar:40}} {{pos}}/{{len}} events ({{per_sec}}, {{eta}} left)");
    bar.set_style(ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()));
    bar
}

/// A page of `GET /v1/all` whose events are kept as the server rendered them: an export copies them
/// byte for byte (a `strata_wire::ReadPage` otherwise).
#[derive(Deserialize)]
struct RawPage<'a> {
    #[serde(borrow)]
    events: Vec<&'a RawValue>,
    next: Option<u64>,
}

/// The head position now (`None`: empty).
async fn head(target: &Target) -> Result<Option<u64>> {
    Ok(target.get::<strata_wire::Info>("/v1/info").await?.head_position)
}

/// `manifest.json` of a backup. The groups' fields are absent from backups taken before groups were
/// kept (those restore without groups).
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: String,
    events: u64,
    head_position: Option<u64>,
    events_file: String,
    events_bytes: u64,
    events_crc32c: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    groups: Option<GroupsManifest>,
}

#[derive(Debug, Serialize, Deserialize)]
struct GroupsManifest {
    count: u64,
    file: String,
    bytes: u64,
    crc32c: u32,
}

/// A line of a backup's groups file.
#[derive(Debug, Serialize, Deserialize)]
struct SavedGroupLine {
    name: String,
    state: strata_wire::GroupState,
}

/// Every consumer group's durable state now, by name.
async fn group_states(target: &Target) -> Result<Vec<SavedGroupLine>> {
    let list: strata_wire::GroupList = target.get("/v1/groups").await?;
    let mut saved = Vec::new();
    for group in list.groups {
        let path = format!("/v1/groups/{}/state", super::target::encode(&group.name));
        let answer = target.send("GET", &path, None).await?;
        if answer.status == 404 {
            continue; // Deleted meanwhile.
        }
        saved.push(SavedGroupLine { name: group.name, state: answer.ok()? });
    }
    Ok(saved)
}

const BACKUP_FORMAT: &str = "strata-backup-1";

/// Writes every event up to `until` (the snapshot) to `out`, one per line, exactly as the API
/// renders them; returns how many.
async fn export_to(target: &Target, until: Option<u64>, out: &mut dyn Write, bar: &ProgressBar) -> Result<u64> {
    let Some(until) = until else { return Ok(0) };
    let mut from = 0;
    let mut count = 0;
    loop {
        let path = format!("/v1/all?from={from}&limit={PAGE_EVENTS}&until_position={until}");
        let answer = target.send("GET", &path, None).await?;
        expect_status(answer.status, &answer.body, 200)?;
        let page: RawPage = serde_json::from_slice(&answer.body).context("a page of events that is not JSON")?;
        for event in &page.events {
            out.write_all(event.get().as_bytes())?;
            out.write_all(b"\n")?;
        }
        count += page.events.len() as u64;
        bar.inc(page.events.len() as u64);
        match page.next {
            Some(next) => from = next,
            None => return Ok(count),
        }
    }
}

pub async fn export(target: &Target, args: ExportArgs, json: bool) -> Result<()> {
    // A consistent snapshot: everything up to the head when the export starts, however long it takes.
    let until = head(target).await?;
    let bar = progress(until.map(|h| h + 1), "exporting", json || args.output.is_none());
    let count = match &args.output {
        Some(path) => {
            let file = std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?;
            let mut out = BufWriter::new(file);
            let count = export_to(target, until, &mut out, &bar).await?;
            out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            count
        }
        None => {
            let stdout = std::io::stdout();
            let mut out = BufWriter::new(stdout.lock());
            let count = export_to(target, until, &mut out, &bar).await?;
            out.flush()?;
            count
        }
    };
    bar.finish_and_clear();
    report(json, json!({ "events": count, "head_position": until }), || format!("exported {count} events"));
    Ok(())
}

fn report(json: bool, value: Value, text: impl FnOnce() -> String) {
    if json {
        println!("{value}");
    } else {
        eprintln!("{}", text());
    }
}

/// Imports NDJSON lines from `reader` in batches; returns (imported, replayed) event counts.
async fn import_from(
    target: &Target,
    reader: &mut dyn BufRead,
    batch_events: usize,
    bar: &ProgressBar,
) -> Result<(u64, u64)> {
    ensure!((1..=strata_core::limits::APPEND_EVENTS_MAX).contains(&batch_events), "--batch-events must be 1 to 10000");
    // A batch is sent before the next line would take its body over the server's request cap.
    let body_bytes_max = strata_server::extract::REQUEST_BODY_BYTES_MAX;
    let (mut imported, mut replayed) = (0u64, 0u64);
    let mut batch: Vec<u8> = Vec::new();
    let mut batch_count = 0;
    let mut line_number = 0u64;
    let mut line = String::new();
    let mut send = async |batch: &mut Vec<u8>, batch_count: &mut usize, line_number: u64| -> Result<()> {
        batch.extend_from_slice(b"]}");
        let answer = target.send("POST", "/v1/import", Some(std::mem::take(batch))).await?;
        let result: ImportResponse = answer.ok().with_context(|| {
            format!("import the batch ending before line {line_number} (events before it are imported)")
        })?;
        if result.replayed {
            replayed += *batch_count as u64;
        } else {
            imported += *batch_count as u64;
        }
        bar.inc(*batch_count as u64);
        *batch_count = 0;
        Ok(())
    };
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            if batch_count > 0 {
                send(&mut batch, &mut batch_count, line_number + 1).await?;
            }
            return Ok((imported, replayed));
        }
        line_number += 1;
        let trimmed = line.trim_end_matches(['\n', '\r']);
        if trimmed.is_empty() {
            continue;
        }
        ensure!(
            trimmed.len() + 16 <= body_bytes_max,
            "line {line_number} is {} bytes, more than a request may carry ({body_bytes_max}); it cannot be imported",
            trimmed.len()
        );
        if batch_count > 0 && (batch_count >= batch_events || batch.len() + trimmed.len() + 3 > body_bytes_max) {
            send(&mut batch, &mut batch_count, line_number).await?;
        }
        batch.extend_from_slice(if batch_count == 0 { b"{\"events\":[" } else { b"," });
        batch.extend_from_slice(trimmed.as_bytes());
        batch_count += 1;
    }
}

pub async fn import(target: &Target, args: ImportArgs, json: bool) -> Result<()> {
    let (mut reader, total): (Box<dyn BufRead>, Option<u64>) = if args.file == Path::new("-") {
        (Box::new(BufReader::new(std::io::stdin())), None)
    } else {
        let file = std::fs::File::open(&args.file).with_context(|| format!("open {}", args.file.display()))?;
        let lines = BufReader::new(&file).lines().count() as u64;
        let file = std::fs::File::open(&args.file)?;
        (Box::new(BufReader::with_capacity(1 << 20, file)), Some(lines))
    };
    let bar = progress(total, "importing", json);
    let (imported, replayed) = import_from(target, &mut reader, args.batch_events, &bar).await?;
    bar.finish_and_clear();
    report(json, json!({ "imported": imported, "already_present": replayed }), || {
        format!("imported {imported} events ({replayed} were already there)")
    });
    Ok(())
}

pub async fn backup(target: &Target, args: BackupArgs, json: bool) -> Result<()> {
    ensure!(
        !args.output.join(BACKUP_MANIFEST_FILE).exists(),
        "{} already holds a backup; choose a new directory",
        args.output.display()
    );
    std::fs::create_dir_all(&args.output).with_context(|| format!("create {}", args.output.display()))?;
    // The groups' states first, then the head: whatever a state refers to (its checkpoint, its parked
    // events) is in the snapshot of the events. A group goes on consuming meanwhile; restored, it
    // resumes from the checkpoint saved here (at least once, as after a crash).
    let groups = group_states(target).await?;
    let groups_path = args.output.join(BACKUP_GROUPS_FILE);
    let mut groups_out = ChecksumWriter {
        inner: BufWriter::new(
            std::fs::File::create(&groups_path).with_context(|| format!("create {}", groups_path.display()))?,
        ),
        crc: 0,
        bytes: 0,
    };
    for group in &groups {
        serde_json::to_writer(&mut groups_out, group)?;
        groups_out.write_all(b"\n")?;
    }
    let groups_manifest = GroupsManifest {
        count: groups.len() as u64,
        file: BACKUP_GROUPS_FILE.to_owned(),
        bytes: groups_out.bytes,
        crc32c: groups_out.crc,
    };
    groups_out.inner.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    let until = head(target).await?;
    let bar = progress(until.map(|h| h + 1), "backing up", json);
    let events_path = args.output.join(BACKUP_EVENTS_FILE);
    let file = std::fs::File::create(&events_path).with_context(|| format!("create {}", events_path.display()))?;
    let mut out = ChecksumWriter { inner: BufWriter::new(file), crc: 0, bytes: 0 };
    let count = export_to(target, until, &mut out, &bar).await?;
    let (crc, bytes) = (out.crc, out.bytes);
    out.inner.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    bar.finish_and_clear();
    let manifest = Manifest {
        format: BACKUP_FORMAT.to_owned(),
        events: count,
        head_position: until,
        events_file: BACKUP_EVENTS_FILE.to_owned(),
        events_bytes: bytes,
        events_crc32c: crc,
        groups: Some(groups_manifest),
    };
    // The manifest is written last, and atomically: a backup without one is incomplete.
    let manifest_path = args.output.join(BACKUP_MANIFEST_FILE);
    let temporary = args.output.join("manifest.json.tmp");
    std::fs::write(&temporary, serde_json::to_vec_pretty(&manifest)?)?;
    std::fs::File::open(&temporary)?.sync_all()?;
    std::fs::rename(&temporary, &manifest_path)?;
    std::fs::File::open(&args.output)?.sync_all()?;
    report(json, serde_json::to_value(&manifest)?, || {
        format!("backed up {count} events and {} consumer groups to {}", groups.len(), args.output.display())
    });
    Ok(())
}

pub async fn restore(target: &Target, args: RestoreArgs, json: bool) -> Result<()> {
    let manifest_path = args.from.join(BACKUP_MANIFEST_FILE);
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(&manifest_path)
            .with_context(|| format!("read {} (is this a backup?)", manifest_path.display()))?,
    )
    .context("the manifest is not JSON")?;
    let format = manifest.get("format").cloned().unwrap_or_default();
    ensure!(format == BACKUP_FORMAT, "unknown backup format {format}");
    let manifest: Manifest = serde_json::from_value(manifest).context("the manifest is incomplete")?;
    ensure!(head(target).await?.is_none(), "the target store is not empty: restore into a new data directory");
    let events_path = args.from.join(BACKUP_EVENTS_FILE);
    // Checked whole before anything is restored, streaming: a backup may be larger than memory.
    let (crc, bytes) = checksum_file(&events_path)?;
    ensure!(
        manifest.events_bytes == bytes && manifest.events_crc32c == crc,
        "{} does not match its manifest (truncated or damaged); nothing was restored",
        events_path.display()
    );
    let groups = match &manifest.groups {
        None => Vec::new(),
        Some(groups) => {
            let path = args.from.join(&groups.file);
            let (crc, bytes) = checksum_file(&path)?;
            ensure!(
                groups.bytes == bytes && groups.crc32c == crc,
                "{} does not match its manifest (truncated or damaged); nothing was restored",
                path.display()
            );
            let text = std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
            let lines = text
                .lines()
                .enumerate()
                .map(|(at, line)| {
                    serde_json::from_str::<SavedGroupLine>(line)
                        .with_context(|| format!("{} line {}: not a group's state", path.display(), at + 1))
                })
                .collect::<Result<Vec<_>>>()?;
            ensure!(
                lines.len() as u64 == groups.count,
                "{} holds {} groups, its manifest says {}",
                path.display(),
                lines.len(),
                groups.count
            );
            lines
        }
    };
    let expected = manifest.events;
    let bar = progress(Some(expected), "restoring", json);
    let file = std::fs::File::open(&events_path).with_context(|| format!("open {}", events_path.display()))?;
    let (imported, _) = import_from(target, &mut BufReader::with_capacity(1 << 20, file), 1_000, &bar).await.context(
        "restore (an interrupted restore leaves a partial store: delete its data directory and restore again)",
    )?;
    bar.finish_and_clear();
    ensure!(imported == expected, "restored {imported} events where the backup has {expected}");
    ensure!(head(target).await? == manifest.head_position, "the restored head differs from the backup's");
    // The groups after their events: each resumes after its saved checkpoint, with its parked events.
    for group in &groups {
        let path = format!("/v1/groups/{}/state", super::target::encode(&group.name));
        let answer = target.send("PUT", &path, super::target::json_body(&group.state)).await?;
        answer.ok::<strata_wire::Group>().with_context(|| format!("restore consumer group {}", group.name))?;
    }
    report(
        json,
        json!({ "restored": imported, "head_position": manifest.head_position, "groups": groups.len() }),
        || format!("restored {imported} events and {} consumer groups", groups.len()),
    );
    Ok(())
}

/// CRC32C and length of a file, read in chunks.
fn checksum_file(path: &Path) -> Result<(u32, u64)> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).with_context(|| format!("read {}", path.display()))?;
    let mut buffer = vec![0u8; 1 << 20];
    let (mut crc, mut bytes) = (0u32, 0u64);
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            return Ok((crc, bytes));
        }
        crc = crc32c::crc32c_append(crc, &buffer[..read]);
        bytes += read as u64;
    }
}

struct ChecksumWriter<W> {
    inner: W,
    crc: u32,
    bytes: u64,
}

impl<W: Write> Write for ChecksumWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.crc = crc32c::crc32c_append(self.crc, &buf[..written]);
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Reads every event (each record's checksum is verified by the engine as it is read; a local
/// open verifies every frame first) and checks the log's invariants: positions gapless from 0,
/// ids unique, each stream's revisions dense, recorded times non-decreasing, and each stream's
/// info agreeing with its events. Fails (exit 1) at the first problem.
/// `strata scavenge`: `POST /v1/scavenge`, and what it did.
pub async fn scavenge(target: &Target, json: bool) -> Result<()> {
    let report: ScavengeResponse = target.send("POST", "/v1/scavenge", None).await?.ok()?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    println!(
        "scavenged {} events in {} of {} sealed segments: {} bytes are now {} ({} segments left for next time)",
        report.events_scavenged,
        report.segments_rewritten,
        report.segments_scanned,
        report.bytes_before,
        report.bytes_after,
        report.segments_skipped,
    );
    Ok(())
}

pub async fn verify(target: &Target, json: bool) -> Result<()> {
    let until = head(target).await?;
    let bar = progress(until.map(|h| h + 1), "verifying", json);
    let mut ids: HashSet<u128> = HashSet::new();
    let mut next_revisions: HashMap<String, u64> = HashMap::new();
    let mut last_time = String::new();
    let mut position = 0u64;
    if let Some(until) = until {
        let mut from = 0;
        loop {
            let page: ReadPage =
                target.get(&format!("/v1/all?from={from}&limit={PAGE_EVENTS}&until_position={until}")).await?;
            for event in &page.events {
                ensure!(event.position == position, "position {position} is missing: the log has a gap");
                let id = uuid::Uuid::parse_str(&event.id)?.as_u128();
                ensure!(ids.insert(id), "event id {} appears twice (position {position})", event.id);
                let expected = next_revisions.get(&event.stream).copied().unwrap_or(0);
                ensure!(
                    event.revision == expected,
                    "stream {} jumps from revision {} to {} at position {position}",
                    event.stream,
                    expected as i128 - 1,
                    event.revision
                );
                next_revisions.insert(event.stream.clone(), expected + 1);
                ensure!(
                    event.recorded_at.as_str() >= last_time.as_str(),
                    "recorded time goes backwards at position {position}"
                );
                last_time.clone_from(&event.recorded_at);
                position += 1;
            }
            bar.inc(page.events.len() as u64);
            match page.next {
                Some(next) => from = next,
                None => break,
            }
        }
        ensure!(position == until + 1, "read {position} events where the head is at {until}");
    }
    bar.finish_and_clear();
    // Each stream the indexes list agrees with the log.
    let mut checked_streams = 0;
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(after) => format!("/v1/streams?limit=10000&after={}", super::target::encode(after)),
            None => "/v1/streams?limit=10000".to_owned(),
        };
        let list: StreamList = target.get(&path).await?;
        for stream in &list.streams {
            let info: StreamInfo = target.get(&format!("/v1/streams/{}/info", super::target::encode(stream))).await?;
            let next = next_revisions.get(stream).copied();
            if Some(info.last_revision + 1) != next {
                bail!(
                    "the index says stream {stream} ends at revision {}, the log at {:?}",
                    info.last_revision,
                    next.map(|n| n - 1)
                );
            }
            checked_streams += 1;
        }
        match list.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    // The hash chain, recomputed by the store over every record (also the kept headers of
    // placeholders, which reads do not show).
    let chain: VerifyResponse = target.send("POST", "/v1/verify", None).await?.ok()?;
    let chain_json = serde_json::to_value(&chain)?;
    report(json, json!({ "ok": true, "events": position, "streams": checked_streams, "chain": chain_json }), || {
        let chain_text = match &chain.head_hash {
            Some(head) => format!(
                "; hash chain verified: {} events linked, {} format-1 events before it, {} placeholders carried from an import; head {head}",
                chain.verified_events, chain.format_1_events, chain.carried_placeholders
            ),
            None => format!("; no hash chain yet ({} format-1 events)", chain.format_1_events),
        };
        format!(
            "ok: {position} events, {checked_streams} streams; checksums, positions, ids, revisions and indexes agree{chain_text}"
        )
    });
    Ok(())
}
