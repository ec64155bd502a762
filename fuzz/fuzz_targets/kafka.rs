#![no_main]
//! Kafka response framing, ApiVersions and Metadata parsers.
use libfuzzer_sys::fuzz_target;
use portwarden_wire::kafka;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((body, n))) = kafka::frame(data, kafka::MAX_RESPONSE) {
        assert!(n <= data.len());
        let _ = kafka::parse_api_versions(body);
        let _ = kafka::parse_metadata(body, 1);
        let _ = kafka::parse_metadata(body, 4);
    }
});
