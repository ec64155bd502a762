//! `portwarden scan` end to end: bad targets and port specs are refused before any packet
//! (acceptance 4), and a full TCP scan of 127.0.0.1 finds exactly the ports `ss -ltn` lists
//! (acceptance 3), both in a private namespace (exact) and on this machine (racing with
//! whatever else runs here, so compared against `ss` before and after).

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use portwarden_testkit as tk;

fn portwarden(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_portwarden"))
        .args(args)
        .env_remove("PORTWARDEN_LOG")
        .output()
        .expect("run portwarden")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A loopback listener that counts the connections it accepts.
fn counting_listener() -> (u16, Arc<AtomicU64>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let n = Arc::new(AtomicU64::new(0));
    let n2 = n.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            if c.is_ok() {
                n2.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    (port, n)
}

#[test]
fn bad_targets_and_port_specs_scan_nothing() {
    let (port, accepted) = counting_listener();
    let p = port.to_string();

    let o = portwarden(&["scan", "127.0.0.1", "10.0.0.0/8", "--ports", &p]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("target 2 `10.0.0.0/8`"), "{e}");
    assert!(e.contains("16777216 addresses"), "{e}");
    assert!(e.contains("an IPv4 /16"), "{e}");

    let o = portwarden(&["scan", "127.0.0.1", "--ports", &format!("{p},8o")]);
    assert_eq!(o.status.code(), Some(3));
    let e = stderr(&o);
    let col = p.len() + 2;
    assert!(
        e.contains(&format!("--ports: port spec `{p},8o`, column {col}")),
        "{e}"
    );

    let o = portwarden(&["scan", "127.0.0.1", "--allow", "10.0.0.0/8", "--ports", &p]);
    assert_eq!(o.status.code(), Some(3));
    let e = stderr(&o);
    assert!(
        e.contains("target 1 `127.0.0.1`") && e.contains("allowlist"),
        "{e}"
    );

    let o = portwarden(&["scan", "127.0.0.1", "fd00::/64", "--ports", &p]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("an IPv6 /112"), "{}", stderr(&o));

    let o = portwarden(&[
        "scan",
        "127.0.0.1",
        "--max-addresses",
        "4",
        "10.1.0.0/29",
        "--ports",
        &p,
    ]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        stderr(&o).contains("8 addresses, more than the limit of 4"),
        "{}",
        stderr(&o)
    );

    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "a refused scan must not send anything"
    );

    // The same target with a good spec is scanned.
    let o = portwarden(&[
        "scan",
        "127.0.0.1",
        "--ports",
        &p,
        "--format",
        "json",
        "--no-banners",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["hosts"][0]["ports"][0]["port"], port);
    assert_eq!(v["hosts"][0]["ports"][0]["state"], "open");
    // The accept thread may run a little after the scan closed the connection.
    let got = tk::http::wait_until(Duration::from_secs(5), || {
        (accepted.load(Ordering::SeqCst) >= 1).then_some(())
    });
    assert!(got.is_some(), "the good scan connected");
}

/// Ports `ss -ltn` shows as reachable on 127.0.0.1 (bound to it, to 0.0.0.0 or to [::]).
fn ss_ports(ss: &str) -> BTreeSet<u16> {
    let mut out = BTreeSet::new();
    for line in ss.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() < 4 || cols[0] != "LISTEN" {
            continue;
        }
        let local = cols[3];
        let Some((addr, port)) = local.rsplit_once(':') else {
            continue;
        };
        let addr = addr.split('%').next().unwrap_or(addr);
        if matches!(
            addr,
            "127.0.0.1" | "0.0.0.0" | "*" | "[::]" | "[::ffff:127.0.0.1]" | "[::ffff:0.0.0.0]"
        ) && let Ok(p) = port.parse()
        {
            out.insert(p);
        }
    }
    out
}

fn scan_open(json: &[u8]) -> BTreeSet<u16> {
    let v: serde_json::Value = serde_json::from_slice(json).expect("scan json");
    v["hosts"][0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["state"] == "open")
        .map(|p| p["port"].as_u64().unwrap() as u16)
        .collect()
}

#[test]
fn full_scan_matches_ss_in_a_namespace() {
    if !tk::need(tk::is_root(), "root for network namespaces") {
        return;
    }
    let ns = tk::netns::Netns::new().expect("namespace");
    // Listeners of every kind `ss` shows: loopback, any-v4, any-v6 (dual stack), a v6-only one
    // (not reachable over 127.0.0.1), and one on the veth address (not on 127.0.0.1 either).
    let nsip = ns.ns_ip;
    let listeners = ns
        .within(|| {
            let mut v = Vec::new();
            for a in [
                "127.0.0.1:80",
                "127.0.0.1:5432",
                "127.0.0.1:65535",
                "0.0.0.0:22",
                "[::]:8080",
            ] {
                v.push(TcpListener::bind(a).expect(a));
            }
            let s6 =
                socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None).unwrap();
            s6.set_only_v6(true).unwrap();
            s6.bind(&"[::]:9443".parse::<std::net::SocketAddr>().unwrap().into())
                .unwrap();
            s6.listen(8).unwrap();
            v.push(s6.into());
            v.push(TcpListener::bind((nsip, 7777)).unwrap());
            v
        })
        .expect("enter namespace");
    let ss = ns.command("ss").args(["-ltnH"]).output().expect("ss");
    let expected = ss_ports(&String::from_utf8_lossy(&ss.stdout));
    assert_eq!(
        expected,
        BTreeSet::from([22, 80, 5432, 8080, 9443, 65535]),
        "ss parse"
    );
    let o = ns
        .command(env!("CARGO_BIN_EXE_portwarden"))
        .args([
            "scan",
            "127.0.0.1",
            "--ports",
            "all",
            "--no-banners",
            "--format",
            "json",
        ])
        .output()
        .expect("scan");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let found = scan_open(&o.stdout);
    // [::]:9443 is v6-only: ss lists it but 127.0.0.1 cannot reach it.
    let mut reachable = expected.clone();
    reachable.remove(&9443);
    assert_eq!(found, reachable);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["hosts"][0]["counts"]["tcp/closed"],
        65535 - reachable.len() as u64
    );
    drop(listeners);
}

