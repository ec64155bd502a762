//! SCRAM server messages and base64: `portwarden_wire::{scram, base64}`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portwarden_wire::{base64, scram::Scram};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = base64::decode(&text);
    let mut s = Scram::new("user", "pencil", "abc");
    // Keep PBKDF2 out of the hot loop: hide iteration counts the fuzzer makes up...
    let cheap = text.replace("i=", "x=");
    let _ = s.client_final(cheap.as_bytes());
    // ...but sometimes (PBKDF2 costs milliseconds) exercise a full, valid-looking first
    // message with arbitrary trailers, and the server-final check after it.
    if data.first() == Some(&b'!') {
        let _ = s.client_final(format!("r=abcdef,s=QUJD,i=4096,{cheap}").as_bytes());
    }
    let _ = s.verify_server_final(data);
});
