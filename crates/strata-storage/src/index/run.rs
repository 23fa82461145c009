//! Index runs: immutable files under `index/` that hold the indexes of one range of positions, so that
//! a store opens without reading its log and keeps only a small summary of each run in memory.
//!
//! A run covers the positions `start..end` and is named `{start:020}-{end:020}.run`. It is written
//! once — from the committer's in-memory tail (see `index.rs`) or by merging neighbouring runs —
//! to a temporary name, synced, and renamed into place; it is never changed afterwards. Everything in
//! it can be rebuilt from the log, so a run that is missing, torn or damaged is simply dropped and the
//! log read again from where the remaining runs end.
//!
//! Layout (little-endian), in blocks of [`BLOCK_BYTES`], each with a CRC32C kept in the meta section:
//!
//! ```text
//! block 0        file magic
//! POS            per position: packed location u64 (segment << 32 | offset), recorded time i64
//! SPOST          stream postings: (position u64, packed location u64) per revision
//! POST           category / type / tag postings: position u64
//! IDS            (event id [16], position u64), sorted by id; 170 per block
//! KEYS           (kind u8, name_len u16, name, start u64, count u64, base u64, first u64, last u64),
//!                sorted by (kind, name); an entry never spans blocks; a zero kind ends a block
//! META           block checksums, the first key and first id of each block, Bloom filters of keys
//!                and ids, the system state (metadata, deletes) as of `end`
//! FOOTER         where each section starts, checksummed
//! ```
//!
//! Only META is read at open (and checked as a whole); other blocks are read on demand and checked
//! as they are read. A block that fails its checksum fails the read with an error naming the file,
//! and the file is removed so that the next open rebuilds it from the log.

use crate::error::StorageError;
use crate::io::{Storage, StorageFile, path_in, read_exact_at};
use crate::log::format::{u16_at, u32_at, u64_at};
use std::cell::RefCell;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use strata_core::{EventId, Timestamp};

pub(crate) const BLOCK_BYTES: usize = 4096;
const FILE_MAGIC: [u8; 8] = *b"STRATAIX";
const FOOTER_MAGIC: [u8; 8] = *b"STIXFOOT";
const RUN_VERSION: u32 = 1;
const FOOTER_BYTES: usize = 144;
pub(crate) const RUN_SUFFIX: &str = ".run";
pub(crate) const RUN_TEMP_SUFFIX: &str = ".run.tmp";
const POS_ENTRY: usize = 16;
const POS_PER_BLOCK: u64 = (BLOCK_BYTES / POS_ENTRY) as u64;
const SPOST_ENTRY: usize = 16;
const SPOST_PER_BLOCK: u64 = (BLOCK_BYTES / SPOST_ENTRY) as u64;
const POST_PER_BLOCK: u64 = (BLOCK_BYTES / 8) as u64;
const ID_ENTRY: usize = 24;
const IDS_PER_BLOCK: u64 = (BLOCK_BYTES / ID_ENTRY) as u64;
const KEY_FIXED: usize = 1 + 2 + 5 * 8;
const BLOOM_BITS_PER_KEY: u64 = 10;
const BLOOM_HASHES: u64 = 7;
/// Bytes buffered before a write to the run file.
const WRITE_BUFFER_BYTES: usize = 1 << 20;

/// What a key names. The order is the order of keys in a run (streams first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub(crate) enum KeyKind {
    Stream = 1,
    Category = 2,
    EventType = 3,
    Tag = 4,
}

impl KeyKind {
    fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(KeyKind::Stream),
            2 => Some(KeyKind::Category),
            3 => Some(KeyKind::EventType),
            4 => Some(KeyKind::Tag),
            _ => None,
        }
    }
}

/// Where a key's postings lie in a run, and what they hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeyEntry {
    /// Index of the first entry in SPOST (streams) or POST (the rest).
    pub start: u64,
    pub count: u64,
    /// For a stream: the revision of its first event in this run.
    pub base: u64,
    pub first: u64,
    pub last: u64,
}

/// Where one event's record lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Location {
    pub segment: u32,
    /// Byte offset of the record in its segment (segments are at most 4 GiB).
    pub offset: u32,
}

impl Location {
    pub fn pack(self) -> u64 {
        (u64::from(self.segment) << 32) | u64::from(self.offset)
    }

    pub fn unpack(packed: u64) -> Self {
        Self { segment: (packed >> 32) as u32, offset: packed as u32 }
    }
}

fn invalid(reason: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, reason.into())
}

pub(crate) fn run_name(start: u64, end: u64) -> String {
    format!("{start:020}-{end:020}{RUN_SUFFIX}")
}

/// The range a run file's name gives, if it is a run's name.
pub(crate) fn parse_run_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(RUN_SUFFIX)?;
    let (start, end) = stem.split_once('-')?;
    if start.len() != 20 || end.len() != 20 {
        return None;
    }
    let range = (start.parse().ok()?, end.parse().ok()?);
    (range.0 < range.1).then_some(range)
}

// ---------------------------------------------------------------------------------------------
// Bloom filters

/// A stable 64-bit hash (FNV-1a, then a finaliser): filters are stored, so it must never change.
fn stable_hash(bytes: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for &byte in bytes {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(hash)
}

fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[derive(Debug, Clone)]
pub(crate) struct Bloom {
    words: Vec<u64>,
}

impl Bloom {
    fn with_keys(keys: u64) -> Self {
        let bits = (keys.max(1) * BLOOM_BITS_PER_KEY).next_multiple_of(64);
        Self { words: vec![0; (bits / 64) as usize] }
    }

    fn probes(&self, key: &[u8]) -> impl Iterator<Item = usize> + use<> {
        let hash = stable_hash(key);
        let (h1, h2) = (hash, mix(hash ^ 0x9e37_79b9_7f4a_7c15) | 1);
        let bits = self.words.len() as u64 * 64;
        (0..BLOOM_HASHES).map(move |i| (h1.wrapping_add(i.wrapping_mul(h2)) % bits) as usize)
    }

    fn insert(&mut self, key: &[u8]) {
        for bit in self.probes(key) {
            self.words[bit / 64] |= 1 << (bit % 64);
        }
    }

    pub fn may_contain(&self, key: &[u8]) -> bool {
        self.probes(key).all(|bit| self.words[bit / 64] & (1 << (bit % 64)) != 0)
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.words.len() as u64).to_le_bytes());
        for word in &self.words {
            out.extend_from_slice(&word.to_le_bytes());
        }
    }
}

