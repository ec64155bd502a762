//! MongoDB replies (header, OP_MSG sections, BSON): `portwarden_wire::{mongodb, bson}`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portwarden_wire::{bson, mongodb};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((reply, used))) = mongodb::parse_reply(data, 8192) {
        assert!(used <= data.len());
        let _ = mongodb::Hello::from_body(&reply.body).role();
        let _ = mongodb::command_error(&reply.body);
        let _ = mongodb::ReplStatus::from_body(&reply.body).map(|s| s.lag_seconds());
    }
    if let Ok((doc, used)) = bson::decode_document(data) {
        assert!(used <= data.len());
        let _ = mongodb::ReplStatus::from_body(&doc).map(|s| s.lag_seconds());
    }
});
