//! MOCK SERVERS, on purpose: no MongoDB or Elasticsearch server runs on this machine (neither
//! is packaged in Debian), and some states of real servers (PostgreSQL "starting up", MySQL
//! "Too many connections" at the greeting, a red Elasticsearch cluster) are impractical to
//! produce in a test. These tokio servers replay byte sequences built from the published
//! protocol specifications, cited at each one, so the probes' handling of those answers is
//! exercised over real sockets. The codecs themselves have spec-based unit tests and property
//! tests in `portwarden-wire`.

mod common;

use std::time::Duration;

use common::*;
use portwarden_core::{ErrorKind, Outcome};
use portwarden_wire::bson::DocBuilder;
use portwarden_wire::mongodb;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const T: Duration = Duration::from_secs(3);

fn detail<'a>(o: &'a portwarden_core::Observation, k: &str) -> &'a serde_json::Value {
    o.details.get(k).unwrap_or(&serde_json::Value::Null)
}

/// Serves each connection with `f` (a mock; see the file header).
async fn serve<F, Fut>(f: F) -> u16
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let f = std::sync::Arc::new(f);
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let f = f.clone();
            tokio::spawn(async move { f(s).await });
        }
    });
    port
}

// ---------------------------------------------------------------------------------------------
// MongoDB. Spec: "MongoDB Wire Protocol" (Standard Message Header; OP_MSG, opCode 2013, flagBits,
// section kind 0) and the `hello`, `isMaster` and `buildInfo` command reply documents.

/// Reads one OP_MSG request; returns (requestID, command name).
async fn read_op_msg(s: &mut TcpStream) -> Option<(i32, String)> {
    let mut head = [0u8; 16];
    s.read_exact(&mut head).await.ok()?;
    let len = i32::from_le_bytes(head[0..4].try_into().ok()?) as usize;
    let id = i32::from_le_bytes(head[4..8].try_into().ok()?);
    let mut rest = vec![0u8; len.checked_sub(16)?];
    s.read_exact(&mut rest).await.ok()?;
    let (doc, _) = portwarden_wire::bson::decode_document(&rest[5..]).ok()?;
    Some((id, doc.0.first()?.0.clone()))
}

fn op_msg_reply(response_to: i32, body: Vec<u8>) -> Vec<u8> {
    let mut m = mongodb::op_msg(99, &body);
    m[8..12].copy_from_slice(&response_to.to_le_bytes());
    m
}

/// A mock mongod: answers hello with `hello` (or CommandNotFound when `legacy`), isMaster with
/// `hello`, buildInfo with version 7.0.4.
async fn mock_mongod(hello: fn() -> Vec<u8>, legacy: bool) -> u16 {
    serve(move |mut s| async move {
        while let Some((id, cmd)) = read_op_msg(&mut s).await {
            let body = match cmd.as_str() {
                "hello" if legacy => DocBuilder::new()
                    .int32("ok", 0)
                    .string("errmsg", "no such command: 'hello'")
                    .int32("code", 59)
                    .string("codeName", "CommandNotFound")
                    .finish(),
                "hello" | "isMaster" => hello(),
                "buildInfo" => DocBuilder::new()
                    .string("version", "7.0.4")
                    .int32("ok", 1)
                    .finish(),
                _ => return,
            };
            if s.write_all(&op_msg_reply(id, body)).await.is_err() {
                return;
            }
        }
    })
    .await
}

fn primary_hello() -> Vec<u8> {
    DocBuilder::new()
        .bool("isWritablePrimary", true)
        .bool("secondary", false)
        .string("setName", "rs0")
        .int32("maxWireVersion", 21)
        .int32("ok", 1)
        .finish()
}

fn secondary_hello() -> Vec<u8> {
    DocBuilder::new()
        .bool("ismaster", false)
        .bool("secondary", true)
        .string("setName", "rs0")
        .int32("maxWireVersion", 17)
        .int32("ok", 1)
        .finish()
}