fn key_bytes(kind: KeyKind, name: &str) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(1 + name.len());
    bytes.push(kind as u8);
    bytes.extend_from_slice(name.as_bytes());
    bytes
}

// ---------------------------------------------------------------------------------------------
// Writing

/// Receives a run's keys in order: kind, name, base revision (streams), and the postings — for
/// streams `(position, packed location)` pairs, for the rest positions (the second half ignored).
pub(crate) type KeyVisitor<'a> = &'a mut dyn FnMut(KeyKind, &str, u64, &mut dyn Iterator<Item = (u64, u64)>);

/// Everything a run holds, from whatever source: the writer pulls each section in order.
pub(crate) trait RunSource {
    fn start(&self) -> u64;
    fn end(&self) -> u64;
    /// `(location, recorded time)` of every position, in order.
    fn positions(&mut self, out: &mut dyn FnMut(Location, Timestamp)) -> io::Result<()>;
    /// Every key in (kind, name) order with its postings: for streams `(position, location)` pairs,
    /// for the rest positions (the location half is ignored). Returns after the last key.
    fn keys(&mut self, out: KeyVisitor<'_>) -> io::Result<()>;
    /// Every `(event id, position)`, sorted by id.
    fn ids(&mut self, out: &mut dyn FnMut(&[u8; 16], u64)) -> io::Result<()>;
    /// The system state as of `end`, encoded (see [`crate::index::SystemState::encode`]).
    fn system_state(&mut self) -> io::Result<Vec<u8>>;
    /// How many keys and ids the source has at most (sizes the Bloom filters).
    fn key_count_max(&self) -> u64;
    fn id_count(&self) -> u64;
    /// Whether to give up (the store is closing).
    fn cancelled(&self) -> bool {
        false
    }
}

/// Writes blocks sequentially, checksumming each.
struct BlockWriter {
    file: Arc<dyn StorageFile>,
    offset: u64,
    buffer: Vec<u8>,
    block: Vec<u8>,
    crcs: Vec<u32>,
}

impl BlockWriter {
    fn new(file: Arc<dyn StorageFile>) -> Self {
        Self {
            file,
            offset: 0,
            buffer: Vec::with_capacity(WRITE_BUFFER_BYTES),
            block: Vec::with_capacity(BLOCK_BYTES),
            crcs: Vec::new(),
        }
    }

    /// Blocks completed so far (the next block's number).
    fn blocks(&self) -> u64 {
        self.crcs.len() as u64
    }

    /// Adds `bytes` to the current block, starting a new block first if they do not fit.
    fn push(&mut self, bytes: &[u8]) -> io::Result<()> {
        debug_assert!(bytes.len() <= BLOCK_BYTES);
        if self.block.len() + bytes.len() > BLOCK_BYTES {
            self.finish_block()?;
        }
        self.block.extend_from_slice(bytes);
        Ok(())
    }

    /// Pads the current block (if it has anything) with zeros and queues it.
    fn finish_block(&mut self) -> io::Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        self.block.resize(BLOCK_BYTES, 0);
        self.crcs.push(crc32c::crc32c(&self.block));
        self.buffer.extend_from_slice(&self.block);
        self.block.clear();
        if self.buffer.len() >= WRITE_BUFFER_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Appends unblocked bytes (META, FOOTER) after the blocks.
    fn push_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        assert!(self.block.is_empty(), "raw bytes after whole blocks");
        self.buffer.extend_from_slice(bytes);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.write_all_at(&self.buffer, self.offset)?;
        self.offset += self.buffer.len() as u64;
        self.buffer.clear();
        Ok(())
    }

    fn position_bytes(&self) -> u64 {
        self.offset + self.buffer.len() as u64
    }
}

/// Writes a run from `source` into `dir` and returns it opened. The file appears under its final
/// name only complete and synced.
pub(crate) fn write_run(storage: &Arc<dyn Storage>, dir: &Path, source: &mut dyn RunSource) -> io::Result<Run> {
    let temp = write_run_temp(storage, dir, source)?;
    publish_run(storage, dir, &temp)
}

/// Writes a run from `source` under a temporary name, synced; [`publish_run`] gives it its name.
pub(crate) fn write_run_temp(
    storage: &Arc<dyn Storage>,
    dir: &Path,
    source: &mut dyn RunSource,
) -> io::Result<PathBuf> {
    let (start, end) = (source.start(), source.end());
    let temp = path_in(dir, &format!("{}.tmp", run_name(start, end)));
    let keys_temp = path_in(dir, &format!("{start:020}-{end:020}.keys{RUN_TEMP_SUFFIX}"));
    let result = write_run_files(storage, source, &temp, &keys_temp);
    let _ = storage.remove_file(&keys_temp);
    if let Err(error) = result {
        let _ = storage.remove_file(&temp);
        return Err(error);
    }
    Ok(temp)
}

/// Renames a run written by [`write_run_temp`] into place, durably, and opens it.
pub(crate) fn publish_run(storage: &Arc<dyn Storage>, dir: &Path, temp: &Path) -> io::Result<Run> {
    let name = temp.file_name().and_then(|name| name.to_str()).and_then(|name| name.strip_suffix(".tmp"));
    let path = path_in(dir, name.expect("a run's temporary name"));
    storage.rename(temp, &path)?;
    storage.sync_dir(dir)?;
    Run::open(storage.clone(), path)
}

fn cancelled() -> io::Error {
    io::Error::new(io::ErrorKind::Interrupted, "the store is closing")
}

