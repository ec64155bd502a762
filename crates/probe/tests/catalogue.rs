//! Every protocol kind of this branch is in the catalogue, reachable from its URL scheme with
//! its default port, prepares with defaults, and refuses unknown options.

use portwarden_core::Transport;
use portwarden_probe::{CATALOGUE, CheckSpec};
use serde_json::json;

const KINDS: &[(&str, u16, Transport)] = &[
    ("amqp", 5672, Transport::Tcp),
    ("kafka", 9092, Transport::Tcp),
    ("nats", 4222, Transport::Tcp),
    ("mqtt", 1883, Transport::Tcp),
    ("ssh", 22, Transport::Tcp),
    ("smtp", 25, Transport::Tcp),
    ("imap", 143, Transport::Tcp),
    ("pop3", 110, Transport::Tcp),
    ("ftp", 21, Transport::Tcp),
    ("dns", 53, Transport::Udp),
    ("ntp", 123, Transport::Udp),
    ("snmp", 161, Transport::Udp),
];

#[test]
fn kinds_schemes_ports_defaults() {
    for (kind, port, transport) in KINDS {
        let info = CATALOGUE
            .iter()
            .find(|i| i.name == *kind)
            .unwrap_or_else(|| panic!("{kind} missing from CATALOGUE"));
        assert_eq!(info.default_port, Some(*port), "{kind}");
        assert_eq!(info.transport, *transport, "{kind}");
        assert!(!info.options.is_empty(), "{kind} documents its options");
        let spec = CheckSpec::for_scheme(kind).unwrap_or_else(|| panic!("{kind}:// scheme"));
        assert_eq!(spec.kind(), *kind);
        spec.prepare()
            .unwrap_or_else(|e| panic!("{kind} defaults prepare: {e}"));
        // Unknown options are refused (typos must not be silently ignored).
        let bad: Result<CheckSpec, _> =
            serde_json::from_value(json!({ *kind: {"no_such_option": 1} }));
        assert!(bad.is_err(), "{kind} accepts an unknown option");
    }
    // DNS over TCP reports the TCP transport.
    let dns: CheckSpec = serde_json::from_value(json!({"dns": {"transport": "tcp"}})).unwrap();
    assert_eq!(dns.transport(), Transport::Tcp);
}

#[test]
fn secrets_never_serialize() {
    for v in [
        json!({"amqp": {"mode": "deep", "user": "u", "password": "hunter2"}}),
        json!({"nats": {"mode": "deep", "token": "hunter2"}}),
        json!({"mqtt": {"mode": "deep", "user": "u", "password": "hunter2"}}),
        json!({"smtp": {"mode": "deep", "user": "u", "password": "hunter2"}}),
        json!({"snmp": {"community": "hunter2"}}),
    ] {
        let spec: CheckSpec = serde_json::from_value(v).unwrap();
        let out = serde_json::to_string(&spec).unwrap() + &format!("{spec:?}");
        assert!(!out.contains("hunter2"), "{out}");
    }
}

#[test]
fn option_errors_name_the_field() {
    for (v, field) in [
        (json!({"amqp": {"mode": "deep", "user": "u"}}), "password"),
        (json!({"amqp": {"user": "u", "password": "p"}}), "mode"),
        (
            json!({"mqtt": {"protocol_version": "3.1"}}),
            "protocol_version",
        ),
        (json!({"kafka": {"min_brokers": 3}}), "min_brokers"),
        (json!({"dns": {"query_type": "BOGUS"}}), "query_type"),
        (json!({"dns": {"rcode": "WHATEVER"}}), "rcode"),
        (
            json!({"dns": {"name": "x.test", "answer_regex": "("}}),
            "answer_regex",
        ),
        (json!({"ntp": {"max_stratum": 16}}), "max_stratum"),
        (json!({"snmp": {"oids": ["1.3.x"]}}), "oids"),
        (json!({"snmp": {"version": "3"}}), "version"),
        (json!({"ssh": {"host_key": "SHA256:short"}}), "host_key"),
        (
            json!({"ssh": {"host_key": "SHA256:uH0Zc7b3m0nH7VbF3m8nQ5QX4D7o6tO1pL1rJd2KqZ8", "key_exchange": false}}),
            "key_exchange",
        ),
    ] {
        let spec: CheckSpec = serde_json::from_value(v.clone()).unwrap();
        let err = spec
            .prepare()
            .err()
            .unwrap_or_else(|| panic!("{v} should not prepare"));
        assert_eq!(err.field, field, "{v}: {err}");
    }
}
