#![no_main]
//! Escaped-text and hex byte specs from config never panic.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = portwarden_wire::bytespec::parse_escaped(s);
        let _ = portwarden_wire::bytespec::parse_hex(s);
    }
    let shown = portwarden_wire::printable::escape(data, usize::MAX);
    assert!(shown.len() <= portwarden_wire::printable::MAX_SHOWN * 4 + 32);
});