fn write_run_files(
    storage: &Arc<dyn Storage>,
    source: &mut dyn RunSource,
    temp: &Path,
    keys_temp: &Path,
) -> io::Result<()> {
    let file = storage.open_file(temp, true)?;
    let mut out = BlockWriter::new(file.clone());
    out.push(&FILE_MAGIC)?;
    out.finish_block()?;

    let pos_block = out.blocks();
    let mut failure = None;
    let mut first_time = None;
    let mut last_time = Timestamp::from_micros(0);
    let mut positions = 0u64;
    source.positions(&mut |location, time| {
        if failure.is_some() {
            return;
        }
        first_time.get_or_insert(time);
        last_time = time;
        positions += 1;
        let mut entry = [0u8; POS_ENTRY];
        entry[..8].copy_from_slice(&location.pack().to_le_bytes());
        entry[8..].copy_from_slice(&time.as_micros().to_le_bytes());
        if let Err(error) = out.push(&entry) {
            failure = Some(error);
        }
    })?;
    if let Some(error) = failure.take() {
        return Err(error);
    }
    if positions != source.end() - source.start() {
        return Err(invalid(format!("a run of {} positions got {positions}", source.end() - source.start())));
    }
    out.finish_block()?;
    if source.cancelled() {
        return Err(cancelled());
    }

    // Keys go to a side file while postings go to the run; the side file is appended afterwards.
    let keys_file = storage.open_file(keys_temp, true)?;
    let mut keys_out = BlockWriter::new(keys_file.clone());
    let spost_block = out.blocks();
    let mut post_block = None;
    let mut spost_count = 0u64;
    let mut post_count = 0u64;
    let mut key_bloom = Bloom::with_keys(source.key_count_max());
    let mut key_fences: Vec<Vec<u8>> = Vec::new();
    let mut previous_key: Option<Vec<u8>> = None;
    source.keys(&mut |kind, name, base, postings| {
        if failure.is_some() {
            return;
        }
        let result = (|| -> io::Result<()> {
            let key = key_bytes(kind, name);
            if previous_key.as_ref().is_some_and(|previous| previous >= &key) {
                return Err(invalid("keys out of order"));
            }
            key_bloom.insert(&key);
            let stream = kind == KeyKind::Stream;
            if !stream && post_block.is_none() {
                out.finish_block()?;
                post_block = Some(out.blocks());
            }
            let start = if stream { spost_count } else { post_count };
            let (mut first, mut last, mut count) = (None, 0, 0u64);
            for (position, location) in postings {
                first.get_or_insert(position);
                last = position;
                count += 1;
                if stream {
                    let mut entry = [0u8; SPOST_ENTRY];
                    entry[..8].copy_from_slice(&position.to_le_bytes());
                    entry[8..].copy_from_slice(&location.to_le_bytes());
                    out.push(&entry)?;
                } else {
                    out.push(&position.to_le_bytes())?;
                }
            }
            let Some(first) = first else { return Err(invalid("a key without postings")) };
            if stream {
                spost_count += count;
            } else {
                post_count += count;
            }
            let mut entry = Vec::with_capacity(KEY_FIXED + name.len());
            entry.push(kind as u8);
            entry.extend_from_slice(&(name.len() as u16).to_le_bytes());
            entry.extend_from_slice(name.as_bytes());
            for value in [start, count, base, first, last] {
                entry.extend_from_slice(&value.to_le_bytes());
            }
            if keys_out.block.is_empty() || keys_out.block.len() + entry.len() > BLOCK_BYTES {
                key_fences.push(key.clone());
            }
            keys_out.push(&entry)?;
            previous_key = Some(key);
            Ok(())
        })();
        if let Err(error) = result {
            failure = Some(error);
        }
    })?;
    if let Some(error) = failure.take() {
        return Err(error);
    }
    out.finish_block()?;
    let post_block = post_block.unwrap_or(out.blocks());
    keys_out.finish_block()?;
    keys_out.flush()?;
    if source.cancelled() {
        return Err(cancelled());
    }

    let ids_block = out.blocks();
    let mut id_bloom = Bloom::with_keys(source.id_count());
    let mut id_fences: Vec<[u8; 16]> = Vec::new();
    let mut id_count = 0u64;
    let mut previous_id: Option<[u8; 16]> = None;
    source.ids(&mut |id, position| {
        if failure.is_some() {
            return;
        }
        if previous_id.is_some_and(|previous| previous >= *id) {
            failure = Some(invalid("event ids out of order or repeated"));
            return;
        }
        previous_id = Some(*id);
        id_bloom.insert(id);
        if id_count % IDS_PER_BLOCK == 0 {
            id_fences.push(*id);
            if let Err(error) = out.finish_block() {
                failure = Some(error);
                return;
            }
        }
        let mut entry = [0u8; ID_ENTRY];
        entry[..16].copy_from_slice(id);
        entry[16..].copy_from_slice(&position.to_le_bytes());
        if let Err(error) = out.push(&entry) {
            failure = Some(error);
        }
        id_count += 1;
    })?;
    if let Some(error) = failure.take() {
        return Err(error);
    }
    out.finish_block()?;

    // Append the keys' blocks.
    let keys_block = out.blocks();
    let keys_blocks = keys_out.blocks();
    let mut block = vec![0u8; BLOCK_BYTES];
    for at in 0..keys_blocks {
        read_exact_at(&*keys_file, &mut block, at * BLOCK_BYTES as u64)?;
        out.push(&block)?;
        out.finish_block()?;
    }
    let system = source.system_state()?;

    let mut meta = Vec::new();
    for crc in &out.crcs[1..] {
        meta.extend_from_slice(&crc.to_le_bytes());
    }
    for fence in &key_fences {
        meta.extend_from_slice(&(fence.len() as u16).to_le_bytes());
        meta.extend_from_slice(fence);
    }
    for fence in &id_fences {
        meta.extend_from_slice(fence);
    }
    key_bloom.encode(&mut meta);
    id_bloom.encode(&mut meta);
    meta.extend_from_slice(&(system.len() as u64).to_le_bytes());
    meta.extend_from_slice(&system);
    let meta_offset = out.position_bytes();
    out.push_raw(&meta)?;

    let mut footer = Vec::with_capacity(FOOTER_BYTES);
    footer.extend_from_slice(&FOOTER_MAGIC);
    footer.extend_from_slice(&RUN_VERSION.to_le_bytes());
    footer.extend_from_slice(&crc32c::crc32c(&meta).to_le_bytes());
    for value in [
        source.start(),
        source.end(),
        pos_block,
        spost_block,
        spost_count,
        post_block,
        post_count,
        ids_block,
        id_count,
        keys_block,
        keys_blocks,
        meta_offset,
        meta.len() as u64,
        first_time.map_or(0, |t| t.as_micros() as u64),
        last_time.as_micros() as u64,
    ] {
        footer.extend_from_slice(&value.to_le_bytes());
    }
    footer.resize(FOOTER_BYTES - 4, 0);
    let crc = crc32c::crc32c(&footer);
    footer.extend_from_slice(&crc.to_le_bytes());
    out.push_raw(&footer)?;
    out.flush()?;
    file.sync_data()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Reading

/// An open run: its summary in memory, its blocks on disk.
#[derive(Debug)]
pub(crate) struct Run {
    storage: Arc<dyn Storage>,
    pub path: PathBuf,
    file: Arc<dyn StorageFile>,
    pub start: u64,
    pub end: u64,
    pub first_time: Timestamp,
    pub last_time: Timestamp,
    pos_block: u64,
    spost_block: u64,
    post_block: u64,
    ids_block: u64,
    id_count: u64,
    keys_block: u64,
    keys_blocks: u64,
    /// Checksum of every block from block 1 on.
    crcs: Vec<u32>,
    key_fences: Vec<Box<[u8]>>,
    id_fences: Vec<[u8; 16]>,
    key_bloom: Bloom,
    id_bloom: Bloom,
    meta_offset: u64,
    meta_len: u64,
}

/// A block read and checked.
pub(crate) type Block = Box<[u8]>;

impl Run {
    /// Opens the run at `path`, reading and checking its footer and META.
    pub fn open(storage: Arc<dyn Storage>, path: PathBuf) -> io::Result<Run> {
        let file = storage.open_file(&path, false)?;
        let len = file.len_bytes()?;
        if len < (BLOCK_BYTES + FOOTER_BYTES) as u64 {
            return Err(invalid(format!("{} bytes is too short for an index run", len)));
        }
        let mut footer = vec![0u8; FOOTER_BYTES];
        read_exact_at(&*file, &mut footer, len - FOOTER_BYTES as u64)?;
        if footer[..8] != FOOTER_MAGIC {
            return Err(invalid("no footer (a torn or foreign file)"));
        }
        if crc32c::crc32c(&footer[..FOOTER_BYTES - 4]) != u32_at(&footer, FOOTER_BYTES - 4) {
            return Err(invalid("footer checksum mismatch"));
        }
        if u32_at(&footer, 8) != RUN_VERSION {
            return Err(invalid(format!("run format version {} is not {RUN_VERSION}", u32_at(&footer, 8))));
        }
        let meta_crc = u32_at(&footer, 12);
        let field = |n: usize| u64_at(&footer, 16 + n * 8);
        let (start, end) = (field(0), field(1));
        let (pos_block, spost_block, spost_count, post_block, post_count) =
            (field(2), field(3), field(4), field(5), field(6));
        let (ids_block, id_count, keys_block, keys_blocks, meta_offset, meta_len) =
            (field(7), field(8), field(9), field(10), field(11), field(12));
        let (first_time, last_time) =
            (Timestamp::from_micros(field(13) as i64), Timestamp::from_micros(field(14) as i64));
        let blocks = keys_block + keys_blocks;
        let consistent = start < end
            && pos_block == 1
            && spost_block == pos_block + (end - start).div_ceil(POS_PER_BLOCK)
            && post_block == spost_block + spost_count.div_ceil(SPOST_PER_BLOCK)
            && ids_block == post_block + post_count.div_ceil(POST_PER_BLOCK)
            && keys_block == ids_block + id_count.div_ceil(IDS_PER_BLOCK)
            && meta_offset == blocks * BLOCK_BYTES as u64
            && meta_offset + meta_len + FOOTER_BYTES as u64 == len
            && id_count == end - start;
        if !consistent {
            return Err(invalid("footer describes sections that do not fit the file"));
        }
        let mut meta = vec![0u8; meta_len as usize];
        read_exact_at(&*file, &mut meta, meta_offset)?;
        if crc32c::crc32c(&meta) != meta_crc {
            return Err(invalid("meta section checksum mismatch"));
        }
        let mut reader = MetaReader { bytes: &meta };
        let crcs = (1..blocks).map(|_| reader.u32()).collect::<io::Result<Vec<_>>>()?;
        let key_fences = (0..keys_blocks)
            .map(|_| {
                let len = reader.u16()? as usize;
                Ok(reader.take(len)?.to_vec().into_boxed_slice())
            })
            .collect::<io::Result<Vec<_>>>()?;
        let id_fences = (0..id_count.div_ceil(IDS_PER_BLOCK))
            .map(|_| Ok(reader.take(16)?.try_into().expect("16 bytes")))
            .collect::<io::Result<Vec<_>>>()?;
        let key_bloom = reader.bloom()?;
        let id_bloom = reader.bloom()?;
        Ok(Run {
            storage,
            path,
            file,
            start,
            end,
            first_time,
            last_time,
            pos_block,
            spost_block,
            post_block,
            ids_block,
            id_count,
            keys_block,
            keys_blocks,
            crcs,
            key_fences,
            id_fences,
            key_bloom,
            id_bloom,
            meta_offset,
            meta_len,
        })
    }

    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// The encoded system state as of `end`.
    pub fn system_state(&self) -> io::Result<Vec<u8>> {
        let mut meta = vec![0u8; self.meta_len as usize];
        read_exact_at(&*self.file, &mut meta, self.meta_offset)?;
        let mut reader = MetaReader { bytes: &meta };
        reader.take(self.crcs.len() * 4)?;
        for _ in 0..self.keys_blocks {
            let len = reader.u16()? as usize;
            reader.take(len)?;
        }
        reader.take(self.id_fences.len() * 16)?;
        reader.bloom()?;
        reader.bloom()?;
        let len = reader.u64()? as usize;
        Ok(reader.take(len)?.to_vec())
    }

    fn error(&self, operation: &'static str, error: io::Error) -> StorageError {
        StorageError::new(operation, &self.path, error)
    }

    /// Reads and checks block `number`. A checksum mismatch removes the file: the next open rebuilds it.
    pub fn block(&self, number: u64) -> Result<Block, StorageError> {
        let mut block = vec![0u8; BLOCK_BYTES].into_boxed_slice();
        read_exact_at(&*self.file, &mut block, number * BLOCK_BYTES as u64)
            .map_err(|e| self.error("read index block of", e))?;
        let expected = self.crcs.get(number as usize - 1).copied();
        if expected != Some(crc32c::crc32c(&block)) {
            let _ = self.storage.remove_file(&self.path);
            return Err(self.error(
                "read index block of",
                invalid(format!(
                    "block {number} fails its checksum; the file was removed and the next open rebuilds it \
                     from the log"
                )),
            ));
        }
        Ok(block)
    }

    /// `(location, recorded time)` of `position` (within the run).
    pub fn position(&self, position: u64) -> Result<(Location, Timestamp), StorageError> {
        let at = position - self.start;
        let block = self.block(self.pos_block + at / POS_PER_BLOCK)?;
        Ok(pos_entry(&block, (at % POS_PER_BLOCK) as usize))
    }

    /// The entries of `range` (within the run), in order.
    pub fn positions(
        &self,
        range: std::ops::Range<u64>,
        out: &mut dyn FnMut(u64, Location, Timestamp),
    ) -> Result<(), StorageError> {
        let mut position = range.start;
        while position < range.end {
            let at = position - self.start;
            let block = self.block(self.pos_block + at / POS_PER_BLOCK)?;
            let first_slot = (at % POS_PER_BLOCK) as usize;
            let take = (POS_PER_BLOCK as usize - first_slot).min((range.end - position) as usize);
            for slot in first_slot..first_slot + take {
                let (location, time) = pos_entry(&block, slot);
                out(position, location, time);
                position += 1;
            }
        }
        Ok(())
    }

    /// The last position in the run recorded at or before `time` (`None`: the run starts later).
    pub fn position_at(&self, time: Timestamp) -> Result<Option<u64>, StorageError> {
        if self.first_time > time {
            return Ok(None);
        }
        if self.last_time <= time {
            return Ok(Some(self.end - 1));
        }
        // Blocks whose first entry is at or before `time`: the answer is in the last of them.
        let blocks = (self.end - self.start).div_ceil(POS_PER_BLOCK);
        let (mut low, mut high) = (0, blocks);
        while high - low > 1 {
            let middle = (low + high) / 2;
            let (_, first) = pos_entry(&self.block(self.pos_block + middle)?, 0);
            if first <= time {
                low = middle;
            } else {
                high = middle;
            }
        }
        let block = self.block(self.pos_block + low)?;
        let entries = (self.end - self.start - low * POS_PER_BLOCK).min(POS_PER_BLOCK) as usize;
        let within = (0..entries).take_while(|&slot| pos_entry(&block, slot).1 <= time).count();
        Ok(Some(self.start + low * POS_PER_BLOCK + within as u64 - 1))
    }

    /// The key's entry, if the run has it.
    pub fn key(&self, kind: KeyKind, name: &str) -> Result<Option<KeyEntry>, StorageError> {
        let key = key_bytes(kind, name);
        if !self.key_bloom.may_contain(&key) {
            return Ok(None);
        }
        let Some(block) = self.key_fences.partition_point(|fence| **fence <= *key).checked_sub(1) else {
            return Ok(None);
        };
        let block = self.block(self.keys_block + block as u64)?;
        for (entry_kind, entry_name, entry) in KeyBlock::new(&block) {
            match (entry_kind, entry_name).cmp(&(kind as u8, name.as_bytes())) {
                std::cmp::Ordering::Less => continue,
                std::cmp::Ordering::Equal => return Ok(Some(entry)),
                std::cmp::Ordering::Greater => break,
            }
        }
        Ok(None)
    }

    /// Keys of `kind` from `from` on (inclusive), in order, read a block at a time.
    pub fn keys_from(self: &Arc<Self>, kind: KeyKind, from: &str) -> KeyIter {
        let key = key_bytes(kind, from);
        let block = self.key_fences.partition_point(|fence| **fence <= *key).saturating_sub(1) as u64;
        KeyIter { run: self.clone(), kind, from: key, block, entries: Vec::new(), at: 0 }
    }

    /// All keys, in order (for merging).
    fn all_keys(self: &Arc<Self>) -> KeyIter {
        KeyIter { run: self.clone(), kind: KeyKind::Stream, from: Vec::new(), block: 0, entries: Vec::new(), at: 0 }
    }

    /// Visits the slots of a key's entries `range` in a section of `per_block` entries per block
    /// starting at block `first_block`: `visit(block, slot)`.
    fn walk(
        &self,
        first_block: u64,
        per_block: u64,
        entry: &KeyEntry,
        range: std::ops::Range<u64>,
        visit: &mut dyn FnMut(&[u8], usize),
    ) -> Result<(), StorageError> {
        let mut at = entry.start + range.start;
        let end = entry.start + range.end.min(entry.count);
        while at < end {
            let block = self.block(first_block + at / per_block)?;
            let first_slot = (at % per_block) as usize;
            let take = (per_block as usize - first_slot).min((end - at) as usize);
            for slot in first_slot..first_slot + take {
                visit(&block, slot);
            }
            at += take as u64;
        }
        Ok(())
    }

    /// The `(position, location)` of a stream's entries `range` (indexes into the key's list).
    pub fn stream_postings(
        &self,
        entry: &KeyEntry,
        range: std::ops::Range<u64>,
        out: &mut dyn FnMut(u64, Location),
    ) -> Result<(), StorageError> {
        self.walk(self.spost_block, SPOST_PER_BLOCK, entry, range, &mut |block, slot| {
            let position = u64_at(block, slot * SPOST_ENTRY);
            out(position, Location::unpack(u64_at(block, slot * SPOST_ENTRY + 8)));
        })
    }

    /// The positions of a category's, type's or tag's entries `range`.
    fn postings(
        &self,
        entry: &KeyEntry,
        range: std::ops::Range<u64>,
        out: &mut dyn FnMut(u64),
    ) -> Result<(), StorageError> {
        self.walk(self.post_block, POST_PER_BLOCK, entry, range, &mut |block, slot| out(u64_at(block, slot * 8)))
    }

    /// The block of a non-stream key's list that holds entry `at`, with the entry range it covers.
    fn post_block_of(&self, entry: &KeyEntry, at: u64) -> Result<(Block, u64, u64), StorageError> {
        let index = entry.start + at;
        let number = index / POST_PER_BLOCK;
        let block = self.block(self.post_block + number)?;
        let block_first = (number * POST_PER_BLOCK).max(entry.start) - entry.start;
        let block_end = ((number + 1) * POST_PER_BLOCK).min(entry.start + entry.count) - entry.start;
        Ok((block, block_first, block_end))
    }

    /// The position of `id`, if the run has it.
    pub fn id(&self, id: &EventId) -> Result<Option<u64>, StorageError> {
        let bytes = *id.as_bytes();
        if !self.id_bloom.may_contain(&bytes) {
            return Ok(None);
        }
        let Some(number) = self.id_fences.partition_point(|fence| *fence <= bytes).checked_sub(1) else {
            return Ok(None);
        };
        let block = self.block(self.ids_block + number as u64)?;
        let entries = (self.id_count - number as u64 * IDS_PER_BLOCK).min(IDS_PER_BLOCK) as usize;
        let found = (0..entries)
            .map(|slot| &block[slot * ID_ENTRY..(slot + 1) * ID_ENTRY])
            .find(|entry| entry[..16] == bytes)
            .map(|entry| u64_at(entry, 16));
        Ok(found)
    }

    /// Counts for sizing a merge's filters.
    fn key_count_max(&self) -> u64 {
        // Every key takes at least KEY_FIXED bytes of a block.
        self.keys_blocks * (BLOCK_BYTES / KEY_FIXED) as u64
    }

    /// Removes the file (after a merge replaced it). Open handles keep reading it.
    pub fn remove(&self) {
        let _ = self.storage.remove_file(&self.path);
    }
}

fn pos_entry(block: &[u8], slot: usize) -> (Location, Timestamp) {
    let at = slot * POS_ENTRY;
    (Location::unpack(u64_at(block, at)), Timestamp::from_micros(u64_at(block, at + 8) as i64))
}

struct MetaReader<'a> {
    bytes: &'a [u8],
}