fn recovering_hello() -> Vec<u8> {
    DocBuilder::new()
        .bool("isWritablePrimary", false)
        .bool("secondary", false)
        .string("setName", "rs0")
        .int32("maxWireVersion", 21)
        .int32("ok", 1)
        .finish()
}

#[tokio::test]
async fn mongodb_primary_secondary_legacy_and_recovering() {
    let port = mock_mongod(primary_hello, false).await;
    let o = probe1(
        &format!("mongodb://127.0.0.1:{port}"),
        check(json!({"mongodb": {}})),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    assert_eq!(detail(&o, "role"), &json!("primary"));
    assert_eq!(detail(&o, "set_name"), &json!("rs0"));
    assert_eq!(detail(&o, "max_wire_version"), &json!(21));
    assert_eq!(detail(&o, "server_version"), &json!("7.0.4"));
    assert_eq!(detail(&o, "read_only"), &json!(false));

    // An old server without `hello`: the probe falls back to isMaster.
    let port = mock_mongod(secondary_hello, true).await;
    let o = probe1(
        &format!("mongodb://127.0.0.1:{port}"),
        check(json!({"mongodb": {}})),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    assert_eq!(detail(&o, "role"), &json!("replica"));
    assert_eq!(detail(&o, "read_only"), &json!(true));

    let port = mock_mongod(recovering_hello, false).await;
    let o = probe1(
        &format!("mongodb://127.0.0.1:{port}"),
        check(json!({"mongodb": {}})),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Down, "{o:?}");
    assert_eq!(o.error_kind(), Some(ErrorKind::Unhealthy), "{o:?}");
}

#[tokio::test]
async fn mongodb_lying_length_is_protocol_not_allocation() {
    // A reply header announcing 2 GiB: rejected by the bound, never read or allocated.
    let port = serve(|mut s| async move {
        let _ = read_op_msg(&mut s).await;
        let mut h = Vec::new();
        h.extend_from_slice(&i32::MAX.to_le_bytes());
        h.extend_from_slice(&[0; 8]);
        h.extend_from_slice(&mongodb::OP_MSG.to_le_bytes());
        let _ = s.write_all(&h).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    })
    .await;
    let o = probe1(
        &format!("mongodb://127.0.0.1:{port}"),
        check(json!({"mongodb": {}})),
        T,
    )
    .await;
    assert_eq!(o.error_kind(), Some(ErrorKind::Protocol), "{o:?}");
}

// ---------------------------------------------------------------------------------------------
// Elasticsearch. Spec: RFC 9112 (HTTP/1.1 message framing) and the Elasticsearch REST API
// reference: "Root API" (`GET /`: name, cluster_name, version.number, tagline) and "Cluster
// health API" (`GET /_cluster/health`: status green|yellow|red, number_of_nodes, ...).

const ES_ROOT: &str = r#"{"name":"es-1","cluster_name":"search","cluster_uuid":"x","version":{"number":"8.11.1","build_flavor":"default","lucene_version":"9.8.0"},"tagline":"You Know, for Search"}"#;

fn health(status: &str, unassigned: u32) -> String {
    format!(
        r#"{{"cluster_name":"search","status":"{status}","timed_out":false,"number_of_nodes":3,"number_of_data_nodes":3,"active_primary_shards":5,"active_shards":8,"relocating_shards":0,"initializing_shards":0,"unassigned_shards":{unassigned},"delayed_unassigned_shards":0,"number_of_pending_tasks":0,"active_shards_percent_as_number":80.0}}"#
    )
}

/// A mock ES node: answers each request on a connection (keep-alive aware), `chunked` selects
/// chunked transfer coding for the health body. `auth` demands this Basic credential.
async fn mock_es(status: &'static str, chunked: bool, auth: Option<&'static str>) -> u16 {
    serve(move |mut s| async move {
        let mut buf = Vec::new();
        loop {
            let mut chunk = [0u8; 4096];
            let Ok(n) = s.read(&mut chunk).await else { return };
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
            while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let req = String::from_utf8_lossy(&buf[..end]).into_owned();
                buf.drain(..end + 4);
                let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
                let close = req.to_ascii_lowercase().contains("connection: close");
                let authorized = auth.is_none_or(|a| req.contains(&format!("Authorization: Basic {a}")));
                let resp = if !authorized {
                    let body = r#"{"error":"security_exception","status":401}"#;
                    format!("HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"security\"\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}", body.len())
                } else if path == "/" {
                    format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{ES_ROOT}", ES_ROOT.len())
                } else if chunked {
                    let body = health(status, 2);
                    let (a, b) = body.split_at(body.len() / 2);
                    format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n", a.len(), b.len())
                } else {
                    let body = health(status, if status == "green" { 0 } else { 2 });
                    format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}", body.len())
                };
                if s.write_all(resp.as_bytes()).await.is_err() || close {
                    return;
                }
            }
        }
    })
    .await
}

