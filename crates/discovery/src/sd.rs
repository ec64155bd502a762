//! The Prometheus service discovery format (`file_sd`, `http_sd`), accepted as is:
//! a list of groups, each `{"targets": ["host:port", ...], "labels": {"k": "v"}}`.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::target::{Target, parse_hostport};

#[derive(Debug, Deserialize)]
struct Group {
    #[serde(default)]
    targets: Vec<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

fn targets_of(groups: Vec<Group>) -> Result<Vec<Target>, String> {
    let mut out = Vec::new();
    for (i, g) in groups.into_iter().enumerate() {
        let labels = g.labels.unwrap_or_default();
        for t in g.targets {
            let (address, port) =
                parse_hostport(&t).map_err(|e| format!("group {}: {e}", i + 1))?;
            out.push(Target {
                address,
                port,
                transport: "tcp".into(),
                labels: labels.clone(),
                meta: BTreeMap::new(),
            });
        }
    }
    Ok(out)
}

/// Parses JSON groups (`http_sd`, `*.json` files).
pub fn parse_json(bytes: &[u8]) -> Result<Vec<Target>, String> {
    let groups: Vec<Group> = serde_json::from_slice(bytes).map_err(|e| {
        format!(
            "not Prometheus sd JSON (a list of {{\"targets\": [...], \"labels\": {{...}}}}): {e}"
        )
    })?;
    targets_of(groups)
}

/// Parses YAML groups (`*.yaml` files).
pub fn parse_yaml(text: &str) -> Result<Vec<Target>, String> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let groups: Vec<Group> = serde_saphyr::from_str(text).map_err(|e| {
        let first = e.to_string();
        let first = first.lines().next().unwrap_or("invalid YAML").to_string();
        format!("not Prometheus sd YAML (a list of `- targets: [...]` with `labels:`): {first}")
    })?;
    targets_of(groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_examples() {
        let j = br#"[{"targets": ["10.0.10.2:9100", "10.0.10.3:9100"], "labels": {"__meta_datacenter": "london", "job": "node"}}, {"targets": ["[::1]:80"]}]"#;
        let t = parse_json(j).unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t[0].labels["job"], "node");
        assert_eq!(t[2].address, "::1");
        let y = "- targets: ['db1:5432']\n  labels:\n    env: prod\n";
        let t = parse_yaml(y).unwrap();
        assert_eq!(t[0].port, Some(5432));
        assert_eq!(parse_json(b"[]").unwrap(), vec![]);
        assert!(parse_json(b"{}").is_err());
        assert!(parse_json(br#"[{"targets": ["h:x"]}]"#).is_err());
        assert!(parse_yaml("").unwrap().is_empty());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes(b in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = parse_json(&b);
            let _ = parse_yaml(&String::from_utf8_lossy(&b));
        }
    }
}
