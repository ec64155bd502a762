//! Per-probe cost of the handshake probes against the services running on this machine
//! (PostgreSQL 5432, MariaDB 3306, Redis 6379, RabbitMQ 5672, Mosquitto 1883, NATS 4222), with
//! a plain TCP connect to the same ports as the floor. Services that are not listening are
//! skipped with a message.
//!
//! Run: `cargo bench -p portwarden-probe --bench handshakes`

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use portwarden_probe::{CheckSpec, ProbeSpec, Prober, Resolver, ResolverSpec};

fn listening(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(500),
    )
    .is_ok()
}

fn handshakes(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let prober = Prober::new(
        Resolver::new(&ResolverSpec::System).expect("resolver"),
        "bench",
    );
    let cases: &[(&str, u16)] = &[
        ("postgres", 5432),
        ("mysql", 3306),
        ("redis", 6379),
        ("amqp", 5672),
        ("mqtt", 1883),
        ("nats", 4222),
    ];
    let mut group = c.benchmark_group("probe");
    group
        .sample_size(50)
        .measurement_time(Duration::from_secs(5));
    for (kind, port) in cases {
        if !listening(*port) {
            eprintln!("skipping {kind}: nothing listens on 127.0.0.1:{port}");
            continue;
        }
        for (label, check) in [
            ("tcp", CheckSpec::for_scheme("tcp")),
            (*kind, CheckSpec::for_scheme(kind)),
        ] {
            let Some(check) = check else { continue };
            let target = format!("tcp://127.0.0.1:{port}").parse().expect("target");
            let spec = ProbeSpec::new(
                format!("{kind}-{label}"),
                target,
                check,
                Duration::from_secs(5),
            )
            .expect("spec");
            group.bench_function(format!("{kind}/{label}"), |b| {
                b.to_async(&rt).iter(|| async {
                    let obs = prober.probe(&spec).await;
                    assert!(
                        obs.iter()
                            .all(|o| o.outcome == portwarden_core::Outcome::Up),
                        "{obs:?}"
                    );
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, handshakes);
criterion_main!(benches);
