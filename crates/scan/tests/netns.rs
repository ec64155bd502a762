//! Acceptance 1: a private host in a network namespace with open listeners, a port REJECTed
//! with a TCP reset (closed), ports DROPped (filtered), an ICMP admin-prohibited port, a real
//! DNS server (dnsmasq) on UDP 53, a closed UDP port and a DROPped UDP port. The scan must
//! classify every one correctly. Needs root (skips loudly otherwise).

use std::io::Write;
use std::net::{IpAddr, TcpListener, UdpSocket};
use std::time::Duration;

use portwarden_core::Transport;
use portwarden_scan::{PortSet, PortState, Reason, ScanOptions, ScanRequest, Scanner};
use portwarden_testkit as testkit;
use testkit::netns::Netns;

fn accept_forever(l: TcpListener, greeting: &'static [u8]) {
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            let _ = c.write_all(greeting);
            std::thread::sleep(Duration::from_millis(20));
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classifies_tcp_and_udp_ports_in_a_namespace() {
    if !testkit::need(testkit::is_root(), "root for network namespaces") {
        return;
    }
    let Some(dnsmasq) = testkit::need_binary("dnsmasq") else {
        return;
    };
    let mut ns = Netns::new().expect("namespace");
    let ip = ns.ns_ip;
    // TCP: 7001 open (silent), 7002 open (SSH greeting), 7003 REJECT with reset, 7004 DROP,
    // 7005 nothing listening, 7006 REJECT with ICMP admin-prohibited.
    let (l1, l2) = ns
        .within(|| {
            (
                TcpListener::bind((ip, 7001)).expect("bind 7001"),
                TcpListener::bind((ip, 7002)).expect("bind 7002"),
            )
        })
        .expect("enter namespace");
    accept_forever(l1, b"");
    accept_forever(l2, b"SSH-2.0-OpenSSH_9.9 scantest\r\n");
    // UDP: 53 dnsmasq, 7101 closed, 7102 DROP, 7103 REJECT admin-prohibited, 7104 an echo.
    let echo = ns
        .within(|| UdpSocket::bind((ip, 7104)).expect("bind udp"))
        .expect("ns");
    std::thread::spawn(move || {
        let mut b = [0u8; 1500];
        while let Ok((n, from)) = echo.recv_from(&mut b) {
            let _ = echo.send_to(&b[..n.max(1)], from);
        }
    });
    for rule in [
        "-A INPUT -p tcp --dport 7003 -j REJECT --reject-with tcp-reset",
        "-A INPUT -p tcp --dport 7004 -j DROP",
        "-A INPUT -p tcp --dport 7006 -j REJECT --reject-with icmp-admin-prohibited",
        "-A INPUT -p udp --dport 7102 -j DROP",
        "-A INPUT -p udp --dport 7103 -j REJECT --reject-with icmp-admin-prohibited",
    ] {
        ns.iptables(rule).expect("iptables");
    }
    let dns = dnsmasq.to_string_lossy().to_string();
    let listen = format!("--listen-address={ip}");
    ns.spawn(&[
        &dns,
        "-d",
        "-k",
        "-p",
        "53",
        "--no-resolv",
        "--no-hosts",
        "--bind-interfaces",
        &listen,
        "--user=root",
        "--pid-file=",
        "--address=/x.test/10.0.0.1",
    ])
    .expect("dnsmasq");
    // Wait until dnsmasq answers.
    let probe = UdpSocket::bind("0.0.0.0:0").unwrap();
    probe
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let q = portwarden_wire::dns::query(1, "x.test", "A", true).unwrap();
    let up = testkit::http::wait_until(Duration::from_secs(10), || {
        probe.send_to(&q, (ip, 53)).ok()?;
        let mut b = [0u8; 512];
        probe.recv_from(&mut b).ok().map(|_| ())
    });
    assert!(up.is_some(), "dnsmasq did not start in the namespace");

    let scanner = Scanner::system().unwrap();
    let req = ScanRequest {
        targets: vec![ip.to_string()],
        tcp_ports: Some(PortSet::parse("7001-7006", Transport::Tcp).unwrap()),
        udp_ports: Some(PortSet::parse("53,7101-7104", Transport::Udp).unwrap()),
        options: ScanOptions {
            timeout: Duration::from_millis(800),
            udp_timeout: Duration::from_millis(800),
            udp_round_pause: Duration::from_millis(300),
            keep_closed: true,
            ..ScanOptions::default()
        },
    };
    let report = scanner.run(&req, None).await.expect("scan");
    let host = &report.hosts[0];
    assert_eq!(host.addr, IpAddr::V4(ip));
    let st = |port, t| {
        host.port(port, t)
            .map(|p| (p.state, p.reason))
            .unwrap_or_else(|| panic!("{port}/{t} missing: {host:#?}"))
    };
    use Transport::{Tcp, Udp};
    assert_eq!(st(7001, Tcp), (PortState::Open, Reason::SynAck));
    assert_eq!(st(7002, Tcp), (PortState::Open, Reason::SynAck));
    assert_eq!(st(7003, Tcp), (PortState::Closed, Reason::Reset));
    assert_eq!(st(7004, Tcp), (PortState::Filtered, Reason::Timeout));
    assert_eq!(st(7005, Tcp), (PortState::Closed, Reason::Reset));
    assert_eq!(st(7006, Tcp).0, PortState::Filtered, "admin-prohibited");
    assert_eq!(st(53, Udp), (PortState::Open, Reason::Reply));
    assert_eq!(st(7101, Udp), (PortState::Closed, Reason::PortUnreachable));
    assert_eq!(st(7102, Udp), (PortState::OpenFiltered, Reason::NoReply));
    assert_eq!(st(7103, Udp).0, PortState::Filtered, "udp admin-prohibited");
    assert_eq!(st(7104, Udp), (PortState::Open, Reason::Reply));
    // Services: the SSH greeting is read, dnsmasq answered our DNS query.
    let ssh = host.port(7002, Tcp).unwrap().service.clone().unwrap();
    assert_eq!(ssh.service.as_deref(), Some("ssh"));
    assert_eq!(ssh.version.as_deref(), Some("OpenSSH_9.9 scantest"));
    let dns = host.port(53, Udp).unwrap().service.clone().unwrap();
    assert_eq!(dns.service.as_deref(), Some("dns"));
    assert!(
        dns.banner.as_deref().unwrap_or("").starts_with("DNS "),
        "{dns:?}"
    );
    assert_eq!(host.counts.get("tcp/open"), Some(&2));
    assert_eq!(host.counts.get("tcp/closed"), Some(&2));
    assert_eq!(host.counts.get("tcp/filtered"), Some(&2));
    assert_eq!(host.counts.get("udp/open|filtered"), Some(&1));
}