#[test]
fn full_scan_matches_ss_on_this_machine() {
    if !tk::need(tk::which("ss").is_some(), "`ss` (iproute2)") {
        return;
    }
    let ss = || {
        let o = Command::new("ss").args(["-ltnH"]).output().expect("ss");
        ss_ports(&String::from_utf8_lossy(&o.stdout))
    };
    let ours = TcpListener::bind("127.0.0.1:0").unwrap();
    let our_port = ours.local_addr().unwrap().port();
    // Other tests on this machine open and close listeners while we scan: sample `ss` all
    // along. Every port listed before and after must be found; everything found must have been
    // listed at some point (a listener living between two samples can only be an ephemeral
    // port a test bound to port 0: tolerated, and printed).
    let before = ss();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut seen = BTreeSet::new();
            while !stop.load(Ordering::Relaxed) {
                seen.extend(ss());
                std::thread::sleep(Duration::from_millis(5));
            }
            seen
        })
    };
    let o = portwarden(&[
        "scan",
        "127.0.0.1",
        "--ports",
        "all",
        "--no-banners",
        "--format",
        "json",
    ]);
    stop.store(true, Ordering::Relaxed);
    let sampled = sampler.join().unwrap();
    let after = ss();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let found = scan_open(&o.stdout);
    assert!(found.contains(&our_port));
    let stable: BTreeSet<u16> = before.intersection(&after).copied().collect();
    let mut any: BTreeSet<u16> = before.union(&after).copied().collect();
    any.extend(sampled);
    let v6only = std::fs::read_to_string("/proc/sys/net/ipv6/bindv6only").unwrap_or_default();
    let missing: Vec<_> = stable.difference(&found).collect();
    if v6only.trim() == "0" {
        // Missing ones may only be v6-only [::] listeners, which 127.0.0.1 cannot reach.
        let o = Command::new("ss").args(["-ltnH", "-6"]).output().unwrap();
        let v6 = String::from_utf8_lossy(&o.stdout).to_string();
        for p in &missing {
            assert!(
                v6.contains(&format!("]:{p} ")),
                "port {p} listed by ss before and after the scan, not found; found {found:?}"
            );
        }
    } else {
        assert!(missing.is_empty(), "missing {missing:?}");
    }
    let range =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let r: Vec<u16> = range
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let ephemeral = |p: u16| r.len() == 2 && (r[0]..=r[1]).contains(&p);
    let extra: Vec<_> = found.difference(&any).copied().collect();
    if !extra.is_empty() {
        eprintln!("open but never seen by ss (short-lived listeners of other tests?): {extra:?}");
    }
    assert!(
        extra.iter().all(|p| ephemeral(*p)),
        "found open but ss never listed them: {extra:?}"
    );
    assert!(
        extra.len() <= 2,
        "too many unexplained open ports: {extra:?}"
    );
}

