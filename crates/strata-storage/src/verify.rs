//! [`Store::verify_chain_blocking`]: reads the whole log and recomputes its hash chain — every
//! record's link, every frame's predecessor, the genesis `$store-created` names — while the store
//! stays online. What `strata verify` reports as "chain".

use crate::error::{Corruption, StorageError};
use crate::index::SegmentFile;
use crate::log::ChunkReader;
use crate::log::chain::{self, PrefixDigest};
use crate::log::format::{
    FRAME_HEADER_BYTES, FrameBody, FrameRecords, HeaderCheck, SEGMENT_HEADER_BYTES, StoredChain, check_frame_header,
    check_frame_payload, decode_record_key,
};
use crate::store::Store;
use crate::system::{self, StoreCreated};
use strata_core::EventHash;

/// What a verification of the chain found. Every field counts events up to `events`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChainReport {
    /// Events read (the log up to the head when the verification began).
    pub events: u64,
    /// Events written in format 1 before the chain began (covered by the genesis).
    pub format_1_events: u64,
    /// Events whose hash was recomputed and matched (placeholders that kept their header included).
    pub verified_events: u64,
    /// Scavenged placeholders whose hash came with an import: the chain goes on from them, but their
    /// own link cannot be recomputed (what it covered is gone).
    pub carried_placeholders: u64,
    /// The store's `$store-created`, if the chain has begun.
    pub store: Option<StoreCreated>,
    /// The hash of the last event read.
    pub head: Option<EventHash>,
}

/// Why the chain does not verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("the hash chain does not verify: {0}")]
    Broken(Corruption),
}

impl Store {
    /// Reads every record of the log up to the current head and recomputes the chain: each frame must
    /// follow the hash of the record before it, each record's hash must be its link, the first chained
    /// record must be `$store-created` following the genesis it names, and that genesis must be the
    /// one its store id gives (or, for a store that began in format 1, the digest of those events).
    /// Appends go on meanwhile (they are not read). Runs on the calling thread.
    pub fn verify_chain_blocking(&self) -> Result<ChainReport, ChainError> {
        let (segments, end) = {
            let index = self.index();
            (index.segments.clone(), index.next_position())
        };
        let mut walk = Walk {
            end,
            next: 0,
            head: None,
            prefix: PrefixDigest::default(),
            report: ChainReport {
                events: 0,
                format_1_events: 0,
                verified_events: 0,
                carried_placeholders: 0,
                store: None,
                head: None,
            },
        };
        for (number, segment) in segments.iter().enumerate() {
            if walk.next >= end {
                break;
            }
            walk.segment(number as u32, segment)?;
        }
        if walk.next != end {
            let path = segments.last().map(|s| s.path.clone()).unwrap_or_default();
            let reason = format!("the log ends at position {} but the index at {end}", walk.next);
            return Err(ChainError::Broken(Corruption { segment: 0, path, offset_bytes: 0, reason }));
        }
        walk.report.events = walk.next;
        walk.report.head = walk.head;
        Ok(walk.report)
    }
}

struct Walk {
    /// Positions below this are read.
    end: u64,
    next: u64,
    /// The hash of the last chained record read.
    head: Option<EventHash>,
    /// The format-1 events' digests, for an upgraded store's genesis.
    prefix: PrefixDigest,
    report: ChainReport,
}

