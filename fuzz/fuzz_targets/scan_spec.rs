#![no_main]
//! Port specs and scan targets (command line and `baselines:`) never panic the parsers, and a
//! parsed port set prints back to the same set.
use libfuzzer_sys::fuzz_target;
use portwarden_core::Transport;
use portwarden_scan::{PortSet, TargetPolicy, TargetSpec};

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(p) = PortSet::parse(s, Transport::Tcp) {
            let again = PortSet::parse(&portwarden_scan::ports::compact(p.ports()), Transport::Tcp);
            if !p.is_empty() {
                assert_eq!(again.expect("round trip").ports(), p.ports());
            }
        }
        let _ = PortSet::parse(s, Transport::Udp);
        let _ = TargetSpec::parse(s, &TargetPolicy::default());
        let _ = portwarden_scan::Cidr::parse(s);
    }
});