/// `portwarden baseline suggest`: a scan of real listeners becomes a baseline that validates,
/// expects exactly the open ports (with the service each answered as), and against which a
/// fresh scan finds nothing.
#[test]
fn baseline_suggest_round_trips_through_the_config() {
    // An "SSH" listener that greets, a silent one, and a closed port.
    let ssh = TcpListener::bind("127.0.0.1:0").unwrap();
    let ssh_port = ssh.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::Write;
        for mut c in ssh.incoming().flatten() {
            let _ = c.write_all(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n");
        }
    });
    let (quiet, _) = counting_listener();
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let spec = format!("{ssh_port},{quiet},{closed}");
    let o = portwarden(&[
        "baseline",
        "suggest",
        "127.0.0.1",
        "--ports",
        &spec,
        "--name",
        "lo",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let yaml = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(yaml.contains("# OpenSSH_9.2p1"), "{yaml}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("suggested.yaml");
    std::fs::write(&file, format!("monitors: []\n{yaml}")).unwrap();
    let v = portwarden(&["validate", "--config", file.to_str().unwrap()]);
    assert_eq!(v.status.code(), Some(0), "{}\n{yaml}", stderr(&v));
    let cfg = portwarden_config::load_str(&format!("monitors: []\n{yaml}"), "suggested.yaml")
        .unwrap_or_else(|d| panic!("{d}\n{yaml}"))
        .config;
    assert_eq!(cfg.baselines.len(), 1, "{yaml}");
    let b = &cfg.baselines[0];
    assert_eq!(b.name, "lo");
    let allowed: Vec<(u16, Option<String>, bool)> = b
        .allowed_open
        .iter()
        .flat_map(|a| {
            a.ports
                .ports()
                .iter()
                .map(|p| (*p, a.service.clone(), a.expected))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut want = vec![
        (ssh_port, Some("ssh".to_string()), true),
        (quiet, None, true),
    ];
    want.sort();
    let mut got = allowed.clone();
    got.sort();
    assert_eq!(got, want, "{yaml}");

    // A fresh scan compared with it: nothing to report.
    let o = portwarden(&["scan", "127.0.0.1", "--ports", &spec, "--format", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let report: portwarden_scan::ScanReport = serde_json::from_slice(&o.stdout).unwrap();
    let findings = portwarden_scan::baseline::compare(b, &report, None);
    assert!(findings.is_empty(), "{findings:?}\n{yaml}");

    // A bad name is refused before any packet.
    let o = portwarden(&[
        "baseline",
        "suggest",
        "127.0.0.1",
        "--ports",
        &spec,
        "--name",
        "a b",
    ]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("--name `a b`"), "{}", stderr(&o));
}
