#![no_main]
//! Any config text gives a config or located diagnostics, never a panic.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        match portwarden_config::load_str(s, "fuzz.yaml") {
            Ok(_) => {}
            Err(d) => assert!(!d.items.is_empty()),
        }
    }
});
