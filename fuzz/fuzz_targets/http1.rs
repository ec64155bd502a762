//! HTTP/1.1 responses (status line, headers, chunked bodies): `portwarden_wire::http1`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portwarden_wire::http1;

fuzz_target!(|data: &[u8]| {
    let limits = http1::Limits {
        max_head: 2048,
        max_body: 4096,
        max_headers: 32,
    };
    for eof in [false, true] {
        if let Ok(Some((r, used))) = http1::parse_response(data, eof, &limits) {
            assert!(used <= data.len());
            assert!(r.body.len() <= limits.max_body);
        }
    }
});