impl<'a> MetaReader<'a> {
    fn take(&mut self, len: usize) -> io::Result<&'a [u8]> {
        let (taken, rest) = self.bytes.split_at_checked(len).ok_or_else(|| invalid("meta section cut short"))?;
        self.bytes = rest;
        Ok(taken)
    }

    fn u16(&mut self) -> io::Result<u16> {
        Ok(u16_at(self.take(2)?, 0))
    }

    fn u32(&mut self) -> io::Result<u32> {
        Ok(u32_at(self.take(4)?, 0))
    }

    fn u64(&mut self) -> io::Result<u64> {
        Ok(u64_at(self.take(8)?, 0))
    }

    fn bloom(&mut self) -> io::Result<Bloom> {
        let words = self.u64()? as usize;
        if words == 0 || words > self.bytes.len() / 8 {
            return Err(invalid("Bloom filter size out of range"));
        }
        let bytes = self.take(words * 8)?;
        Ok(Bloom { words: bytes.chunks_exact(8).map(|word| u64_at(word, 0)).collect() })
    }
}

/// The entries of one KEYS block: `(kind byte, name bytes, entry)`.
struct KeyBlock<'a> {
    block: &'a [u8],
    at: usize,
}

impl<'a> KeyBlock<'a> {
    fn new(block: &'a [u8]) -> Self {
        Self { block, at: 0 }
    }
}

