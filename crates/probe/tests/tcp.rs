//! TCP probes against real sockets: open, closed, filtered (DROP), unreachable, reset.

mod common;

use std::time::{Duration, Instant};

use common::*;
use portwarden_core::{ErrorKind, Outcome, Phase};
use portwarden_testkit as tk;
use serde_json::json;

#[tokio::test]
async fn open_port_is_up_with_connect_time() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let o = probe1(
        &format!("tcp://127.0.0.1:{port}"),
        check(json!({"tcp": {}})),
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    assert!(o.phases.connect_ms.is_some());
    assert_eq!(o.address.unwrap().port(), port);
    assert!(o.phases.dns_ms.is_none(), "IP literals need no lookup");
}

#[tokio::test]
async fn ipv6_loopback() {
    let Ok(l) = tokio::net::TcpListener::bind("[::1]:0").await else {
        tk::need(false, "IPv6 loopback");
        return;
    };
    let port = l.local_addr().unwrap().port();
    let o = probe1(
        &format!("tcp://[::1]:{port}"),
        check(json!({"tcp": {}})),
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    assert_eq!(o.target, format!("tcp://[::1]:{port}"));
}

#[tokio::test]
async fn closed_port_is_refused() {
    let port = tk::free_port();
    let o = probe1(
        &format!("tcp://127.0.0.1:{port}"),
        check(json!({"tcp": {}})),
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(o.outcome, Outcome::Down);
    assert_eq!(o.error_kind(), Some(ErrorKind::Refused), "{o:?}");
}

#[tokio::test]
async fn every_address_of_a_name_is_probed() {
    // `localhost` resolves (via /etc/hosts) to 127.0.0.1 and usually ::1; listen on v4 only.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let target = format!("tcp://localhost:{port}");
    let all = probe(&target, check(json!({"tcp": {}})), Duration::from_secs(2)).await;
    assert!(!all.is_empty());
    let v4 = all
        .iter()
        .find(|o| o.address.is_some_and(|a| a.is_ipv4()))
        .expect("an IPv4 result");
    assert_eq!(v4.outcome, Outcome::Up);
    assert!(v4.phases.dns_ms.is_some(), "a name lookup is timed");
    if let Some(v6) = all.iter().find(|o| o.address.is_some_and(|a| a.is_ipv6())) {
        // Nothing listens on ::1 at this port: the dead "replica" is visible.
        assert_eq!(v6.outcome, Outcome::Down, "{v6:?}");
    }
    let spec = portwarden_probe::ProbeSpec::new(
        &target,
        target.parse().unwrap(),
        check(json!({"tcp": {}})),
        Duration::from_secs(2),
    )
    .unwrap()
    .with_addresses(portwarden_core::AddressPolicy::First);
    assert_eq!(prober().probe(&spec).await.len(), 1);
}

#[tokio::test]
async fn unreachable_resolver_is_our_problem_not_the_targets() {
    // A resolver on a closed UDP port answers ICMP unreachable: our side is broken, so the
    // outcome is `unknown`, never `down`.
    let port = tk::free_udp_port();
    let resolver = portwarden_probe::Resolver::new(&portwarden_probe::ResolverSpec::Server(
        format!("127.0.0.1:{port}").parse().unwrap(),
    ))
    .unwrap();
    let prober = portwarden_probe::Prober::new(resolver, "local");
    let spec = portwarden_probe::ProbeSpec::new(
        "x",
        "tcp://db.portwarden.test:5432".parse().unwrap(),
        check(json!({"tcp": {}})),
        Duration::from_secs(3),
    )
    .unwrap();
    let o = prober.probe(&spec).await.remove(0);
    assert_eq!(o.outcome, Outcome::Unknown, "{o:?}");
    assert!(
        matches!(
            o.error_kind(),
            Some(ErrorKind::Local) | Some(ErrorKind::Dns(_))
        ),
        "{o:?}"
    );
}

#[tokio::test]
async fn reset_after_accept_is_reset_when_reading() {
    let port = tk::hostile::reset_after_accept(Duration::from_millis(50)).await;
    let target = format!("tcp://127.0.0.1:{port}");
    let o = probe1(
        &target,
        check(json!({"send_expect": {"steps": [{"send": "HELLO\\r\\n"}, {"expect": "OK"}]}})),
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(o.outcome, Outcome::Down);
    assert_eq!(o.error_kind(), Some(ErrorKind::Reset), "{o:?}");
    let o = probe1(
        &target,
        check(json!({"tcp": {"read_banner": "1s"}})),
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(o.error_kind(), Some(ErrorKind::Reset), "{o:?}");
}

#[tokio::test]
async fn banner_is_recorded() {
    let port = tk::hostile::greeter(b"SSH-2.0-Test_1.0\r\n").await;
    let o = probe1(
        &format!("tcp://127.0.0.1:{port}"),
        check(json!({"tcp": {"read_banner": "1s"}})),
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(o.outcome, Outcome::Up);
    assert_eq!(o.details["banner"], "SSH-2.0-Test_1.0\\r\\n");
}

#[tokio::test]
async fn filtered_and_unreachable_in_a_namespace() {
    if !tk::need(
        tk::is_root() && tk::which("iptables").is_some(),
        "root and iptables for network namespaces",
    ) {
        return;
    }
    let mut ns = tk::netns::Netns::new().expect("netns");
    ns.iptables("-A INPUT -p tcp --dport 7001 -j DROP").unwrap();
    ns.iptables("-A INPUT -p tcp --dport 7003 -j REJECT --reject-with icmp-host-unreachable")
        .unwrap();
    ns.iptables("-A INPUT -p tcp --dport 7002 -j REJECT --reject-with tcp-reset")
        .unwrap();
    let ip = ns.ns_ip;

    let timeout = Duration::from_secs(2);
    let start = Instant::now();
    let o = probe1(
        &format!("tcp://{ip}:7001"),
        check(json!({"tcp": {}})),
        timeout,
    )
    .await;
    let took = start.elapsed();
    assert_eq!(o.outcome, Outcome::Down, "{o:?}");
    assert_eq!(
        o.error_kind(),
        Some(ErrorKind::Timeout(Phase::Connect)),
        "{o:?}"
    );
    assert!(
        took <= timeout.mul_f64(1.1),
        "took {took:?} for a {timeout:?} timeout"
    );
    assert!(took >= timeout.mul_f64(0.9), "gave up early after {took:?}");

    let o = probe1(
        &format!("tcp://{ip}:7003"),
        check(json!({"tcp": {}})),
        timeout,
    )
    .await;
    assert_eq!(o.error_kind(), Some(ErrorKind::HostUnreachable), "{o:?}");

    let o = probe1(
        &format!("tcp://{ip}:7002"),
        check(json!({"tcp": {}})),
        timeout,
    )
    .await;
    assert_eq!(o.error_kind(), Some(ErrorKind::Refused), "{o:?}");
}
