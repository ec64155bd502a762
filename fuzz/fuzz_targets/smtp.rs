#![no_main]
//! SMTP replies and EHLO extension lists.
use libfuzzer_sys::fuzz_target;
use portwarden_wire::smtp::{self, Dialect};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((r, n))) = smtp::parse_reply(data, Dialect::Smtp) {
        assert!(n <= data.len());
        let _ = smtp::ehlo_extensions(&r);
        let _ = smtp::ehlo_auth(&r);
    }
});
