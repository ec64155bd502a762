//! Redis RESP replies and INFO text: `portwarden_wire::resp`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portwarden_wire::resp;

fuzz_target!(|data: &[u8]| {
    let limits = resp::Limits {
        max_bulk: 4096,
        max_elements: 64,
        max_depth: 4,
    };
    if let Ok(Some((_, used))) = resp::parse(data, &limits) {
        assert!(used <= data.len());
    }
    let info = resp::parse_info(&String::from_utf8_lossy(data), 64);
    for v in info.values() {
        let _ = resp::parse_replica_line(v);
    }
});
