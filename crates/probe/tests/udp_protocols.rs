//! dns, ntp and snmp probes against real servers started here on free ports: dnsmasq, chronyd
//! and snmpd. Killing each makes the probe `down` with `closed` (ICMP port unreachable).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use portwarden_core::{ErrorKind, Observation, Outcome};
use portwarden_probe::CheckSpec;
use portwarden_testkit as tk;
use portwarden_testkit::process::Server;
use serde_json::json;

const T: Duration = Duration::from_secs(3);

/// Probes until `ok` holds or `limit` passes (UDP servers give no readiness signal).
async fn probe_until(
    target: &str,
    c: serde_json::Value,
    limit: Duration,
    ok: impl Fn(&Observation) -> bool,
) -> Observation {
    let start = Instant::now();
    loop {
        let o = probe1(target, check(c.clone()), T).await;
        if ok(&o) || start.elapsed() > limit {
            return o;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn dnsmasq() -> Option<(Server, tempfile::TempDir)> {
    let bin = tk::need_binary("dnsmasq")?;
    let dir = tempfile::tempdir().unwrap();
    let port = tk::free_port();
    let mut cmd = Command::new(bin);
    cmd.args([
        "-d",
        "-p",
        &port.to_string(),
        "--no-resolv",
        "--no-hosts",
        "-C",
        "/dev/null",
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        "--address=/x.test/10.0.0.1",
        "--txt-record=t.x.test,hello portwarden",
        "--local=/gone.test/",
        &format!("--pid-file={}/pid", dir.path().display()),
    ]);
    Some((
        Server::spawn_tcp("dnsmasq", cmd, port, Duration::from_secs(10)).unwrap(),
        dir,
    ))
}

#[tokio::test]
async fn dns_over_udp_and_tcp_against_dnsmasq() {
    let Some((mut srv, _dir)) = dnsmasq() else {
        return;
    };
    let target = format!("dns://127.0.0.1:{}", srv.port);
    let o = probe1(
        &target,
        check(json!({"dns": {"name": "x.test", "answer": "10.0.0.1"}})),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    assert_eq!(o.details["rcode"], "NOERROR");
    assert_eq!(o.details["answers"], json!(["10.0.0.1"]));
    assert_eq!(o.details["dns_transport"], "udp");
    assert!(o.details["rtt_ms"].as_f64().is_some());
    let o = probe1(
        &target,
        check(json!({"dns": {"name": "x.test", "transport": "tcp", "answer_regex": "^10\\.0\\.0\\.\\d+$"}})),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    assert_eq!(o.details["dns_transport"], "tcp");
    assert!(o.phases.connect_ms.is_some());
    let o = probe1(
        &target,
        check(json!({"dns": {"name": "t.x.test", "query_type": "txt"}})),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    assert!(
        o.details["answers"][0]
            .as_str()
            .unwrap()
            .contains("hello portwarden"),
        "{o:?}"
    );
    // Wrong answer.
    let o = probe1(
        &target,
        check(json!({"dns": {"name": "x.test", "answer": "10.9.9.9"}})),
        T,
    )
    .await;
    assert_eq!(o.error_kind(), Some(ErrorKind::Unhealthy), "{o:?}");
    // NXDOMAIN: down by default, up when expected.
    let o = probe1(&target, check(json!({"dns": {"name": "a.gone.test"}})), T).await;
    assert_eq!(o.error_kind(), Some(ErrorKind::Unhealthy), "{o:?}");
    assert_eq!(o.details["rcode"], "NXDOMAIN");
    let o = probe1(
        &target,
        check(json!({"dns": {"name": "a.gone.test", "rcode": "nxdomain"}})),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    // No upstream for other names: dnsmasq REFUSES (or SERVFAILs) → down.
    let o = probe1(&target, check(json!({"dns": {"name": "example.org"}})), T).await;
    assert_eq!(o.outcome, Outcome::Down, "{o:?}");
    assert_eq!(o.error_kind(), Some(ErrorKind::Unhealthy), "{o:?}");
    assert!(
        matches!(o.details["rcode"].as_str(), Some("REFUSED" | "SERVFAIL")),
        "{o:?}"
    );
    // RTT levels: a zero crit level always trips.
    let o = probe1(
        &target,
        check(json!({"dns": {"name": "x.test", "max_rtt": {"warn": "0s"}}})),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Degraded, "{o:?}");
    // Killed: ICMP port unreachable over UDP, refused over TCP.
    srv.kill();
    let o = probe1(&target, check(json!({"dns": {"name": "x.test"}})), T).await;
    assert_eq!(o.outcome, Outcome::Down);
    assert_eq!(o.error_kind(), Some(ErrorKind::Closed), "{o:?}");
    let o = probe1(
        &target,
        check(json!({"dns": {"name": "x.test", "transport": "tcp"}})),
        T,
    )
    .await;
    assert_eq!(o.error_kind(), Some(ErrorKind::Refused), "{o:?}");
}

#[tokio::test]
async fn dns_default_check_from_scheme() {
    let Some((srv, _dir)) = dnsmasq() else { return };
    let c = CheckSpec::for_scheme("dns").unwrap();
    assert_eq!(c.info().default_port, Some(53));
    let mut c = c;
    if let CheckSpec::Dns(d) = &mut c {
        d.name = Some("x.test".into());
    }
    let o = probe1(&format!("dns://127.0.0.1:{}", srv.port), c, T).await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
}

fn chronyd(local_stratum: Option<u8>) -> Option<(Server, tempfile::TempDir)> {
    let bin = tk::need_binary("chronyd")?;
    if !tk::need(tk::is_root(), "root (chronyd)") {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = tk::free_udp_port();
    let local = local_stratum
        .map(|s| format!("local stratum {s}\n"))
        .unwrap_or_default();
    let conf = format!(
        "port {port}\nbindaddress 127.0.0.1\nallow 127.0.0.1\ncmdport 0\n{local}pidfile {d}/chronyd.pid\ndriftfile {d}/drift\n",
        d = dir.path().display()
    );
    let cfg = dir.path().join("chrony.conf");
    std::fs::write(&cfg, conf).unwrap();
    let mut cmd = Command::new(bin);
    // -d: foreground; -x: never touch the system clock; -u root: keep our uid.
    cmd.arg("-d")
        .arg("-x")
        .arg("-u")
        .arg("root")
        .arg("-f")
        .arg(&cfg);
    Some((Server::spawn("chronyd", cmd, port).unwrap(), dir))
}

#[tokio::test]
async fn ntp_against_chrony() {
    let Some((mut srv, _dir)) = chronyd(Some(8)) else {
        return;
    };
    let target = format!("ntp://127.0.0.1:{}", srv.port);
    let c = json!({"ntp": {"max_offset": {"warn": "100ms", "crit": "1s"}}});
    let o = probe_until(&target, c.clone(), Duration::from_secs(15), |o| {
        o.outcome == Outcome::Up
    })
    .await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    assert_eq!(o.details["stratum"], 8);
    let off = o.details["offset_ms"].as_f64().unwrap();
    assert!(off.abs() < 100.0, "same machine, same clock: {off}");
    assert!(o.details["root_distance_ms"].as_f64().is_some());
    assert!(o.details["delay_ms"].as_f64().unwrap() >= 0.0);
    // Levels: any offset is at or above 0s.
    let o = probe1(
        &target,
        check(json!({"ntp": {"max_offset": {"crit": "0s"}}})),
        T,
    )
    .await;
    assert_eq!(o.error_kind(), Some(ErrorKind::Unhealthy), "{o:?}");
    let o = probe1(&target, check(json!({"ntp": {"max_stratum": 3}})), T).await;
    assert_eq!(o.error_kind(), Some(ErrorKind::Unhealthy), "{o:?}");
    srv.kill();
    let o = probe1(&target, check(c), T).await;
    assert_eq!(o.outcome, Outcome::Down);
    assert_eq!(o.error_kind(), Some(ErrorKind::Closed), "{o:?}");
}

#[tokio::test]
async fn ntp_unsynchronised_server_is_unhealthy() {
    // chronyd with no sources and no `local` stratum answers "not synchronised".
    let Some((_srv, _dir)) = chronyd(None) else {
        return;
    };
    let target = format!("ntp://127.0.0.1:{}", _srv.port);
    let o = probe_until(&target, json!({"ntp": {}}), Duration::from_secs(10), |o| {
        o.error_kind() == Some(ErrorKind::Unhealthy)
    })
    .await;
    assert_eq!(o.error_kind(), Some(ErrorKind::Unhealthy), "{o:?}");
    assert!(o.message().unwrap().contains("not synchronised"), "{o:?}");
}

fn snmpd() -> Option<(Server, tempfile::TempDir)> {
    let bin = tk::need_binary("snmpd")?;
    let dir = tempfile::tempdir().unwrap();
    let port = tk::free_udp_port();
    let conf = dir.path().join("snmpd.conf");
    std::fs::write(
        &conf,
        "rocommunity pw-test-community 127.0.0.1\nsysName portwarden-test\nsysLocation lab\n",
    )
    .unwrap();
    let mut cmd = Command::new(bin);
    cmd.args(["-f", "-Ln", "-C", "-c"])
        .arg(&conf)
        .arg("-p")
        .arg(dir.path().join("snmpd.pid"))
        .arg(format!("udp:127.0.0.1:{port}"));
    Some((Server::spawn("snmpd", cmd, port).unwrap(), dir))
}

#[tokio::test]
async fn snmp_against_snmpd() {
    let Some((mut srv, _dir)) = snmpd() else {
        return;
    };
    let target = format!("snmp://127.0.0.1:{}", srv.port);
    let c = json!({"snmp": {"community": "pw-test-community", "oids": ["1.3.6.1.2.1.1.6.0", "1.3.6.1.2.1.1.99.0"]}});
    let o = probe_until(&target, c.clone(), Duration::from_secs(10), |o| {
        o.outcome == Outcome::Up
    })
    .await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    assert!(
        o.details["sys_descr"].as_str().unwrap().contains("Linux"),
        "{o:?}"
    );
    assert_eq!(o.details["sys_name"], "portwarden-test");
    assert!(o.details["sys_uptime_s"].as_f64().is_some());
    assert_eq!(o.details["values"]["1.3.6.1.2.1.1.6.0"], "lab");
    assert_eq!(o.details["values"]["1.3.6.1.2.1.1.99.0"], "noSuchObject");
    assert!(
        !format!("{o:?}").contains("pw-test-community"),
        "the community never prints"
    );
    let o = probe1(
        &target,
        check(json!({"snmp": {"community": "pw-test-community", "version": "1"}})),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Up, "v1: {o:?}");
    // Wrong community: agents stay silent.
    let o = probe1(
        &target,
        check(json!({"snmp": {"community": "wrong"}})),
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(o.outcome, Outcome::Down, "{o:?}");
    assert_eq!(o.error_kind(), Some(ErrorKind::NoResponse), "{o:?}");
    assert!(o.message().unwrap().contains("community"));
    srv.kill();
    let o = probe1(&target, check(c), T).await;
    assert_eq!(o.outcome, Outcome::Down);
    assert_eq!(o.error_kind(), Some(ErrorKind::Closed), "{o:?}");
}
