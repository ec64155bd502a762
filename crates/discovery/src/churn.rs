//! Churn rules for one `discover:` entry, as pure state (no I/O, no clock of its own):
//! - a new target gets a monitor (the engine starts it `pending`);
//! - a target missing from a successful refresh is paused at once (never probed, so never
//!   paged as `down`) and retired after `grace` refreshes without it; it resumes with its
//!   state if it comes back in time;
//! - a refresh above `max_monitors` is refused whole (the previous set stays);
//! - a target whose template fails, or whose name is taken, is skipped and reported; a known
//!   target keeps its monitor if a re-render (config reload) fails.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, SecondsFormat, Utc};
use portwarden_config::{Config, Level, Monitor};

use crate::spec::DiscoverSpec;
use crate::target::Target;

/// A discovered monitor and its bookkeeping.
#[derive(Debug, Clone)]
pub struct Entry {
    pub target: Target,
    pub monitor: Monitor,
    /// When it went missing from the source (paused since).
    pub absent_since: Option<DateTime<Utc>>,
    /// Refreshes (or watch ticks) it has been missing for.
    pub missing: u32,
}

/// What one step changed (names of monitors).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Change {
    pub added: Vec<String>,
    pub updated: Vec<String>,
    pub paused: Vec<String>,
    pub resumed: Vec<String>,
    pub retired: Vec<String>,
    pub problems: Vec<String>,
}

impl Change {
    /// Whether the monitor list changed.
    pub fn touches_monitors(&self) -> bool {
        !(self.added.is_empty()
            && self.updated.is_empty()
            && self.paused.is_empty()
            && self.resumed.is_empty()
            && self.retired.is_empty())
    }
}

/// Renders one target into a monitor.
pub fn render_monitor(spec: &DiscoverSpec, config: &Config, t: &Target) -> Result<Monitor, String> {
    let node = spec.template.render(&spec.name, t).map_err(|d| {
        format!(
            "target `{}`: {}",
            t.hostport(),
            first_line(&d.render(&spec.file))
        )
    })?;
    let (mut m, _) =
        portwarden_config::monitor_from_node(config, &node, &spec.file).map_err(|ds| {
            let errs: Vec<String> = ds
                .iter()
                .filter(|d| d.level == Level::Error)
                .map(|d| first_line(&d.render(&spec.file)))
                .collect();
            format!("target `{}`: {}", t.hostport(), errs.join("; "))
        })?;
    m.source = Some(spec.name.clone());
    m.defined_at = format!("{} (discover `{}`)", m.defined_at, spec.name);
    Ok(m)
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_string()
}

/// The state of one entry.
#[derive(Debug, Clone, Default)]
pub struct BlockState {
    pub entries: BTreeMap<String, Entry>,
    by_target: HashMap<Target, String>,
}

