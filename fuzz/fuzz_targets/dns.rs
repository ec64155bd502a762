#![no_main]
//! DNS responses (hickory-proto decoding plus our summary) and TCP framing.
use libfuzzer_sys::fuzz_target;
use portwarden_wire::dns;

fuzz_target!(|data: &[u8]| {
    let id = data.first().map(|b| u16::from(*b)).unwrap_or(0);
    let _ = dns::parse_response(data, id);
    if let Some((m, n)) = dns::split_tcp(data) {
        assert!(n <= data.len());
        let _ = dns::parse_response(m, id);
    }
});