impl Walk {
    fn segment(&mut self, number: u32, segment: &SegmentFile) -> Result<(), ChainError> {
        let broken = |offset_bytes: u64, reason: String| {
            ChainError::Broken(Corruption { segment: number, path: segment.path.clone(), offset_bytes, reason })
        };
        let mut reader = ChunkReader { segment, buffer: Vec::new(), buffer_offset: 0 };
        let mut offset = SEGMENT_HEADER_BYTES;
        while self.next < self.end && offset + FRAME_HEADER_BYTES as u64 <= segment.len_bytes {
            let header: [u8; FRAME_HEADER_BYTES] =
                reader.bytes(offset, FRAME_HEADER_BYTES)?.try_into().expect("frame header bytes");
            let (payload_len, payload_crc) = match check_frame_header(&header) {
                HeaderCheck::Valid { payload_len, payload_crc } => (payload_len, payload_crc),
                HeaderCheck::Zero => return Ok(()),
                HeaderCheck::Invalid(reason) => return Err(broken(offset, reason.to_owned())),
            };
            let payload_offset = offset + FRAME_HEADER_BYTES as u64;
            if payload_offset + payload_len as u64 > segment.len_bytes {
                return Err(broken(offset, "a frame runs past the end of its segment".to_owned()));
            }
            let payload = reader.bytes(payload_offset, payload_len)?.to_vec();
            let previous = match check_frame_payload(&payload, payload_crc).map_err(|reason| broken(offset, reason))? {
                FrameBody::Seal { .. } => return Ok(()),
                FrameBody::Commit { previous, .. } => previous,
            };
            let mut link = match (self.head, previous) {
                (Some(head), Some(previous)) if head != previous => {
                    return Err(broken(
                        offset,
                        format!("the frame follows {previous}, the record before it is {head}"),
                    ));
                }
                (Some(_), None) => return Err(broken(offset, "a format-1 frame after the chain began".to_owned())),
                (_, previous) => previous,
            };
            for record in FrameRecords::new(&payload) {
                let (record_offset, bytes) = record.map_err(|reason| broken(offset, reason))?;
                let at = payload_offset + record_offset as u64;
                let key = decode_record_key(bytes).map_err(|reason| broken(at, reason))?;
                if key.position != self.next {
                    return Err(broken(at, format!("position {} where {} was expected", key.position, self.next)));
                }
                match (link, key.chain) {
                    (None, StoredChain::Unchained | StoredChain::UnchainedKept(_)) => {
                        let (header, content) = key.digests();
                        self.prefix.push(&header, &content);
                        self.report.format_1_events += 1;
                    }
                    (None, _) => return Err(broken(at, "a hashed record in a format-1 frame".to_owned())),
                    (Some(_), StoredChain::Unchained | StoredChain::UnchainedKept(_)) => {
                        return Err(broken(at, "a record without a hash in a chained frame".to_owned()));
                    }
                    (Some(previous), stored) => {
                        if self.head.is_none() {
                            self.genesis(&key, previous).map_err(|reason| broken(at, reason))?;
                        }
                        link = key.check_link(&previous).map_err(|reason| broken(at, reason))?;
                        self.head = link;
                        match stored {
                            StoredChain::Carried(_) => self.report.carried_placeholders += 1,
                            _ => self.report.verified_events += 1,
                        }
                    }
                }
                self.next += 1;
                if self.next >= self.end {
                    return Ok(());
                }
            }
            offset = payload_offset + payload_len as u64;
        }
        Ok(())
    }

    /// The first chained record: `$store-created`, following the genesis it names, which must be the
    /// one its store id (or the format-1 events before it) gives.
    fn genesis(&mut self, key: &crate::log::format::RecordKey<'_>, previous: EventHash) -> Result<(), String> {
        if key.stream != system::STORE_STREAM || key.event_type != system::STORE_CREATED_TYPE {
            return Err(format!("the chain begins with {} in {}, not with $store-created", key.event_type, key.stream));
        }
        let created = StoreCreated::decode(key.data)?;
        let expected = match created.format_1_events {
            None if key.position == 0 => chain::genesis(&created.store_id),
            Some(events) if events == key.position && events == self.prefix.events() => {
                std::mem::take(&mut self.prefix).finish()
            }
            _ => {
                return Err(format!(
                    "$store-created at position {} says the chain begins after {:?} format-1 events",
                    key.position, created.format_1_events
                ));
            }
        };
        if created.genesis != expected || previous != expected {
            return Err(format!(
                "the genesis does not check out: $store-created names {}, its frame follows {previous}, \
                 the log before it gives {expected}",
                created.genesis
            ));
        }
        self.report.store = Some(created);
        Ok(())
    }
}
