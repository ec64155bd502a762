#![no_main]
//! POP3 status lines and dot-terminated CAPA lists.
use libfuzzer_sys::fuzz_target;
use portwarden_wire::pop3;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((_, n))) = pop3::parse_status(data) {
        assert!(n <= data.len());
    }
    if let Ok(Some((lines, n))) = pop3::parse_multiline(data) {
        assert!(n <= data.len());
        let _ = pop3::capabilities(&lines);
    }
});
