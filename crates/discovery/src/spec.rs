//! `discover:` entries: parsing and checking (every problem located), and loading a config file
//! together with its discovery entries.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use portwarden_config::de::{Sink, from_node};
use portwarden_config::node::{self, NodeKind};
use portwarden_config::{Config, Diagnostic, Diagnostics, Level, Loc, Node};
use portwarden_core::duration::serde_human::option as opt_dur;
use serde::Deserialize;

use crate::sources::SourceSpec;
use crate::template::MonitorTemplate;

/// Default refresh interval.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(30);
/// Default grace: refreshes a vanished target is kept (paused) before it is retired.
pub const DEFAULT_GRACE: u32 = 2;
/// Default cap on monitors one entry may create.
pub const DEFAULT_MAX_MONITORS: usize = 10_000;
/// Hard ceiling for `max_monitors`.
pub const MAX_MONITORS_CEILING: usize = 1_000_000;

/// One `discover:` entry, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscoverSpec {
    pub name: String,
    pub source: SourceSpec,
    pub refresh: Duration,
    pub grace: u32,
    pub max_monitors: usize,
    pub template: MonitorTemplate,
    /// `file:line` of the entry.
    pub defined_at: String,
    /// The config file (for messages).
    pub file: String,
    /// Relative paths of the source start here (the config file's directory).
    pub base_dir: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBlock {
    name: String,
    source: SourceSpec,
    #[serde(default, with = "opt_dur")]
    refresh: Option<Duration>,
    #[serde(default)]
    grace: Option<u32>,
    #[serde(default)]
    max_monitors: Option<usize>,
    #[serde(default)]
    #[allow(dead_code)]
    template: Option<serde::de::IgnoredAny>,
}

/// A config with its discovery entries.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub file: String,
    /// The config; `config.monitors` holds only the monitors written under `monitors:`.
    pub config: Config,
    pub discover: Vec<DiscoverSpec>,
    pub warnings: Vec<Diagnostic>,
}

impl Loaded {
    pub fn render_warnings(&self) -> String {
        self.warnings
            .iter()
            .map(|w| w.render(&self.file))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Reads and checks a config file with its `discover:` entries.
pub fn load_file(path: &Path) -> Result<Loaded, Diagnostics> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| Diagnostics {
        file: file.clone(),
        items: vec![
            Diagnostic::error(None, format!("cannot read the config file: {e}"))
                .hint("check the path given with --config and its permissions"),
        ],
    })?;
    let base = path
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    load_str(&text, &file, &base)
}

/// Checks config text. `file` is used in messages; `base_dir` anchors relative paths.
pub fn load_str(text: &str, file: &str, base_dir: &Path) -> Result<Loaded, Diagnostics> {
    let loaded = portwarden_config::load_str(text, file);
    let mut items = match &loaded {
        Ok(l) => l.warnings.clone(),
        Err(d) => d.items.clone(),
    };
    let mut specs = Vec::new();
    if let Ok(root) = node::parse(text)
        && let Some(section) = root.get("discover")
        && let NodeKind::Seq(blocks) = &section.kind
    {
        let static_names: HashMap<&str, u32> = match &loaded {
            Ok(l) => l
                .config
                .monitors
                .iter()
                .map(|m| (m.name.as_str(), 0))
                .collect(),
            Err(_) => HashMap::new(),
        };
        let mut seen: HashMap<String, Loc> = HashMap::new();
        for b in blocks {
            if !matches!(b.kind, NodeKind::Map(_)) {
                continue; // reported by the config crate
            }
            if let Some(s) = parse_block(b, file, base_dir, &mut items) {
                if let Some(first) = seen.get(&s.name) {
                    items.push(
                        Diagnostic::error(
                            b.loc_of("name"),
                            format!(
                                "duplicate discover name `{}` (first at line {})",
                                s.name, first.line
                            ),
                        )
                        .hint("each `discover:` entry needs its own name"),
                    );
                    continue;
                }
                seen.insert(s.name.clone(), b.loc_of("name"));
                if static_names.contains_key(s.name.as_str()) {
                    // Harmless, but a common source of confusion in messages.
                    items.push(
                        Diagnostic::warning(
                            b.loc_of("name"),
                            format!("discover name `{}` is also a monitor name", s.name),
                        )
                        .hint("give the source a distinct name"),
                    );
                }
                specs.push(s);
            }
        }
        // Check templates with a sample target once the rest of the config is valid.
        if let Ok(l) = &loaded {
            for s in &specs {
                trial(s, &l.config, file, &mut items);
            }
        }
    }
    let mut all = Diagnostics {
        file: file.to_string(),
        items,
    };
    all.sort();
    all.items.dedup();
    match loaded {
        Ok(l) if !all.has_errors() => Ok(Loaded {
            file: file.to_string(),
            config: l.config,
            discover: specs,
            warnings: all.items,
        }),
        _ => Err(all),
    }
}

