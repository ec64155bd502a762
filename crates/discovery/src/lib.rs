//! Portwarden's dynamic inventory: monitors that follow files written by infrastructure-as-code,
//! Prometheus `http_sd`, DNS (SRV, A/AAAA) and Kubernetes.
//!
//! A `discover:` entry is a source plus a monitor template:
//!
//! ```
//! let text = r#"
//! discover:
//!   - name: pg
//!     source: {type: dns, names: [_postgresql._tcp.db.internal], server: "127.0.0.1:5353"}
//!     template:
//!       name: "pg-{{ address }}-{{ port }}"
//!       target: "postgres://{{ hostport }}"
//!       tier: critical
//! "#;
//! let loaded = portwarden_discovery::load_str(text, "example.yaml", std::path::Path::new(".")).unwrap();
//! assert_eq!(loaded.discover[0].name, "pg");
//! ```
//!
//! [`Discovery`] runs the sources and feeds the engine through `Engine::apply_config_with`;
//! [`churn`] holds the rules (pause, grace, retire, caps) as pure, tested state.

pub mod churn;
pub mod manager;
pub mod metrics;
pub mod sd;
pub mod sources;
pub mod spec;
pub mod target;
pub mod template;

pub use manager::{Discovery, Inventory, Prepared, SourceStatus, inventory};
pub use metrics::DiscoveryMetrics;
pub use spec::{DiscoverSpec, Loaded, load_file, load_str};
pub use target::Target;
