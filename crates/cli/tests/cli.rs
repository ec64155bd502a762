//! The `portwarden` binary end to end: validate diagnostics, check output and exit codes.

use std::process::{Command, Output};
use std::time::Duration;

use portwarden_testkit as tk;

fn portwarden(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_portwarden"))
        .args(args)
        .env_remove("PORTWARDEN_LOG")
        .output()
        .expect("run portwarden")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn validate_reports_every_mistake_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    // One mistake per monitor (and one in tiers), each of a different kind.
    let yaml = r#"monitors:
  - name: a
    target: tcp://127.0.0.1:5432
    intervl: 20s
  - name: b
    target: tcp://127.0.0.1:5432
    interval: 20
  - name: c
    target: tcp://127.0.0.1:70000
  - name: d
    target: 127.0.0.1:1
    check: { type: tcpp }
  - name: a
    target: tcp://127.0.0.1:6379
  - name: f
    target: tcp://127.0.0.1:6379
    interval: 10s
    timeout: 10s
  - name: g
    target: tcp://127.0.0.1:6379
    check:
      type: send_expect
      steps:
        - send: "AUTH ${env:PORTWARDEN_TEST_SURELY_UNSET}\r\n"
  - name: h
    target: tcp://127.0.0.1:6379
    check:
      type: send_expect
      steps:
        - send: "${file:/nonexistent/portwarden/secret}"
"#;
    std::fs::write(&path, yaml).unwrap();
    let out = portwarden(&["validate", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    let file = path.display().to_string();
    let expect = [
        (4, "unknown field `intervl`", "did you mean `interval`?"),
        (7, "no unit", "20s"),
        (9, "ports are 1-65535", "scheme://host:port"),
        (12, "unknown check type `tcpp`", "did you mean `tcp`?"),
        (13, "duplicate monitor name `a`", "unique"),
        (
            18,
            "timeout (10s) is not below the interval (10s)",
            "lower `timeout`",
        ),
        (24, "PORTWARDEN_TEST_SURELY_UNSET", "export"),
        (30, "/nonexistent/portwarden/secret", "hint:"),
    ];
    for (line, what, hint) in expect {
        let found = err
            .lines()
            .enumerate()
            .find(|(_, l)| l.starts_with(&format!("{file}:{line}:")) && l.contains(what));
        let Some((i, _)) = found else {
            panic!("no located error at line {line} containing {what:?} in:\n{err}");
        };
        let next = err.lines().nth(i + 1).unwrap_or("");
        assert!(
            next.trim_start().starts_with("hint:") && (next.contains(hint) || hint == "hint:"),
            "hint for line {line}: {next:?}\n{err}"
        );
    }
    assert!(err.contains("8 errors found"), "{err}");
}

#[test]
fn validate_accepts_the_example() {
    let out = portwarden(&[
        "validate",
        "--config",
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/local.yaml"),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("OK"));
}

#[test]
fn check_json_has_every_field() {
    if !tk::need_service("redis", 6379) {
        return;
    }
    let out = portwarden(&["check", "tcp://127.0.0.1:6379", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let line = stdout(&out);
    let v: serde_json::Value = serde_json::from_str(line.trim()).expect("one JSON object");
    for key in [
        "monitor",
        "target",
        "check",
        "outcome",
        "error_kind",
        "message",
        "phases",
        "address",
        "started_at",
        "details",
    ] {
        assert!(v.get(key).is_some(), "missing {key} in {v}");
    }
    assert_eq!(v["outcome"], "up");
    assert_eq!(v["check"], "tcp");
    assert_eq!(v["address"], "127.0.0.1:6379");
    assert!(v["phases"]["connect_ms"].as_f64().is_some());
    assert!(
        chrono_like(v["started_at"].as_str().unwrap()),
        "{}",
        v["started_at"]
    );
}

fn chrono_like(s: &str) -> bool {
    // RFC 3339: 2026-11-25T13:35:22.946646400Z
    s.len() >= 20
        && s.as_bytes()[4] == b'-'
        && s.as_bytes()[10] == b'T'
        && (s.ends_with('Z') || s.contains('+'))
}

#[test]
fn exit_codes_follow_nagios() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let open = l.local_addr().unwrap().port();
    let closed = tk::free_port();
    let up = portwarden(&["check", &format!("tcp://127.0.0.1:{open}")]);
    assert_eq!(up.status.code(), Some(0));
    assert!(
        stdout(&up).starts_with("STATE"),
        "table header: {}",
        stdout(&up)
    );
    let down = portwarden(&[
        "check",
        &format!("tcp://127.0.0.1:{open}"),
        &format!("tcp://127.0.0.1:{closed}"),
    ]);
    assert_eq!(down.status.code(), Some(2));
    assert!(stdout(&down).contains("refused"));
    let usage = portwarden(&["check", "--format", "yaml", "tcp://127.0.0.1:1"]);
    assert_eq!(usage.status.code(), Some(3));
    let bad_target = portwarden(&["check", "tcp://127.0.0.1:0"]);
    assert_eq!(bad_target.status.code(), Some(3));
    assert!(
        stderr(&bad_target).contains("1-65535"),
        "{}",
        stderr(&bad_target)
    );
    let nothing = portwarden(&["check"]);
    assert_eq!(nothing.status.code(), Some(3));
    assert_eq!(portwarden(&["--help"]).status.code(), Some(0));
}

#[test]
fn unknown_and_degraded_exit_codes() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (silent, _h) = tk::hostile::udp_silent().await;
        let out = portwarden(&["check", "--timeout", "500ms", &format!("udp://127.0.0.1:{silent}")]);
        assert_eq!(out.status.code(), Some(3), "silence proves nothing: {}", stdout(&out));

        let ca = tk::certs::TestCa::new();
        let dir = tempfile::tempdir().unwrap();
        let ca_file = ca.write(dir.path());
        let port = tk::certs::tls_server(&ca.leaf(&["127.0.0.1"], -80, 10), None).await;
        let cfg = dir.path().join("c.yaml");
        std::fs::write(
            &cfg,
            format!("monitors:\n  - name: web-cert\n    target: tls://127.0.0.1:{port}\n    check: {{type: tls, ca_file: {}}}\n", ca_file.display()),
        )
        .unwrap();
        let out = tokio::task::spawn_blocking(move || portwarden(&["check", "--config", cfg.to_str().unwrap(), "--format", "json"]))
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{} {}", stdout(&out), stderr(&out));
        let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
        assert_eq!(v["outcome"], "degraded");
        assert_eq!(v["monitor"], "web-cert");
        assert!(v["details"]["cert_days_left"].as_i64().unwrap() <= 10);
    });
    let _ = Duration::ZERO;
}

#[test]
fn monitor_filter_and_list_checks() {
    let out = portwarden(&["check", "--list-checks"]);
    assert_eq!(out.status.code(), Some(0));
    for kind in ["tcp", "udp", "tls", "send_expect"] {
        assert!(stdout(&out).contains(kind));
    }
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/local.yaml");
    let out = portwarden(&[
        "check",
        "--config",
        example,
        "--monitor",
        "legacy-billing",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["error_kind"], "refused");
    let out = portwarden(&["check", "--config", example, "--monitor", "legacy-biling"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("did you mean `legacy-billing`?"),
        "{}",
        stderr(&out)
    );
}
