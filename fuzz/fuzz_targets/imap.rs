#![no_main]
//! IMAP response lines and capability lists.
use libfuzzer_sys::fuzz_target;
use portwarden_wire::imap::{self, Line};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((l, n))) = imap::parse_line(data) {
        assert!(n <= data.len());
        if let Line::Untagged { word, rest } = l {
            let _ = imap::capabilities(&word, &rest);
            let _ = imap::human_text(&rest);
        }
    }
});
