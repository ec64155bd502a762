#![no_main]
//! SNMP GetResponse messages through the hand-written BER decoder.
use libfuzzer_sys::fuzz_target;
use portwarden_wire::snmp;

fuzz_target!(|data: &[u8]| {
    let _ = snmp::parse_response(data);
});
