#![no_main]
//! Targets from the command line and config never panic the parser.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(t) = s.parse::<portwarden_core::TargetUrl>() {
            // What we print parses back to the same target.
            let again: portwarden_core::TargetUrl = t.to_string().parse().expect("round trip");
            assert_eq!(again, t);
        }
        let _ = portwarden_core::parse_duration(s);
    }
});
