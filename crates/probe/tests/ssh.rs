//! `ssh` against a real OpenSSH server started on a free port with host keys generated here.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use portwarden_core::{ErrorKind, Outcome};
use portwarden_testkit as tk;
use portwarden_testkit::process::Server;
use serde_json::json;

const T: Duration = Duration::from_secs(5);

/// An sshd on a free port with ed25519, ECDSA and RSA host keys; returns the fingerprints as
/// `ssh-keygen -lf` prints them.
struct Sshd {
    server: Server,
    _dir: tempfile::TempDir,
    fingerprints: Vec<(String, String)>,
}

fn keygen(dir: &Path, kind: &str) -> (String, String) {
    let key = dir.join(format!("host_{kind}"));
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", kind, "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(st.success());
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(key.with_extension("pub"))
        .output()
        .unwrap();
    let line = String::from_utf8(out.stdout).unwrap();
    let fp = line.split_whitespace().nth(1).unwrap().to_string();
    (key.display().to_string(), fp)
}

fn sshd() -> Option<Sshd> {
    let bin = tk::need_binary("sshd")?;
    tk::need_binary("ssh-keygen")?;
    if !tk::need(
        tk::is_root(),
        "root (sshd needs its privilege separation directory)",
    ) {
        return None;
    }
    std::fs::create_dir_all("/run/sshd").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut fingerprints = Vec::new();
    let mut cfg = String::new();
    for kind in ["ed25519", "ecdsa", "rsa"] {
        let (path, fp) = keygen(dir.path(), kind);
        cfg.push_str(&format!("HostKey {path}\n"));
        fingerprints.push((kind.to_string(), fp));
    }
    let port = tk::free_port();
    cfg.push_str(&format!(
        "Port {port}\nListenAddress 127.0.0.1\nPidFile {}/sshd.pid\nUsePAM no\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n",
        dir.path().display()
    ));
    let cfg_path = dir.path().join("sshd_config");
    std::fs::write(&cfg_path, cfg).unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("-D").arg("-e").arg("-f").arg(&cfg_path);
    let server = Server::spawn_tcp("sshd", cmd, port, Duration::from_secs(10)).unwrap();
    Some(Sshd {
        server,
        _dir: dir,
        fingerprints,
    })
}

#[tokio::test]
async fn banner_algorithms_and_verified_host_keys() {
    let Some(mut d) = sshd() else { return };
    let target = format!("ssh://127.0.0.1:{}", d.server.port);
    let o = probe1(&target, check(json!({"ssh": {}})), T).await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    assert!(
        o.details["server_version"]
            .as_str()
            .unwrap()
            .starts_with("OpenSSH_"),
        "{o:?}"
    );
    assert!(
        o.details["banner"]
            .as_str()
            .unwrap()
            .starts_with("SSH-2.0-OpenSSH")
    );
    assert!(
        o.details["kex_algorithms"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k == "curve25519-sha256")
    );
    // Default preference: ed25519.
    let ed = &d.fingerprints[0].1;
    assert_eq!(
        o.details["host_key_sha256"].as_str(),
        Some(ed.as_str()),
        "{o:?}"
    );
    assert_eq!(o.details["host_key_type"], "ssh-ed25519");

    // Each key type, signature verified, fingerprint equal to ssh-keygen's.
    for (alg, idx) in [
        ("ecdsa-sha2-nistp256", 1),
        ("rsa-sha2-512", 2),
        ("rsa-sha2-256", 2),
    ] {
        let o = probe1(
            &target,
            check(
                json!({"ssh": {"host_key_algorithms": [alg], "host_key": d.fingerprints[idx].1}}),
            ),
            T,
        )
        .await;
        assert_eq!(o.outcome, Outcome::Up, "{alg}: {o:?}");
        assert_eq!(
            o.details["host_key_sha256"].as_str(),
            Some(d.fingerprints[idx].1.as_str())
        );
    }

    // Pinned to another key: the host key "changed".
    let o = probe1(
        &target,
        check(json!({"ssh": {"host_key": d.fingerprints[2].1}})),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Down, "{o:?}");
    assert_eq!(o.error_kind(), Some(ErrorKind::Protocol));
    assert!(o.message().unwrap().contains("host key changed"), "{o:?}");

    // Banner and KEXINIT only.
    let o = probe1(&target, check(json!({"ssh": {"key_exchange": false}})), T).await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    assert!(o.details.get("host_key_sha256").is_none());

    // Killed: refused.
    d.server.kill();
    let o = probe1(&target, check(json!({"ssh": {}})), T).await;
    assert_eq!(o.outcome, Outcome::Down);
    assert_eq!(o.error_kind(), Some(ErrorKind::Refused), "{o:?}");
}

#[test]
fn bad_pins_are_config_errors() {
    let c = check(json!({"ssh": {"host_key": "md5:aa:bb"}}));
    assert!(c.prepare().is_err());
    let c = check(json!({"ssh": {"host_key_algorithms": ["ssh-dss"]}}));
    assert!(c.prepare().is_err());
}
