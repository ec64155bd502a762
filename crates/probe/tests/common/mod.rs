//! Shared helpers for the probe integration tests.
#![allow(dead_code)]

use std::time::Duration;

use portwarden_core::Observation;
use portwarden_probe::{CheckSpec, ProbeSpec, Prober, Resolver, ResolverSpec};

pub fn prober() -> Prober {
    Prober::new(
        Resolver::new(&ResolverSpec::System).expect("resolver"),
        "local",
    )
}

/// Builds a check from YAML-ish JSON (`{"tcp": {...}}` or `{"send_expect": {...}}`).
pub fn check(v: serde_json::Value) -> CheckSpec {
    serde_json::from_value(v).expect("check spec")
}

pub async fn probe(target: &str, check: CheckSpec, timeout: Duration) -> Vec<Observation> {
    let spec =
        ProbeSpec::new(target, target.parse().expect("target"), check, timeout).expect("spec");
    prober().probe(&spec).await
}

pub async fn probe1(target: &str, check: CheckSpec, timeout: Duration) -> Observation {
    let mut v = probe(target, check, timeout).await;
    assert_eq!(v.len(), 1, "expected one observation: {v:?}");
    v.remove(0)
}

pub fn kind(o: &Observation) -> String {
    o.error
        .as_ref()
        .map(|e| e.kind.to_string())
        .unwrap_or_else(|| "-".into())
}
