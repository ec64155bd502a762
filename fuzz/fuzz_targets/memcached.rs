//! memcached `version` and `stats` replies: `portwarden_wire::memcached`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portwarden_wire::memcached;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((_, used))) = memcached::parse_version(data, 1024) {
        assert!(used <= data.len());
    }
    if let Ok(Some((_, used))) = memcached::parse_stats(data, 4096) {
        assert!(used <= data.len());
    }
});
