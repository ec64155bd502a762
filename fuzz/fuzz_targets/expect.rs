#![no_main]
//! Matching hostile peer bytes against expectations never panics.
use libfuzzer_sys::fuzz_target;
use portwarden_wire::expect::Matcher;

fuzz_target!(|data: &[u8]| {
    let (needle, hay) = data.split_at(data.len().min(data.first().copied().unwrap_or(0) as usize % 16));
    for done in [false, true] {
        let _ = Matcher::Contains(needle.to_vec()).check(hay, done);
        let _ = Matcher::Prefix(needle.to_vec()).check(hay, done);
    }
    if let Ok(p) = std::str::from_utf8(needle) {
        if let Ok(m) = Matcher::regex(p) {
            let _ = m.check(hay, true);
        }
    }
});
