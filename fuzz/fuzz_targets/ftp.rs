#![no_main]
//! FTP replies (free-form multi-line) and FEAT lists.
use libfuzzer_sys::fuzz_target;
use portwarden_wire::ftp;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((r, n))) = ftp::parse(data) {
        assert!(n <= data.len());
        let f = ftp::features(&r);
        let _ = ftp::supports_auth_tls(&f);
    }
});