impl<'a> Iterator for KeyBlock<'a> {
    type Item = (u8, &'a [u8], KeyEntry);

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.block.get(self.at..)?;
        if rest.len() < KEY_FIXED || KeyKind::from_byte(rest[0]).is_none() {
            return None;
        }
        let name_len = u16_at(rest, 1) as usize;
        let fixed = 3 + name_len;
        if rest.len() < fixed + 40 {
            return None;
        }
        let value = |n: usize| u64_at(rest, fixed + n * 8);
        let entry = KeyEntry { start: value(0), count: value(1), base: value(2), first: value(3), last: value(4) };
        self.at += fixed + 40;
        Some((rest[0], &rest[3..fixed], entry))
    }
}

/// Iterates keys of one kind from a starting name, across blocks.
pub(crate) struct KeyIter {
    run: Arc<Run>,
    kind: KeyKind,
    from: Vec<u8>,
    block: u64,
    entries: Vec<(Vec<u8>, KeyEntry)>,
    at: usize,
}

impl KeyIter {
    /// The next `(kind, name, entry)`, or `None` after the last key of the kind (or of all kinds, for
    /// a merge's iterator).
    pub fn next_key(&mut self) -> Result<Option<(KeyKind, String, KeyEntry)>, StorageError> {
        loop {
            if self.at < self.entries.len() {
                let (key, entry) = &self.entries[self.at];
                self.at += 1;
                let kind = KeyKind::from_byte(key[0]).expect("checked when read");
                let name = String::from_utf8_lossy(&key[1..]).into_owned();
                if !self.from.is_empty() {
                    if kind > self.kind {
                        return Ok(None);
                    }
                    if key[..] < self.from[..] {
                        continue;
                    }
                }
                return Ok(Some((kind, name, *entry)));
            }
            if self.block >= self.run.keys_blocks {
                return Ok(None);
            }
            let block = self.run.block(self.run.keys_block + self.block)?;
            self.block += 1;
            self.entries = KeyBlock::new(&block)
                .map(|(kind, name, entry)| {
                    let mut key = Vec::with_capacity(1 + name.len());
                    key.push(kind);
                    key.extend_from_slice(name);
                    (key, entry)
                })
                .collect();
            self.at = 0;
        }
    }
}

