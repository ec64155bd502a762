//! PostgreSQL backend messages: `portwarden_wire::postgres::parse_backend`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portwarden_wire::postgres;

fuzz_target!(|data: &[u8]| {
    // Walk the buffer message by message, as the probe does.
    let mut rest = data;
    while let Ok(Some((_, used))) = postgres::parse_backend(rest, 4096) {
        assert!(used > 0 && used <= rest.len());
        rest = &rest[used..];
    }
});