impl BlockState {
    /// Applies a successful look at the source. `taken(name)` says whether another owner (a
    /// written monitor, another entry) has the name, and who. `refresh`: counts toward the
    /// grace period. `Err` is a refused refresh (above the cap): nothing changed.
    pub fn apply(
        &mut self,
        spec: &DiscoverSpec,
        config: &Config,
        taken: &dyn Fn(&str) -> Option<String>,
        mut targets: Vec<Target>,
        refresh: bool,
        now: DateTime<Utc>,
    ) -> Result<Change, String> {
        targets.sort();
        targets.dedup();
        if targets.len() > spec.max_monitors {
            return Err(format!(
                "source returned {} targets, above `max_monitors: {}`; refresh refused, the previous {} monitor(s) are kept. Raise `max_monitors` at {} or narrow the source",
                targets.len(),
                spec.max_monitors,
                self.entries.len(),
                spec.defined_at
            ));
        }
        let mut change = Change::default();
        let present: HashSet<&Target> = targets.iter().collect();
        for t in &targets {
            if let Some(name) = self.by_target.get(t) {
                if let Some(e) = self.entries.get_mut(name)
                    && e.absent_since.take().is_some()
                {
                    e.missing = 0;
                    change.resumed.push(name.clone());
                }
                continue;
            }
            let m = match render_monitor(spec, config, t) {
                Ok(m) => m,
                Err(e) => {
                    change.problems.push(e);
                    continue;
                }
            };
            if let Some(owner) = taken(&m.name) {
                change.problems.push(format!(
                    "target `{}`: monitor name `{}` is taken by {owner}; skipped (make the template's name unique)",
                    t.hostport(),
                    m.name
                ));
                continue;
            }
            let name = m.name.clone();
            match self.entries.get(&name) {
                Some(old) if present.contains(&old.target) => {
                    change.problems.push(format!(
                        "targets `{}` and `{}` both make the monitor name `{name}`; the second is skipped (put `{{{{ port }}}}` or more labels in the template's name)",
                        old.target.hostport(),
                        t.hostport()
                    ));
                    continue;
                }
                Some(old) => {
                    // The same monitor with changed target data (labels, facts): replace.
                    let was_absent = old.absent_since.is_some();
                    self.by_target.remove(&old.target.clone());
                    if was_absent {
                        change.resumed.push(name.clone());
                    }
                    change.updated.push(name.clone());
                }
                None => change.added.push(name.clone()),
            }
            self.by_target.insert(t.clone(), name.clone());
            self.entries.insert(
                name,
                Entry {
                    target: t.clone(),
                    monitor: m,
                    absent_since: None,
                    missing: 0,
                },
            );
        }
        let gone: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| !present.contains(&e.target))
            .map(|(n, _)| n.clone())
            .collect();
        for name in gone {
            let Some(e) = self.entries.get_mut(&name) else {
                continue;
            };
            if e.absent_since.is_none() {
                e.absent_since = Some(now);
                change.paused.push(name.clone());
            }
            if refresh {
                e.missing += 1;
            }
        }
        if refresh {
            self.retire_due(spec, &mut change);
        }
        Ok(change)
    }

    /// A refresh tick of a watch source: absent targets count one more refresh.
    pub fn tick(&mut self, spec: &DiscoverSpec) -> Change {
        let mut change = Change::default();
        for e in self.entries.values_mut() {
            if e.absent_since.is_some() {
                e.missing += 1;
            }
        }
        self.retire_due(spec, &mut change);
        change
    }

    fn retire_due(&mut self, spec: &DiscoverSpec, change: &mut Change) {
        let due: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| e.absent_since.is_some() && e.missing >= spec.grace)
            .map(|(n, _)| n.clone())
            .collect();
        for name in due {
            if let Some(e) = self.entries.remove(&name) {
                self.by_target.remove(&e.target);
                change.paused.retain(|n| n != &name);
                change.retired.push(name);
            }
        }
    }

    /// Renders every known target again (the template or the config changed). A target whose
    /// render now fails keeps its monitor and is reported.
    pub fn rerender(
        &mut self,
        spec: &DiscoverSpec,
        config: &Config,
        taken: &dyn Fn(&str) -> Option<String>,
    ) -> Change {
        let mut change = Change::default();
        let old = std::mem::take(&mut self.entries);
        self.by_target.clear();
        for (name, mut e) in old {
            if let Some(owner) = taken(&name) {
                // A written monitor (or an earlier entry) now has this name: it wins.
                change.problems.push(format!(
                    "target `{}`: monitor name `{name}` is now taken by {owner}; the discovered monitor is removed",
                    e.target.hostport()
                ));
                change.retired.push(name);
                continue;
            }
            match render_monitor(spec, config, &e.target) {
                Ok(m) if m.name == name => {
                    if m != e.monitor {
                        change.updated.push(name.clone());
                    }
                    e.monitor = m;
                }
                Ok(m) if taken(&m.name).is_none() && !self.entries.contains_key(&m.name) => {
                    change.retired.push(name.clone());
                    change.added.push(m.name.clone());
                    e.monitor = m;
                }
                Ok(m) => change.problems.push(format!(
                    "target `{}`: monitor name `{}` is taken; it keeps its old name `{name}`",
                    e.target.hostport(),
                    m.name
                )),
                Err(err) => change
                    .problems
                    .push(format!("{err}; the monitor keeps its previous settings")),
            }
            let n = e.monitor.name.clone();
            self.by_target.insert(e.target.clone(), n.clone());
            self.entries.insert(n, e);
        }
        change
    }

    /// Targets currently present (for the cache).
    pub fn present(&self) -> Vec<Target> {
        let mut v: Vec<Target> = self
            .entries
            .values()
            .filter(|e| e.absent_since.is_none())
            .map(|e| e.target.clone())
            .collect();
        v.sort();
        v
    }

    pub fn active(&self) -> usize {
        self.entries
            .values()
            .filter(|e| e.absent_since.is_none())
            .count()
    }

    pub fn paused(&self) -> usize {
        self.entries.len() - self.active()
    }

    /// The monitors to run (paused ones disabled) with the reason of each pause.
    pub fn monitors(
        &self,
        spec: &DiscoverSpec,
        out: &mut Vec<Monitor>,
        paused: &mut HashMap<String, String>,
    ) {
        for (name, e) in &self.entries {
            let mut m = e.monitor.clone();
            if let Some(since) = e.absent_since {
                m.enabled = false;
                paused.insert(
                    name.clone(),
                    format!(
                        "gone from discover `{}` since {}; paused (not probed), retired after {} refresh(es) without it ({} so far) unless it returns",
                        spec.name,
                        since.to_rfc3339_opts(SecondsFormat::Secs, true),
                        spec.grace,
                        e.missing
                    ),
                );
            }
            out.push(m);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn spec(yaml_extra: &str) -> (Config, DiscoverSpec) {
        let text = format!(
            "monitors:\n  - name: static\n    target: tcp://127.0.0.1:1\ndiscover:\n  - name: d\n    source: {{type: files, dir: .}}\n{yaml_extra}    template:\n      name: \"d-{{{{ hostport }}}}\"\n      check: tcp\n"
        );
        let l = crate::spec::load_str(&text, "t.yaml", Path::new(".")).unwrap();
        (l.config, l.discover[0].clone())
    }

    fn t(port: u16) -> Target {
        Target::new("127.0.0.1", Some(port))
    }

    #[test]
    fn add_pause_resume_retire() {
        let (c, s) = spec("");
        let none = |_: &str| None;
        let mut b = BlockState::default();
        let now = Utc::now();
        let ch = b.apply(&s, &c, &none, vec![t(1), t(2)], true, now).unwrap();
        assert_eq!(ch.added, vec!["d-127.0.0.1:1", "d-127.0.0.1:2"]);
        // Unchanged: nothing happens.
        let ch = b.apply(&s, &c, &none, vec![t(2), t(1)], true, now).unwrap();
        assert!(!ch.touches_monitors(), "{ch:?}");
        // Gone once: paused, not retired (grace 2).
        let ch = b.apply(&s, &c, &none, vec![t(1)], true, now).unwrap();
        assert_eq!(ch.paused, vec!["d-127.0.0.1:2"]);
        let mut ms = Vec::new();
        let mut notes = HashMap::new();
        b.monitors(&s, &mut ms, &mut notes);
        assert!(
            !ms.iter()
                .find(|m| m.name == "d-127.0.0.1:2")
                .unwrap()
                .enabled
        );
        assert!(
            notes["d-127.0.0.1:2"].contains("retired after 2"),
            "{notes:?}"
        );
        // Back: resumed.
        let ch = b.apply(&s, &c, &none, vec![t(1), t(2)], true, now).unwrap();
        assert_eq!(ch.resumed, vec!["d-127.0.0.1:2"]);
        // Gone twice: retired.
        b.apply(&s, &c, &none, vec![t(1)], true, now).unwrap();
        let ch = b.apply(&s, &c, &none, vec![t(1)], true, now).unwrap();
        assert_eq!(ch.retired, vec!["d-127.0.0.1:2"]);
        assert_eq!(b.entries.len(), 1);
        // A watch source: change events pause; ticks count.
        let ch = b.apply(&s, &c, &none, vec![], false, now).unwrap();
        assert_eq!(ch.paused.len(), 1);
        assert!(b.tick(&s).retired.is_empty());
        assert_eq!(b.tick(&s).retired, vec!["d-127.0.0.1:1"]);
    }

    #[test]
    fn cap_refuses_and_keeps() {
        let (c, s) = spec("    max_monitors: 3\n");
        let none = |_: &str| None;
        let mut b = BlockState::default();
        b.apply(&s, &c, &none, vec![t(1), t(2)], true, Utc::now())
            .unwrap();
        let e = b
            .apply(&s, &c, &none, (1..=100).map(t).collect(), true, Utc::now())
            .unwrap_err();
        assert!(
            e.contains("100 targets") && e.contains("max_monitors: 3") && e.contains("previous 2"),
            "{e}"
        );
        assert_eq!(b.entries.len(), 2);
        assert_eq!(b.active(), 2);
    }

    #[test]
    fn collisions_and_render_errors() {
        let (c, s) = spec("");
        let taken = |n: &str| {
            (n == "d-127.0.0.1:9").then(|| "monitor `d-127.0.0.1:9` in the config".to_string())
        };
        let mut b = BlockState::default();
        let mut a = t(1);
        a.labels.insert("x".into(), "1".into());
        let ch = b
            .apply(
                &s,
                &c,
                &taken,
                vec![t(1), a.clone(), t(9)],
                true,
                Utc::now(),
            )
            .unwrap();
        assert_eq!(ch.added, vec!["d-127.0.0.1:1"]);
        assert_eq!(ch.problems.len(), 2, "{ch:?}");
        // Label change on the only target: the monitor is updated in place, not retired.
        let ch = b.apply(&s, &c, &taken, vec![a], true, Utc::now()).unwrap();
        assert_eq!(ch.updated, vec!["d-127.0.0.1:1"], "{ch:?}");
        assert!(ch.paused.is_empty() && ch.retired.is_empty(), "{ch:?}");
        // A reload where a written monitor takes the name: the written one wins.
        let taken_now = |n: &str| {
            (n == "d-127.0.0.1:1").then(|| "monitor `d-127.0.0.1:1` in the config".to_string())
        };
        let ch = b.rerender(&s, &c, &taken_now);
        assert_eq!(ch.retired, vec!["d-127.0.0.1:1"]);
        assert!(b.entries.is_empty());
    }
}
