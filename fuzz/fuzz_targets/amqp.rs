#![no_main]
//! AMQP 0-9-1 frames and methods from arbitrary bytes.
use libfuzzer_sys::fuzz_target;
use portwarden_wire::amqp;

fuzz_target!(|data: &[u8]| {
    if let Ok(amqp::Incoming::Frame(f, n)) = amqp::parse_frame(data, amqp::MAX_FRAME) {
        assert!(n <= data.len());
        let _ = amqp::parse_method(f.payload);
    }
    let _ = amqp::parse_method(data);
});
