#![no_main]
//! NATS control lines (INFO JSON, MSG, -ERR) and JetStream info JSON.
use libfuzzer_sys::fuzz_target;
use portwarden_wire::nats;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((line, n))) = nats::next_line(data, nats::MAX_LINE) {
        assert!(n <= data.len());
        let _ = nats::parse_op(line);
    }
    let _ = nats::parse_js_info(data);
});