/// A position list of one key in one run, searched with the last block read kept at hand, so that
/// a leapfrog that moves forward (or backward) through the list reads each block about once.
#[derive(Debug)]
pub(crate) struct RunList {
    run: Arc<Run>,
    kind: KeyKind,
    entry: KeyEntry,
    /// The last block read: its entries `first..end` of the list, and their positions.
    cache: RefCell<Option<(u64, u64, Vec<u64>)>>,
    error: RefCell<Option<StorageError>>,
}

impl RunList {
    pub fn new(run: Arc<Run>, kind: KeyKind, entry: KeyEntry) -> Self {
        Self { run, kind, entry, cache: RefCell::new(None), error: RefCell::new(None) }
    }

    pub fn take_error(&self) -> Option<StorageError> {
        self.error.borrow_mut().take()
    }

    /// The block holding entry `at`: `(first, end, positions)`.
    fn load(&self, at: u64) -> Option<(u64, u64, Vec<u64>)> {
        if let Some(cached) = self.cache.borrow().as_ref()
            && (cached.0..cached.1).contains(&at)
        {
            return Some(cached.clone());
        }
        let loaded = if self.kind == KeyKind::Stream {
            let index = self.entry.start + at;
            let number = index / SPOST_PER_BLOCK;
            let first = (number * SPOST_PER_BLOCK).max(self.entry.start) - self.entry.start;
            let end = ((number + 1) * SPOST_PER_BLOCK).min(self.entry.start + self.entry.count) - self.entry.start;
            let mut positions = Vec::with_capacity((end - first) as usize);
            self.run
                .stream_postings(&self.entry, first..end, &mut |position, _| positions.push(position))
                .map(|()| (first, end, positions))
        } else {
            self.run.post_block_of(&self.entry, at).map(|(block, first, end)| {
                let slot0 = ((self.entry.start + first) % POST_PER_BLOCK) as usize;
                let positions = (0..(end - first) as usize).map(|i| u64_at(&block, (slot0 + i) * 8)).collect();
                (first, end, positions)
            })
        };
        match loaded {
            Ok(loaded) => {
                *self.cache.borrow_mut() = Some(loaded.clone());
                Some(loaded)
            }
            Err(error) => {
                self.error.borrow_mut().get_or_insert(error);
                None
            }
        }
    }

