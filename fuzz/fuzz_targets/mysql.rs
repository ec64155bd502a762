//! MySQL packets, greeting, auth replies and text result sets: `portwarden_wire::mysql`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portwarden_wire::mysql;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((_, payload, used))) = mysql::split_packet(data, 4096) {
        assert!(used <= data.len());
        let _ = mysql::parse_greeting(payload);
        let _ = mysql::parse_auth_reply(payload);
    }
    let _ = mysql::parse_greeting(data);
    let _ = mysql::parse_err(data);
    if let Ok(Some((_, used))) = mysql::parse_query_result(data, 4096) {
        assert!(used <= data.len());
    }
});
