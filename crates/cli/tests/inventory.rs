//! `portwarden inventory` and `validate` with `discover:` entries, end to end.

use std::process::{Command, Output};

fn portwarden(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_portwarden"))
        .args(args)
        .env_remove("PORTWARDEN_LOG")
        .output()
        .expect("run portwarden")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn inventory_lists_written_and_discovered_monitors_with_their_source() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sd")).unwrap();
    std::fs::write(
        dir.path().join("sd/db.json"),
        r#"[{"targets": ["10.0.0.5:5432", "10.0.0.6:5432"], "labels": {"role": "replica"}}]"#,
    )
    .unwrap();
    let cfg = dir.path().join("portwarden.yaml");
    std::fs::write(
        &cfg,
        r#"monitors:
  - name: cache
    target: redis://127.0.0.1:6379
discover:
  - name: terraform
    source: {type: files, dir: sd}
    template:
      name: "pg-{{ labels.role }}-{{ address }}"
      target: "postgres://{{ hostport }}"
      tier: critical
"#,
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    let out = portwarden(&["validate", "--config", cfg]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("1 discovery source"),
        "{}",
        text(&out.stdout)
    );

    let out = portwarden(&["inventory", "--config", cfg]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let t = text(&out.stdout);
    let line = t
        .lines()
        .find(|l| l.starts_with("pg-replica-10.0.0.5"))
        .unwrap_or_else(|| panic!("{t}"));
    assert!(
        line.contains("postgres://10.0.0.5:5432")
            && line.contains("postgres")
            && line.contains("critical")
            && line.contains("discover:terraform"),
        "{line}"
    );
    assert!(
        t.lines()
            .any(|l| l.starts_with("cache") && l.contains("config")),
        "{t}"
    );
    assert!(
        t.lines().any(|l| l.starts_with("discover:terraform")
            && l.contains("files")
            && l.contains("ok")),
        "{t}"
    );

    let out = portwarden(&["inventory", "--config", cfg, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ms = v["monitors"].as_array().unwrap();
    assert_eq!(ms.len(), 3);
    assert_eq!(ms[0]["source"], "config");
    assert_eq!(ms[1]["source"], "terraform");
    assert_eq!(ms[1]["target"], "postgres://10.0.0.5:5432");
    assert_eq!(v["sources"][0]["targets"], 2);
}

#[test]
fn inventory_reports_a_failing_source_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("portwarden.yaml");
    std::fs::write(
        &cfg,
        "discover:\n  - name: gone\n    source: {type: files, dir: does-not-exist}\n    template: {check: tcp}\n",
    )
    .unwrap();
    let out = portwarden(&["inventory", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let e = text(&out.stderr);
    assert!(
        e.contains("discover `gone`") && e.contains("cannot read the directory"),
        "{e}"
    );
}

#[test]
fn validate_locates_template_mistakes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.yaml");
    std::fs::write(
        &cfg,
        "discover:\n  - name: pg\n    source: {type: dns, names: [_pg._tcp.x], record: a}\n    template:\n      name: \"pg-{{ adress }}\"\n      check: {type: tcp, nope: 1}\n",
    )
    .unwrap();
    let out = portwarden(&["validate", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    let e = text(&out.stderr);
    assert!(
        e.contains("bad.yaml:3:") && e.contains("needs `port`"),
        "{e}"
    );
    assert!(
        e.contains("bad.yaml:5:")
            && e.contains("unknown variable `adress`")
            && e.contains("did you mean `address`"),
        "{e}"
    );
}