    /// Index of the first entry whose position is at or after `at` (`count` if none), by binary search
    /// over blocks starting from the cached one.
    fn lower_bound(&self, at: u64) -> Option<u64> {
        let count = self.entry.count;
        if at <= self.entry.first {
            return Some(0);
        }
        if at > self.entry.last {
            return Some(count);
        }
        // Try the cached block and its successor first (sequential scans), then bisect.
        let (mut low, mut high) = (0u64, count);
        if let Some((first, end, positions)) = self.cache.borrow().clone() {
            if positions.first().is_some_and(|&p| p < at) {
                low = first;
                if positions.last().is_some_and(|&p| p >= at) {
                    return Some(first + positions.partition_point(|&p| p < at) as u64);
                }
                low = end.saturating_sub(1).max(low);
            } else {
                high = first + 1;
            }
        }
        // Invariant: entry `low` is below `at` (or low is 0 and at > first), entry `high` (if < count)
        // is at or after `at`.
        loop {
            let (first, end, positions) = self.load(low + (high - low) / 2)?;
            if positions.last().is_some_and(|&p| p < at) {
                low = end - 1;
                if end >= high {
                    return Some(high.min(count));
                }
            } else if positions.first().is_some_and(|&p| p >= at) {
                high = first;
                if first <= low + 1 {
                    return Some(first.max(low + 1).min(count));
                }
            } else {
                return Some(first + positions.partition_point(|&p| p < at) as u64);
            }
        }
    }

    pub fn first_at_or_after(&self, at: u64) -> Option<u64> {
        let index = self.lower_bound(at)?;
        if index >= self.entry.count {
            return None;
        }
        let (first, _, positions) = self.load(index)?;
        positions.get((index - first) as usize).copied()
    }

    pub fn last_at_or_before(&self, at: u64) -> Option<u64> {
        if at >= self.entry.last {
            return Some(self.entry.last);
        }
        let index = self.lower_bound(at.checked_add(1)?)?.checked_sub(1)?;
        let (first, _, positions) = self.load(index)?;
        positions.get((index - first) as usize).copied()
    }
}

// ---------------------------------------------------------------------------------------------
// Merging

/// Neighbouring runs as one source: positions and postings concatenated, ids merged.
pub(crate) struct MergeSource<'a> {
    pub runs: Vec<Arc<Run>>,
    pub cancel: &'a std::sync::atomic::AtomicBool,
}

fn storage_to_io(error: StorageError) -> io::Error {
    io::Error::other(error.to_string())
}

impl RunSource for MergeSource<'_> {
    fn start(&self) -> u64 {
        self.runs[0].start
    }

    fn end(&self) -> u64 {
        self.runs[self.runs.len() - 1].end
    }

    fn positions(&mut self, out: &mut dyn FnMut(Location, Timestamp)) -> io::Result<()> {
        for run in &self.runs {
            run.positions(run.start..run.end, &mut |_, location, time| out(location, time)).map_err(storage_to_io)?;
            if self.cancelled() {
                return Err(cancelled());
            }
        }
        Ok(())
    }

    fn keys(&mut self, out: KeyVisitor<'_>) -> io::Result<()> {
        let mut iters: Vec<KeyIter> = self.runs.iter().map(Run::all_keys).collect();
        let mut heads: Vec<Option<(KeyKind, String, KeyEntry)>> =
            iters.iter_mut().map(|iter| iter.next_key()).collect::<Result<_, _>>().map_err(storage_to_io)?;
        let mut keys = 0u64;
        loop {
            let Some(smallest) = heads.iter().flatten().map(|(kind, name, _)| (*kind, name.clone())).min() else {
                return Ok(());
            };
            let mut parts = Vec::new();
            for (at, head) in heads.iter_mut().enumerate() {
                if head.as_ref().is_some_and(|(kind, name, _)| (*kind, name) == (smallest.0, &smallest.1)) {
                    let (_, _, entry) = head.take().expect("checked");
                    parts.push((at, entry));
                    *head = iters[at].next_key().map_err(storage_to_io)?;
                }
            }
            let (kind, name) = smallest;
            let base = parts[0].1.base;
            let failure = RefCell::new(None);
            let runs = &self.runs;
            let mut postings = parts.iter().flat_map(|&(at, entry)| LazyPostings {
                run: &runs[at],
                kind,
                entry,
                next: 0,
                buffer: Vec::new(),
                at: 0,
                failure: &failure,
            });
            out(kind, &name, base, &mut postings);
            drop(postings);
            if let Some(error) = failure.into_inner() {
                return Err(storage_to_io(error));
            }
            keys += 1;
            if keys % 4096 == 0 && self.cancelled() {
                return Err(cancelled());
            }
        }
    }

    fn ids(&mut self, out: &mut dyn FnMut(&[u8; 16], u64)) -> io::Result<()> {
        // A k-way merge needs every run's ids in order; read each run's ids a block at a time through
        // its own cursor.
        struct Cursor {
            entries: Vec<([u8; 16], u64)>,
            at: usize,
            block: u64,
        }
        let mut cursors: Vec<Cursor> =
            self.runs.iter().map(|_| Cursor { entries: Vec::new(), at: 0, block: 0 }).collect();
        let refill = |run: &Run, cursor: &mut Cursor| -> Result<(), StorageError> {
            if cursor.at < cursor.entries.len() || cursor.block * IDS_PER_BLOCK >= run.id_count {
                return Ok(());
            }
            let block = run.block(run.ids_block + cursor.block)?;
            let entries = (run.id_count - cursor.block * IDS_PER_BLOCK).min(IDS_PER_BLOCK) as usize;
            cursor.entries = (0..entries)
                .map(|slot| {
                    let entry = &block[slot * ID_ENTRY..(slot + 1) * ID_ENTRY];
                    (entry[..16].try_into().expect("16 bytes"), u64_at(entry, 16))
                })
                .collect();
            cursor.at = 0;
            cursor.block += 1;
            Ok(())
        };
        let mut emitted = 0u64;
        loop {
            for (run, cursor) in self.runs.iter().zip(cursors.iter_mut()) {
                refill(run, cursor).map_err(storage_to_io)?;
            }
            let Some(smallest) = cursors
                .iter()
                .enumerate()
                .filter_map(|(at, cursor)| cursor.entries.get(cursor.at).map(|entry| (entry.0, at)))
                .min()
            else {
                return Ok(());
            };
            let cursor = &mut cursors[smallest.1];
            let (id, position) = cursor.entries[cursor.at];
            cursor.at += 1;
            out(&id, position);
            emitted += 1;
            if emitted % 65_536 == 0 && self.cancelled() {
                return Err(cancelled());
            }
        }
    }

    fn system_state(&mut self) -> io::Result<Vec<u8>> {
        self.runs[self.runs.len() - 1].system_state()
    }

    fn key_count_max(&self) -> u64 {
        self.runs.iter().map(|run| run.key_count_max()).sum()
    }

    fn id_count(&self) -> u64 {
        self.runs.iter().map(|run| run.id_count).sum()
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A run as the scavenger leaves it: the same positions, streams, categories and ids; the records of
/// `segment` at their new offsets; the scavenged positions gone from the type and tag lists.
pub(crate) struct RemapSource<'a> {
    pub run: Arc<Run>,
    pub segment: u32,
    /// The segment's first position and the new offset of each of its positions.
    pub first_position: u64,
    pub offsets: &'a [u32],
    /// Scavenged positions, ascending.
    pub scavenged: &'a [u64],
}

