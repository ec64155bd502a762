#![no_main]
//! NTP server answers and the offset/delay arithmetic.
use libfuzzer_sys::fuzz_target;
use portwarden_wire::ntp;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = ntp::parse(data) {
        let (o, d) = r.offset_delay(r.origin, r.transmit);
        assert!(o.is_finite() && d.is_finite());
        let _ = r.root_distance(d);
        let _ = r.kiss_code();
        let _ = r.reference_text();
    }
});
