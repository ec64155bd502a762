#![no_main]
//! SSH identification, binary packets, KEXINIT, ECDH reply, host keys and signatures.
use libfuzzer_sys::fuzz_target;
use portwarden_wire::ssh;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((_, n))) = ssh::parse_banner(data) {
        assert!(n <= data.len());
    }
    if let Ok(Some((p, n))) = ssh::parse_packet(data) {
        assert!(n <= data.len());
        let _ = ssh::parse_kexinit(p);
        if let Ok(r) = ssh::parse_ecdh_reply(p) {
            let _ = ssh::parse_host_key(r.host_key);
            let _ = ssh::parse_signature(r.signature);
        }
        let _ = ssh::parse_disconnect(p);
    }
    let _ = ssh::parse_host_key(data);
    let _ = ssh::ecdsa_fixed(data, 32);
});