impl RemapSource<'_> {
    fn location(&self, position: u64, location: Location) -> Location {
        if location.segment != self.segment {
            return location;
        }
        Location { segment: self.segment, offset: self.offsets[(position - self.first_position) as usize] }
    }

    fn scavenged_within(&self, first: u64, last: u64) -> bool {
        let at = self.scavenged.partition_point(|&p| p < first);
        self.scavenged.get(at).is_some_and(|&p| p <= last)
    }
}

impl RunSource for RemapSource<'_> {
    fn start(&self) -> u64 {
        self.run.start
    }

    fn end(&self) -> u64 {
        self.run.end
    }

    fn positions(&mut self, out: &mut dyn FnMut(Location, Timestamp)) -> io::Result<()> {
        let run = self.run.clone();
        run.positions(run.start..run.end, &mut |position, location, time| out(self.location(position, location), time))
            .map_err(storage_to_io)
    }

    fn keys(&mut self, out: KeyVisitor<'_>) -> io::Result<()> {
        let mut keys = self.run.all_keys();
        while let Some((kind, name, entry)) = keys.next_key().map_err(storage_to_io)? {
            let filter =
                matches!(kind, KeyKind::EventType | KeyKind::Tag) && self.scavenged_within(entry.first, entry.last);
            if filter {
                // Does anything survive? (A type or tag only scavenged events had goes.)
                let failure = RefCell::new(None);
                let survives = LazyPostings::new(&self.run, kind, entry, &failure)
                    .any(|(position, _)| self.scavenged.binary_search(&position).is_err());
                if let Some(error) = failure.into_inner() {
                    return Err(storage_to_io(error));
                }
                if !survives {
                    continue;
                }
            }
            let failure = RefCell::new(None);
            let mut postings = LazyPostings::new(&self.run, kind, entry, &failure)
                .filter(|(position, _)| !filter || self.scavenged.binary_search(position).is_err())
                .map(|(position, location)| match kind {
                    KeyKind::Stream => (position, self.location(position, Location::unpack(location)).pack()),
                    _ => (position, location),
                });
            out(kind, &name, entry.base, &mut postings);
            drop(postings);
            if let Some(error) = failure.into_inner() {
                return Err(storage_to_io(error));
            }
        }
        Ok(())
    }

    fn ids(&mut self, out: &mut dyn FnMut(&[u8; 16], u64)) -> io::Result<()> {
        MergeSource { runs: vec![self.run.clone()], cancel: &AtomicBool::new(false) }.ids(out)
    }

    fn system_state(&mut self) -> io::Result<Vec<u8>> {
        self.run.system_state()
    }

    fn key_count_max(&self) -> u64 {
        self.run.key_count_max()
    }

    fn id_count(&self) -> u64 {
        self.run.id_count
    }
}

/// A key's postings in one run, read a few blocks at a time.
struct LazyPostings<'r> {
    run: &'r Run,
    kind: KeyKind,
    entry: KeyEntry,
    next: u64,
    buffer: Vec<(u64, u64)>,
    at: usize,
    failure: &'r RefCell<Option<StorageError>>,
}

impl<'r> LazyPostings<'r> {
    fn new(run: &'r Run, kind: KeyKind, entry: KeyEntry, failure: &'r RefCell<Option<StorageError>>) -> Self {
        Self { run, kind, entry, next: 0, buffer: Vec::new(), at: 0, failure }
    }
}

impl Iterator for LazyPostings<'_> {
    type Item = (u64, u64);

    fn next(&mut self) -> Option<(u64, u64)> {
        if self.at == self.buffer.len() {
            if self.next >= self.entry.count || self.failure.borrow().is_some() {
                return None;
            }
            let range = self.next..(self.next + 8 * POST_PER_BLOCK).min(self.entry.count);
            self.next = range.end;
            self.buffer.clear();
            self.at = 0;
            let buffer = &mut self.buffer;
            let read = if self.kind == KeyKind::Stream {
                self.run.stream_postings(&self.entry, range, &mut |p, l| buffer.push((p, l.pack())))
            } else {
                self.run.postings(&self.entry, range, &mut |p| buffer.push((p, 0)))
            };
            if let Err(error) = read {
                self.failure.borrow_mut().get_or_insert(error);
                return None;
            }
        }
        let value = self.buffer.get(self.at).copied();
        self.at += 1;
        value
    }
}