#[tokio::test]
async fn elasticsearch_health_colours() {
    let deep = json!({"elasticsearch": {"mode": "deep"}});
    let port = mock_es("green", false, None).await;
    let o = probe1(
        &format!("elasticsearch://127.0.0.1:{port}"),
        check(deep.clone()),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    assert_eq!(detail(&o, "server_version"), &json!("8.11.1"));
    assert_eq!(detail(&o, "cluster_name"), &json!("search"));
    assert_eq!(detail(&o, "cluster_status"), &json!("green"));
    assert_eq!(detail(&o, "number_of_nodes"), &json!(3));

    let port = mock_es("yellow", true, None).await;
    let o = probe1(
        &format!("elasticsearch://127.0.0.1:{port}"),
        check(deep.clone()),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Degraded, "{o:?}");
    assert_eq!(detail(&o, "unassigned_shards"), &json!(2));

    let port = mock_es("red", false, None).await;
    let o = probe1(
        &format!("elasticsearch://127.0.0.1:{port}"),
        check(deep.clone()),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Down, "{o:?}");
    assert_eq!(o.error_kind(), Some(ErrorKind::Unhealthy), "{o:?}");

    // Handshake mode does not look at the colour: a red cluster still answers.
    let o = probe1(
        &format!("elasticsearch://127.0.0.1:{port}"),
        check(json!({"elasticsearch": {}})),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    assert_eq!(detail(&o, "server_version"), &json!("8.11.1"));
}

#[tokio::test]
async fn elasticsearch_auth() {
    // RFC 7617 section 2 example credential: Aladdin / open sesame.
    let port = mock_es("green", false, Some("QWxhZGRpbjpvcGVuIHNlc2FtZQ==")).await;
    let target = format!("elasticsearch://127.0.0.1:{port}");
    let o = probe1(&target, check(json!({"elasticsearch": {}})), T).await;
    assert_eq!(o.outcome, Outcome::Up, "401 proves liveness: {o:?}");
    assert_eq!(detail(&o, "auth_required"), &json!(true));
    let o = probe1(
        &target,
        check(json!({"elasticsearch": {"mode": "deep"}})),
        T,
    )
    .await;
    assert_eq!(o.error_kind(), Some(ErrorKind::Auth), "{o:?}");
    let o = probe1(
        &target,
        check(json!({"elasticsearch": {"mode": "deep", "user": "Aladdin", "password": "open sesame"}})),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    let o = probe1(
        &target,
        check(json!({"elasticsearch": {"user": "Aladdin", "password": "wrong"}})),
        T,
    )
    .await;
    assert_eq!(o.error_kind(), Some(ErrorKind::Auth), "{o:?}");
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL. Spec: "Frontend/Backend Protocol", "Message Formats" (ErrorResponse 'E', fields
// S/V/C/M) and "PostgreSQL Error Codes" (57P03 cannot_connect_now).

#[tokio::test]
async fn postgres_starting_up_is_unhealthy() {
    let port = serve(|mut s| async move {
        let mut b = [0u8; 512];
        let _ = s.read(&mut b).await;
        let body = b"SFATAL\0VFATAL\0C57P03\0Mthe database system is starting up\0\0";
        let mut m = vec![b'E'];
        m.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        m.extend_from_slice(body);
        let _ = s.write_all(&m).await;
    })
    .await;
    let o = probe1(
        &format!("postgres://127.0.0.1:{port}"),
        check(json!({"postgres": {}})),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Down, "{o:?}");
    assert_eq!(o.error_kind(), Some(ErrorKind::Unhealthy), "{o:?}");
    let msg = o.error.as_ref().unwrap().message.clone();
    assert!(msg.contains("starting up"), "{msg}");
}

#[tokio::test]
async fn postgres_huge_length_is_protocol() {
    // A message type byte then a length of 1 GiB: above the 256 KiB bound → protocol at once.
    let port = serve(|mut s| async move {
        let mut b = [0u8; 512];
        let _ = s.read(&mut b).await;
        let _ = s.write_all(b"R\x40\x00\x00\x00").await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    })
    .await;
    let o = probe1(
        &format!("postgres://127.0.0.1:{port}"),
        check(json!({"postgres": {}})),
        T,
    )
    .await;
    assert_eq!(o.error_kind(), Some(ErrorKind::Protocol), "{o:?}");
}

// ---------------------------------------------------------------------------------------------
// MySQL. Spec: "MySQL Packets" and "ERR_Packet"; error 1040 ER_CON_COUNT_ERROR "Too many
// connections" sent instead of the greeting.

#[tokio::test]
async fn mysql_too_many_connections_is_unhealthy() {
    let port = serve(|mut s| async move {
        let payload = b"\xff\x10\x04Too many connections";
        let mut p = vec![payload.len() as u8, 0, 0, 0];
        p.extend_from_slice(payload);
        let _ = s.write_all(&p).await;
    })
    .await;
    let o = probe1(
        &format!("mysql://127.0.0.1:{port}"),
        check(json!({"mysql": {}})),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Down, "{o:?}");
    assert_eq!(o.error_kind(), Some(ErrorKind::Unhealthy), "{o:?}");
    assert!(
        o.error
            .as_ref()
            .unwrap()
            .message
            .contains("Too many connections")
    );
}

// ---------------------------------------------------------------------------------------------
// Redis. Spec: RESP ("Simple errors"); `-LOADING` is what a server replays while loading its
// dataset from disk.

#[tokio::test]
async fn redis_loading_is_unhealthy() {
    let port = serve(|mut s| async move {
        let mut b = [0u8; 512];
        while let Ok(n) = s.read(&mut b).await {
            if n == 0
                || s.write_all(b"-LOADING Redis is loading the dataset in memory\r\n")
                    .await
                    .is_err()
            {
                return;
            }
        }
    })
    .await;
    let o = probe1(
        &format!("redis://127.0.0.1:{port}"),
        check(json!({"redis": {}})),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Down, "{o:?}");
    assert_eq!(o.error_kind(), Some(ErrorKind::Unhealthy), "{o:?}");
}

// ---------------------------------------------------------------------------------------------
// MongoDB deep mode. Spec: "saslStart" / "saslContinue" commands (payload as BinData, the
// conversationId, `done`), SCRAM-SHA-256 per RFC 5802/7677 (the server side below is computed
// independently with ring, from the RFC's definitions), "serverStatus" (`connections.current`,
// `connections.available`) and "replSetGetStatus" (`members[n]`: state, health, optimeDate,
// self). A MOCK: no MongoDB server can be installed here.

fn hmac256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    ring::hmac::sign(&k, data).as_ref().to_vec()
}

fn sha256(data: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .to_vec()
}

/// The server half of SCRAM-SHA-256 for one conversation.
struct ScramServer {
    client_first_bare: String,
    server_first: String,
    salted: [u8; 32],
}

impl ScramServer {
    fn start(password: &str, client_first: &[u8]) -> ScramServer {
        let cf = std::str::from_utf8(client_first).unwrap();
        let bare = cf.strip_prefix("n,,").expect("gs2 header").to_string();
        let cnonce = bare.split(",r=").nth(1).expect("client nonce");
        let salt = b"portwarden-salt!";
        let server_first = format!(
            "r={cnonce}MOCKnonce,s={},i=4096",
            portwarden_wire::base64::encode(salt)
        );
        let mut salted = [0u8; 32];
        ring::pbkdf2::derive(
            ring::pbkdf2::PBKDF2_HMAC_SHA256,
            std::num::NonZeroU32::new(4096).unwrap(),
            salt,
            password.as_bytes(),
            &mut salted,
        );
        ScramServer {
            client_first_bare: bare,
            server_first,
            salted,
        }
    }

    /// Checks the client proof; returns the server-final message when it is right.
    fn finish(&self, client_final: &[u8]) -> Option<String> {
        let cf = std::str::from_utf8(client_final).ok()?;
        let (without_proof, proof) = cf.rsplit_once(",p=")?;
        let proof = portwarden_wire::base64::decode(proof)?;
        let auth = format!(
            "{},{},{without_proof}",
            self.client_first_bare, self.server_first
        );
        let stored = sha256(&hmac256(&self.salted, b"Client Key"));
        let sig = hmac256(&stored, auth.as_bytes());
        let client_key: Vec<u8> = proof.iter().zip(sig.iter()).map(|(a, b)| a ^ b).collect();
        if sha256(&client_key) != stored {
            return None;
        }
        let server_sig = hmac256(&hmac256(&self.salted, b"Server Key"), auth.as_bytes());
        Some(format!(
            "v={}",
            portwarden_wire::base64::encode(&server_sig)
        ))
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn rs_member(name: &str, state: i32, health: f64, me: bool, optime: i64) -> Vec<u8> {
    DocBuilder::new()
        .string("name", name)
        .double("health", health)
        .int32("state", state)
        .string(
            "stateStr",
            match state {
                1 => "PRIMARY",
                2 => "SECONDARY",
                _ => "(not reachable/healthy)",
            },
        )
        .datetime("optimeDate", optime)
        .bool("self", me)
        .finish()
}

/// replSetGetStatus of a secondary 3 s behind a healthy primary.
fn rs_secondary_lagging() -> Vec<u8> {
    let now = now_ms();
    DocBuilder::new()
        .string("set", "rs0")
        .int32("myState", 2)
        .array_of_documents(
            "members",
            &[
                rs_member("db1:27017", 1, 1.0, false, now),
                rs_member("db2:27017", 2, 1.0, true, now - 3000),
            ],
        )
        .int32("ok", 1)
        .finish()
}

/// replSetGetStatus of a secondary whose primary is down.
fn rs_secondary_orphaned() -> Vec<u8> {
    let now = now_ms();
    DocBuilder::new()
        .string("set", "rs0")
        .int32("myState", 2)
        .array_of_documents(
            "members",
            &[
                rs_member("db1:27017", 8, 0.0, false, now - 60_000),
                rs_member("db2:27017", 2, 1.0, true, now - 1000),
            ],
        )
        .int32("ok", 1)
        .finish()
}

/// A mock secondary with authentication on (user `monitor`, `password`).
async fn mock_mongod_deep(password: &'static str, repl: fn() -> Vec<u8>) -> u16 {
    serve(move |mut s| async move {
        let mut authed = false;
        let mut scram: Option<ScramServer> = None;
        loop {
            let mut head = [0u8; 16];
            if s.read_exact(&mut head).await.is_err() {
                return;
            }
            let len = i32::from_le_bytes(head[0..4].try_into().unwrap()) as usize;
            let id = i32::from_le_bytes(head[4..8].try_into().unwrap());
            let mut rest = vec![0u8; len - 16];
            if s.read_exact(&mut rest).await.is_err() {
                return;
            }
            let (doc, _) = portwarden_wire::bson::decode_document(&rest[5..]).unwrap();
            let cmd = doc.0.first().map(|(k, _)| k.clone()).unwrap_or_default();
            let payload = || {
                doc.get("payload")
                    .and_then(|v| v.as_binary())
                    .unwrap_or_default()
                    .to_vec()
            };
            let unauthorized = || {
                DocBuilder::new()
                    .int32("ok", 0)
                    .string("errmsg", "command requires authentication")
                    .int32("code", 13)
                    .string("codeName", "Unauthorized")
                    .finish()
            };
            let body = match cmd.as_str() {
                "hello" => secondary_hello(),
                "buildInfo" => DocBuilder::new()
                    .string("version", "7.0.4")
                    .int32("ok", 1)
                    .finish(),
                "saslStart" => {
                    assert_eq!(
                        doc.get("mechanism").and_then(|v| v.as_str()),
                        Some("SCRAM-SHA-256")
                    );
                    let srv = ScramServer::start(password, &payload());
                    let first = srv.server_first.clone();
                    scram = Some(srv);
                    DocBuilder::new()
                        .int32("conversationId", 1)
                        .bool("done", false)
                        .binary("payload", 0, first.as_bytes())
                        .int32("ok", 1)
                        .finish()
                }
                "saslContinue" => match scram.as_ref().and_then(|srv| srv.finish(&payload())) {
                    Some(v) => {
                        authed = true;
                        DocBuilder::new()
                            .int32("conversationId", 1)
                            .bool("done", true)
                            .binary("payload", 0, v.as_bytes())
                            .int32("ok", 1)
                            .finish()
                    }
                    None => DocBuilder::new()
                        .int32("ok", 0)
                        .string("errmsg", "Authentication failed.")
                        .int32("code", 18)
                        .string("codeName", "AuthenticationFailed")
                        .finish(),
                },
                "serverStatus" if authed => DocBuilder::new()
                    .string("version", "7.0.4")
                    .document(
                        "connections",
                        DocBuilder::new()
                            .int32("current", 30)
                            .int32("available", 70)
                            .finish(),
                    )
                    .int32("ok", 1)
                    .finish(),
                "replSetGetStatus" if authed => repl(),
                _ => unauthorized(),
            };
            if s.write_all(&op_msg_reply(id, body)).await.is_err() {
                return;
            }
        }
    })
    .await
}

#[tokio::test]
async fn mongodb_deep_scram_login_pool_and_replica_lag() {
    let port = mock_mongod_deep("s3cr=t,pw", rs_secondary_lagging).await;
    let target = format!("mongodb://127.0.0.1:{port}");
    let deep = json!({"mongodb": {"mode": "deep", "user": "monitor", "password": "s3cr=t,pw",
        "max_replication_lag": {"warn": "10s", "crit": "1m"}}});
    let o = probe1(&target, check(deep), T).await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    assert_eq!(detail(&o, "role"), &json!("replica"));
    assert_eq!(detail(&o, "replication_link"), &json!("up"));
    assert_eq!(detail(&o, "replication_source"), &json!("db1:27017"));
    let lag = detail(&o, "replication_lag_seconds").as_f64().unwrap();
    assert!((2.5..4.0).contains(&lag), "{lag}");
    assert_eq!(detail(&o, "connections_used"), &json!(30));
    assert_eq!(detail(&o, "connections_max"), &json!(100));
    assert_eq!(detail(&o, "pool_use_percent"), &json!(30.0));

    // Levels apply: lag 3 s ≥ warn 2 s → degraded; pool 30 % ≥ crit 25 % → down unhealthy.
    let o = probe1(
        &target,
        check(
            json!({"mongodb": {"mode": "deep", "user": "monitor", "password": "s3cr=t,pw",
        "max_replication_lag": {"warn": "2s"}}}),
        ),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Degraded, "{o:?}");
    let o = probe1(
        &target,
        check(
            json!({"mongodb": {"mode": "deep", "user": "monitor", "password": "s3cr=t,pw",
        "max_connection_use": {"crit": 25.0}}}),
        ),
        T,
    )
    .await;
    assert_eq!(o.error_kind(), Some(ErrorKind::Unhealthy), "{o:?}");

    // Wrong password: auth (and the secret never shows).
    let o = probe1(
        &target,
        check(json!({"mongodb": {"mode": "deep", "user": "monitor", "password": "nope-nope"}})),
        T,
    )
    .await;
    assert_eq!(o.error_kind(), Some(ErrorKind::Auth), "{o:?}");
    assert!(!format!("{o:?}").contains("nope-nope"));
    // No credentials on a server that wants them: auth, saying what to do.
    let o = probe1(&target, check(json!({"mongodb": {"mode": "deep"}})), T).await;
    assert_eq!(o.error_kind(), Some(ErrorKind::Auth), "{o:?}");
}

#[tokio::test]
async fn mongodb_deep_secondary_without_primary_is_unhealthy() {
    let port = mock_mongod_deep("pw", rs_secondary_orphaned).await;
    let o = probe1(
        &format!("mongodb://127.0.0.1:{port}"),
        check(json!({"mongodb": {"mode": "deep", "user": "monitor", "password": "pw"}})),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Down, "{o:?}");
    assert_eq!(o.error_kind(), Some(ErrorKind::Unhealthy), "{o:?}");
    assert_eq!(detail(&o, "replication_link"), &json!("down"));
}

// ---------------------------------------------------------------------------------------------
// MySQL 8 authentication. Spec: "Protocol::HandshakeV10", "Protocol::HandshakeResponse41",
// "Protocol::AuthSwitchRequest", "Caching SHA2 Password Authentication" (fast path:
// XOR(SHA256(pw), SHA256(SHA256(SHA256(pw)) || nonce)), then 0x01 0x03 and OK; 0x01 0x04 asks
// for full authentication). A MOCK: only MariaDB (mysql_native_password) runs here; the
// expected scramble is computed in the mock independently from the spec's formula.

fn sha256v(parts: &[&[u8]]) -> Vec<u8> {
    let mut c = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        c.update(p);
    }
    c.finish().as_ref().to_vec()
}

const NONCE: &[u8; 20] = b"0123456789abcdefghij";

fn mysql_greeting(plugin: &str) -> Vec<u8> {
    let caps: u32 = 0x0000_0200 | 0x8000 | 0x0008_0000 | 0x0000_0008 | 0x1; // 41, secure, plugin auth, db, long pw
    let mut p = vec![10];
    p.extend_from_slice(b"8.0.36\0");
    p.extend_from_slice(&42u32.to_le_bytes());
    p.extend_from_slice(&NONCE[..8]);
    p.push(0);
    p.extend_from_slice(&(caps as u16).to_le_bytes());
    p.push(255);
    p.extend_from_slice(&2u16.to_le_bytes());
    p.extend_from_slice(&((caps >> 16) as u16).to_le_bytes());
    p.push(21);
    p.extend_from_slice(&[0; 10]);
    p.extend_from_slice(&NONCE[8..]);
    p.push(0);
    p.extend_from_slice(plugin.as_bytes());
    p.push(0);
    p
}

fn mysql_packet(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_le_bytes()[..3].to_vec();
    v.push(seq);
    v.extend_from_slice(payload);
    v
}

async fn read_mysql_packet(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut h = [0u8; 4];
    s.read_exact(&mut h).await.ok()?;
    let len = u32::from_le_bytes([h[0], h[1], h[2], 0]) as usize;
    let mut p = vec![0u8; len];
    s.read_exact(&mut p).await.ok()?;
    Some(p)
}

/// The auth response inside a HandshakeResponse41 (user NUL, 1-byte length, data).
fn auth_response(p: &[u8]) -> Vec<u8> {
    let rest = &p[32..];
    let user_end = rest.iter().position(|&b| b == 0).unwrap();
    let n = rest[user_end + 1] as usize;
    rest[user_end + 2..user_end + 2 + n].to_vec()
}

/// A MySQL 8 mock whose user's password is `password`. `switch`: greet with
/// mysql_native_password and switch the client to caching_sha2_password. `full`: demand full
/// authentication (0x01 0x04) instead of the fast path.
async fn mock_mysql8(password: &'static str, switch: bool, full: bool) -> u16 {
    serve(move |mut s| async move {
        let plugin = if switch {
            "mysql_native_password"
        } else {
            "caching_sha2_password"
        };
        if s.write_all(&mysql_packet(0, &mysql_greeting(plugin)))
            .await
            .is_err()
        {
            return;
        }
        let Some(resp) = read_mysql_packet(&mut s).await else {
            return;
        };
        let mut seq = 2;
        let mut got = auth_response(&resp);
        if switch {
            let mut sw = vec![0xfe];
            sw.extend_from_slice(b"caching_sha2_password\0");
            sw.extend_from_slice(NONCE);
            sw.push(0);
            let _ = s.write_all(&mysql_packet(seq, &sw)).await;
            let Some(p) = read_mysql_packet(&mut s).await else {
                return;
            };
            seq += 2;
            got = p;
        }
        let h1 = sha256v(&[password.as_bytes()]);
        let h3 = sha256v(&[&sha256v(&[&h1]), NONCE]);
        let expected: Vec<u8> = h1.iter().zip(h3.iter()).map(|(a, b)| a ^ b).collect();
        if got != expected {
            let mut err = vec![0xff, 0x15, 0x04, b'#'];
            err.extend_from_slice(
                b"28000Access denied for user 'monitor'@'localhost' (using password: YES)",
            );
            let _ = s.write_all(&mysql_packet(seq, &err)).await;
            return;
        }
        if full {
            let _ = s.write_all(&mysql_packet(seq, &[0x01, 0x04])).await;
            let _ = read_mysql_packet(&mut s).await;
            return;
        }
        let _ = s.write_all(&mysql_packet(seq, &[0x01, 0x03])).await;
        let _ = s
            .write_all(&mysql_packet(seq + 1, &[0, 0, 0, 2, 0, 0, 0]))
            .await;
        // COM_QUIT
        let _ = read_mysql_packet(&mut s).await;
    })
    .await
}

#[tokio::test]
async fn mysql8_caching_sha2_fast_path_switch_and_full_auth() {
    let login = |port: u16, pw: &str| {
        (
            format!("mysql://127.0.0.1:{port}"),
            check(json!({"mysql": {"user": "monitor", "password": pw}})),
        )
    };
    // Fast path: our scramble is what the server computes → logged in.
    let port = mock_mysql8("s3cret", false, false).await;
    let (t, c) = login(port, "s3cret");
    let o = probe1(&t, c, T).await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    assert_eq!(detail(&o, "auth_required"), &json!(true));
    assert!(o.note.is_none(), "logged in, no refusal note: {o:?}");
    assert_eq!(detail(&o, "server_version"), &json!("8.0.36"));
    assert_eq!(detail(&o, "auth_plugin"), &json!("caching_sha2_password"));

    // AuthSwitchRequest from mysql_native_password to caching_sha2_password.
    let port = mock_mysql8("s3cret", true, false).await;
    let (t, c) = login(port, "s3cret");
    let o = probe1(&t, c, T).await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    assert!(o.note.is_none(), "{o:?}");

    // Wrong password: alive (handshake) but refused; deep: auth.
    let port = mock_mysql8("s3cret", false, false).await;
    let (t, c) = login(port, "wrong");
    let o = probe1(&t, c, T).await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    assert!(o.note.as_deref().unwrap_or("").contains("1045"), "{o:?}");
    let o = probe1(
        &t,
        check(json!({"mysql": {"mode": "deep", "user": "monitor", "password": "wrong"}})),
        T,
    )
    .await;
    assert_eq!(o.error_kind(), Some(ErrorKind::Auth), "{o:?}");

    // Full authentication over plain TCP would expose the password: refused with a hint.
    let port = mock_mysql8("s3cret", false, true).await;
    let (t, _) = login(port, "s3cret");
    let o = probe1(
        &t,
        check(json!({"mysql": {"mode": "deep", "user": "monitor", "password": "s3cret"}})),
        T,
    )
    .await;
    assert_eq!(o.error_kind(), Some(ErrorKind::Auth), "{o:?}");
    assert!(o.error.as_ref().unwrap().message.contains("TLS"), "{o:?}");
}