fn parse_block(
    b: &Node,
    file: &str,
    base_dir: &Path,
    diags: &mut Vec<Diagnostic>,
) -> Option<DiscoverSpec> {
    let sink = Sink::default();
    let before = diags.len();
    let raw = from_node::<RawBlock>(b, &sink);
    diags.extend(sink.take());
    let template = match b.get("template") {
        Some(t) => match MonitorTemplate::compile(t) {
            Ok(t) => Some(t),
            Err(d) => {
                diags.extend(d);
                None
            }
        },
        None => {
            diags.push(
                Diagnostic::error(b.loc, "a `discover` entry needs `template:`")
                    .hint("add `template:` with at least `check:` (name and target default to `{{ source }}-{{ hostport }}` and `{{ hostport }}`)"),
            );
            None
        }
    };
    let raw = match raw {
        Ok(r) => r,
        Err(e) => {
            diags.push(e.into_diagnostic());
            return None;
        }
    };
    let name = raw.name.trim().to_string();
    if name.is_empty()
        || name.len() > 100
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        diags.push(
            Diagnostic::error(
                b.loc_of("name"),
                format!("discover name `{}` must be 1-100 letters, digits, `-`, `_` or `.`", raw.name),
            )
            .hint("use a short name such as `pg-replicas`; it appears in monitor names, metrics and health"),
        );
    }
    if let Some(src) = b.get("source") {
        diags.extend(raw.source.check(src));
    }
    let refresh = raw.refresh.unwrap_or(DEFAULT_REFRESH);
    if refresh < Duration::from_millis(100) {
        diags.push(
            Diagnostic::error(b.loc_of("refresh"), "`refresh` must be at least 100ms")
                .hint("30s suits most sources; the Kubernetes watch sees changes at once anyway"),
        );
    }
    let grace = raw.grace.unwrap_or(DEFAULT_GRACE);
    if grace == 0 {
        diags.push(
            Diagnostic::error(b.loc_of("grace"), "`grace` must be at least 1 refresh")
                .hint("1 retires a target at the first refresh without it; the default 2 rides out a flapping answer"),
        );
    }
    let max_monitors = raw.max_monitors.unwrap_or(DEFAULT_MAX_MONITORS);
    if max_monitors == 0 || max_monitors > MAX_MONITORS_CEILING {
        diags.push(
            Diagnostic::error(
                b.loc_of("max_monitors"),
                format!("`max_monitors` must be 1-{MAX_MONITORS_CEILING}"),
            )
            .hint("the default is 10000"),
        );
    }
    if diags[before..].iter().any(|d| d.level == Level::Error) {
        return None;
    }
    Some(DiscoverSpec {
        name,
        source: raw.source,
        refresh,
        grace,
        max_monitors,
        template: template?,
        defined_at: format!("{file}:{}", b.loc.line),
        file: file.to_string(),
        base_dir: base_dir.to_path_buf(),
    })
}

/// Renders the template for a sample target and resolves it like a monitor: errors that do
/// not depend on target data (a bad check option, a target without port) show at load time.
fn trial(s: &DiscoverSpec, config: &Config, file: &str, diags: &mut Vec<Diagnostic>) {
    let sample = s.source.sample();
    let note = " (checked with placeholder values for `labels`/`meta`; real targets may differ)";
    let soft = s.template.uses_target_data;
    let push = |d: Diagnostic, diags: &mut Vec<Diagnostic>| {
        let mut d = d;
        d.message = format!("discover `{}`: {}", s.name, d.message);
        if soft && d.level == Level::Error {
            d.level = Level::Warning;
            d.message.push_str(note);
        }
        diags.push(d);
    };
    match s.template.render_sample(&s.name, &sample) {
        Ok(node) => {
            if let Err(errs) = portwarden_config::monitor_from_node(config, &node, file) {
                for d in errs {
                    push(d, diags);
                }
            }
        }
        Err(d) => push(d, diags),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Loaded, Diagnostics> {
        load_str(text, "t.yaml", Path::new("."))
    }

    #[test]
    fn parses_and_locates() {
        let ok = load("discover:\n  - name: pg\n    source: {type: dns, names: [_pg._tcp.x], server: '127.0.0.1:53'}\n    refresh: 5s\n    template:\n      name: \"pg-{{ address }}\"\n      check: postgres\n").unwrap();
        assert_eq!(ok.discover.len(), 1);
        assert_eq!(ok.discover[0].refresh, Duration::from_secs(5));
        assert_eq!(ok.discover[0].grace, 2);
        assert_eq!(ok.discover[0].max_monitors, 10_000);

        let e = load("discover:\n  - name: pg\n    source: {type: dnss, names: [x]}\n    template: {check: tcp}\n").unwrap_err().to_string();
        assert!(e.contains("t.yaml:3:") && e.contains("dns"), "{e}");

        let e = load("discover:\n  - name: pg\n    source: {type: dns, names: [x], record: a}\n    template:\n      name: \"{{ adress }}\"\n").unwrap_err().to_string();
        assert!(e.contains("t.yaml:3:") && e.contains("needs `port`"), "{e}");
        assert!(
            e.contains("t.yaml:5:") && e.contains("unknown variable `adress`"),
            "{e}"
        );

        // The sample render resolves the monitor: a bad check option is located at the template.
        let e = load("discover:\n  - name: f\n    source: {type: files, dir: .}\n    template:\n      check:\n        type: send_expect\n        steps:\n          - expect_regex: \"(\"\n").unwrap_err().to_string();
        assert!(e.contains("t.yaml:8:") && e.contains("discover `f`"), "{e}");

        let e = load("discover:\n  - name: a\n    source: {type: files, dir: .}\n    template: {}\n    grace: 0\n    max_monitors: 0\n    refreshh: 1s\n").unwrap_err().to_string();
        assert!(
            e.contains("t.yaml:5:") && e.contains("t.yaml:6:") && e.contains("t.yaml:7:"),
            "{e}"
        );
        assert!(e.contains("did you mean `refresh`"), "{e}");

        // With target data in the template, a sample failure is only a warning.
        let w = load("discover:\n  - name: h\n    source: {type: http, url: 'http://127.0.0.1:1/sd'}\n    template:\n      target: \"{{ labels.host }}\"\n").unwrap();
        let w = w.render_warnings();
        assert!(
            w.contains("t.yaml:5:") && w.contains("no port") && w.contains("placeholder"),
            "{w}"
        );
    }
}
