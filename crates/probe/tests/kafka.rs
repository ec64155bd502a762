//! `kafka` against a MOCK broker. There is no Kafka server on this machine (and Debian ships
//! none), so a tokio task replays responses built byte by byte from the Kafka protocol guide
//! (https://kafka.apache.org/protocol: "Common Request and Response Structure", "The Messages
//! ApiVersions" v0 and "The Messages Metadata" v4), patching in the request's correlation id
//! the way a broker does. What is tested is our side: framing, parsing, correlation, verdicts.

mod common;

use std::time::Duration;

use common::*;
use portwarden_core::{ErrorKind, Outcome};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const T: Duration = Duration::from_secs(3);

/// ApiVersions v0 response body after the correlation id: error_code INT16, api_keys
/// ARRAY(INT32 count) of {api_key INT16, min_version INT16, max_version INT16}.
fn api_versions_body(error: i16) -> Vec<u8> {
    let mut b = error.to_be_bytes().to_vec();
    let apis: &[(i16, i16, i16)] = &[(0, 0, 9), (1, 0, 13), (3, 0, 12), (18, 0, 3)];
    b.extend_from_slice(&(apis.len() as i32).to_be_bytes());
    for (k, lo, hi) in apis {
        b.extend_from_slice(&k.to_be_bytes());
        b.extend_from_slice(&lo.to_be_bytes());
        b.extend_from_slice(&hi.to_be_bytes());
    }
    b
}

/// Metadata v4 response body after the correlation id: throttle_time_ms INT32, brokers
/// ARRAY of {node_id INT32, host STRING, port INT32, rack NULLABLE_STRING}, cluster_id
/// NULLABLE_STRING, controller_id INT32, topics ARRAY (empty).
fn metadata_v4_body(brokers: &[(i32, &str)], controller: i32) -> Vec<u8> {
    let mut b = 0i32.to_be_bytes().to_vec();
    b.extend_from_slice(&(brokers.len() as i32).to_be_bytes());
    for (id, host) in brokers {
        b.extend_from_slice(&id.to_be_bytes());
        b.extend_from_slice(&(host.len() as i16).to_be_bytes());
        b.extend_from_slice(host.as_bytes());
        b.extend_from_slice(&9092i32.to_be_bytes());
        b.extend_from_slice(&(-1i16).to_be_bytes());
    }
    b.extend_from_slice(&7i16.to_be_bytes());
    b.extend_from_slice(b"cluster");
    b.extend_from_slice(&controller.to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes());
    b
}

#[derive(Clone)]
struct Script {
    api_error: i16,
    brokers: Vec<(i32, &'static str)>,
    controller: i32,
    close_on_metadata: bool,
}

/// The mock broker: reads size-prefixed requests, answers by api_key.
async fn mock(script: Script) -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let script = script.clone();
            tokio::spawn(async move {
                loop {
                    let mut len = [0u8; 4];
                    if s.read_exact(&mut len).await.is_err() {
                        return;
                    }
                    let mut req = vec![0u8; i32::from_be_bytes(len) as usize];
                    if s.read_exact(&mut req).await.is_err() {
                        return;
                    }
                    let api_key = i16::from_be_bytes([req[0], req[1]]);
                    let version = i16::from_be_bytes([req[2], req[3]]);
                    let corr = &req[4..8];
                    let body = match api_key {
                        18 => api_versions_body(script.api_error),
                        3 if script.close_on_metadata => return,
                        3 => {
                            assert_eq!(version, 4, "the probe asks Metadata v4");
                            metadata_v4_body(&script.brokers, script.controller)
                        }
                        _ => return,
                    };
                    let mut resp = ((body.len() + 4) as i32).to_be_bytes().to_vec();
                    resp.extend_from_slice(corr);
                    resp.extend_from_slice(&body);
                    if s.write_all(&resp).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

fn healthy() -> Script {
    Script {
        api_error: 0,
        brokers: vec![(1, "k1"), (2, "k2"), (3, "k3")],
        controller: 2,
        close_on_metadata: false,
    }
}

#[tokio::test]
async fn handshake_and_deep_against_the_mock() {
    let port = mock(healthy()).await;
    let target = format!("kafka://127.0.0.1:{port}");
    let o = probe1(&target, check(json!({"kafka": {}})), T).await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    assert_eq!(o.details["api_count"], 4);
    assert_eq!(o.details["metadata_versions"], "0-12");
    let o = probe1(
        &target,
        check(json!({"kafka": {"mode": "deep", "min_brokers": 3}})),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    assert_eq!(o.details["brokers"], 3);
    assert_eq!(o.details["controller_id"], 2);
    assert_eq!(o.details["cluster_id"], "cluster");
    assert_eq!(o.details["broker_addresses"][0], "k1:9092");
    let o = probe1(
        &target,
        check(json!({"kafka": {"mode": "deep", "min_brokers": 5}})),
        T,
    )
    .await;
    assert_eq!(o.error_kind(), Some(ErrorKind::Unhealthy), "{o:?}");
}

#[tokio::test]
async fn no_controller_error_code_and_sasl() {
    let port = mock(Script {
        controller: -1,
        ..healthy()
    })
    .await;
    let o = probe1(
        &format!("kafka://127.0.0.1:{port}"),
        check(json!({"kafka": {"mode": "deep"}})),
        T,
    )
    .await;
    assert_eq!(o.error_kind(), Some(ErrorKind::Unhealthy), "{o:?}");
    assert!(o.message().unwrap().contains("controller"));

    let port = mock(Script {
        api_error: 35,
        ..healthy()
    })
    .await;
    let o = probe1(
        &format!("kafka://127.0.0.1:{port}"),
        check(json!({"kafka": {}})),
        T,
    )
    .await;
    assert_eq!(o.error_kind(), Some(ErrorKind::Unhealthy), "{o:?}");
    assert!(o.message().unwrap().contains("UNSUPPORTED_VERSION"));

    let port = mock(Script {
        close_on_metadata: true,
        ..healthy()
    })
    .await;
    let o = probe1(
        &format!("kafka://127.0.0.1:{port}"),
        check(json!({"kafka": {"mode": "deep"}})),
        T,
    )
    .await;
    assert_eq!(o.error_kind(), Some(ErrorKind::Auth), "{o:?}");
}
