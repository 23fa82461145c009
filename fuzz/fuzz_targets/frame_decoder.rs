//! Untrusted bytes into every decoder of the on-disk format: a frame, a record at any offset, and a
//! segment header. None may panic, read out of bounds or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_storage::format;

fuzz_target!(|data: &[u8]| {
    let _ = format::decode_frame(data);
    let _ = format::decode_segment_header(data);
    if let Some(header) = data.get(..format::FRAME_HEADER_BYTES) {
        let header: &[u8; format::FRAME_HEADER_BYTES] = header.try_into().unwrap();
        let _ = format::check_frame_header(header);
    }
    let _ = format::check_frame_payload(data, 0);
    for (_, bytes) in format::FrameRecords::new(data).take(64).flatten() {
        let _ = format::decode_record_key(bytes);
    }
    let buffer = bytes::Bytes::copy_from_slice(data);
    for offset in 0..data.len().min(32) {
        let _ = format::decode_record(&buffer, offset);
    }
});
