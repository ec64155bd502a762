#![no_main]
//! MQTT CONNACK (3.1.1 and 5 with properties), packet split and PUBLISH.
use libfuzzer_sys::fuzz_target;
use portwarden_wire::mqtt::{self, Version};

fuzz_target!(|data: &[u8]| {
    for v in [Version::V311, Version::V5] {
        if let Ok(Some((_, n))) = mqtt::parse_connack(data, v) {
            assert!(n <= data.len());
        }
        if let Ok(Some((first, body, n))) = mqtt::split_packet(data, mqtt::MAX_PACKET) {
            assert!(n <= data.len());
            let _ = mqtt::parse_publish(first, body, v);
        }
    }
});
