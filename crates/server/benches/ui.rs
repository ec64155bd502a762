//! Server-side time of the UI pages with a big store (acceptance: overview < 300 ms and monitor
//! page < 150 ms with 5 000 monitors and 30 days of rollups; overview HTML < 1 MB).
//!
//! `cargo bench -p portwarden-server --bench ui` — sizes from `PW_BENCH_MONITORS` (5000),
//! `PW_BENCH_DAYS` (30 days of hour rollups) and `PW_BENCH_MINUTE_HOURS` (26 hours of minute
//! rollups for every monitor). The synthetic database is kept in `target/ui-bench/` and
//! reused. Requests go through the whole router (auth middleware, handler, template) in
//! process, without sockets.

#[path = "../tests/support/synthetic.rs"]
mod synthetic;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use criterion::{Criterion, criterion_group, criterion_main};
use portwarden_server::{Daemon, ServeOptions};
use tower::ServiceExt;

const TOKEN: &str = "pw-bench-admin-token-0123456789";

fn env(k: &str, d: i64) -> i64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

async fn get(app: axum::Router, path: &str) -> (u16, usize) {
    let req = Request::get(path)
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .unwrap();
    let r = app.oneshot(req).await.unwrap();
    let status = r.status().as_u16();
    let body = axum::body::to_bytes(r.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, body.len())
}

fn bench(c: &mut Criterion) {
    let monitors = env("PW_BENCH_MONITORS", 5_000) as usize;
    let days = env("PW_BENCH_DAYS", 30);
    let minute_hours = env("PW_BENCH_MINUTE_HOURS", 26);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/ui-bench");
    let data = root.join(format!("data-{monitors}-{days}-{minute_hours}"));
    let t0 = Instant::now();
    synthetic::fill(&data, monitors, days, minute_hours);
    eprintln!(
        "store: {monitors} monitors, {days} d of hour rollups, {minute_hours} h of minute rollups ({:.1} s to prepare)",
        t0.elapsed().as_secs_f64()
    );
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let mut yaml = synthetic::config(monitors, port);
    yaml.push_str("status_page:\n  groups:\n    - name: All\n      components:\n");
    for c in 0..20 {
        let ms: Vec<String> = (1..=5).map(|k| synthetic::name(c * 5 + k)).collect();
        yaml.push_str(&format!(
            "        - {{name: Component {c}, monitors: [{}]}}\n",
            ms.join(", ")
        ));
    }
    yaml.push_str(&format!(
        "auth:\n  tokens:\n    - {{name: bench, secret: \"{TOKEN}\", role: admin}}\n"
    ));
    let config = root.join("bench.yaml");
    std::fs::write(&config, yaml).unwrap();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let daemon = rt.block_on(async {
        Daemon::start(ServeOptions {
            config: config.clone(),
            data_dir: Some(data.clone()),
            listen: Some("127.0.0.1:0".parse().unwrap()),
            store: None,
        })
        .await
        .unwrap()
    });
    let state = daemon.state.clone();
    rt.block_on(state.web.overview.refresh_all(&state.store));
    let (a24, a30, sp) = state.web.overview.costs();
    eprintln!(
        "background aggregates (not on the request path): availability 24 h {:.0} ms, 30 d {:.0} ms, sparklines {:.0} ms",
        a24.as_secs_f64() * 1e3,
        a30.as_secs_f64() * 1e3,
        sp.as_secs_f64() * 1e3
    );
    let app = portwarden_server::router(state.clone());
    for p in [
        "/",
        "/monitors/m-00042",
        "/monitors/m-00042?range=30d",
        "/status",
        "/status.json",
    ] {
        let (status, bytes) = rt.block_on(get(app.clone(), p));
        assert_eq!(status, 200, "{p}");
        eprintln!("page weight {p}: {bytes} bytes");
    }

    let mut g = c.benchmark_group("ui");
    g.sample_size(30).measurement_time(Duration::from_secs(10));
    g.bench_function(format!("overview, {monitors} monitors"), |b| {
        b.to_async(&rt).iter(|| get(app.clone(), "/"))
    });
    g.bench_function("overview, search", |b| {
        b.to_async(&rt)
            .iter(|| get(app.clone(), "/?q=m-0004&group=owner"))
    });
    for range in ["1h", "24h", "7d", "30d"] {
        g.bench_function(format!("monitor page, {range}"), |b| {
            let path = format!("/monitors/m-00042?range={range}");
            b.to_async(&rt).iter(|| get(app.clone(), &path))
        });
    }
    g.bench_function("status page (cached)", |b| {
        b.to_async(&rt).iter(|| get(app.clone(), "/status"))
    });
    g.bench_function("api monitors list", |b| {
        b.to_async(&rt)
            .iter(|| get(app.clone(), "/api/v1/monitors"))
    });
    g.finish();
    rt.block_on(daemon.stop());
}

criterion_group!(benches, bench);
criterion_main!(benches);
