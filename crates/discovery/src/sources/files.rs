//! `files`: Prometheus `file_sd` groups (YAML or JSON) in the files of a directory that match
//! `include` globs — what Terraform, Ansible or Helm write. Read every refresh; a file that
//! fails to parse (half written, broken) keeps its last good targets and is reported.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use globset::{GlobSet, GlobSetBuilder};
use portwarden_config::Diagnostic;
use portwarden_config::node::Node;
use serde::Deserialize;

use super::{Poll, Snapshot, SourceCx};
use crate::sd;
use crate::target::Target;

/// Largest file read (bytes).
const MAX_FILE: u64 = 64 * 1024 * 1024;
/// Most files looked at per refresh.
const MAX_FILES: usize = 10_000;
/// Deepest directory level walked.
const MAX_DEPTH: usize = 16;

fn default_include() -> Vec<String> {
    vec!["*.yaml".into(), "*.yml".into(), "*.json".into()]
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesSource {
    /// The directory (relative to the config file's directory).
    pub dir: String,
    /// Globs relative to `dir` (`*` stays within one directory, `**` crosses them); default
    /// `*.yaml`, `*.yml`, `*.json`.
    #[serde(default = "default_include")]
    pub include: Vec<String>,
    /// Globs of files to skip.
    #[serde(default)]
    pub exclude: Vec<String>,
}

fn globset(globs: &[String]) -> Result<GlobSet, (usize, String)> {
    let mut b = GlobSetBuilder::new();
    for (i, g) in globs.iter().enumerate() {
        let glob = globset::GlobBuilder::new(g)
            .literal_separator(true)
            .build()
            .map_err(|e| (i, e.to_string()))?;
        b.add(glob);
    }
    b.build().map_err(|e| (0, e.to_string()))
}

impl FilesSource {
    pub fn check(&self, node: &Node) -> Vec<Diagnostic> {
        let mut d = Vec::new();
        if self.dir.trim().is_empty() {
            d.push(
                Diagnostic::error(node.loc_of("dir"), "`dir` is empty")
                    .hint("name the directory that holds the target files"),
            );
        }
        for (field, globs) in [("include", &self.include), ("exclude", &self.exclude)] {
            if let Err((i, e)) = globset(globs) {
                d.push(
                    Diagnostic::error(
                        node.loc_of(&format!("{field}[{i}]")),
                        format!("invalid glob: {e}"),
                    )
                    .hint("write globs like `*.yaml` or `**/*.json`"),
                );
            }
        }
        if self.include.is_empty() {
            d.push(
                Diagnostic::error(
                    node.loc_of("include"),
                    "`include` is empty: no file would be read",
                )
                .hint("omit it for `*.yaml`, `*.yml`, `*.json`"),
            );
        }
        d
    }
}

pub struct Runner {
    dir: PathBuf,
    include: GlobSet,
    exclude: GlobSet,
    /// Last good targets of each file.
    last: HashMap<PathBuf, Vec<Target>>,
}

impl Runner {
    pub fn new(spec: FilesSource, cx: &SourceCx) -> Runner {
        // `check` validated the globs at load time.
        Runner {
            dir: cx.path(&spec.dir),
            include: globset(&spec.include).unwrap_or_else(|_| GlobSet::empty()),
            exclude: globset(&spec.exclude).unwrap_or_else(|_| GlobSet::empty()),
            last: HashMap::new(),
        }
    }
}

fn walk(
    root: &Path,
    dir: &Path,
    depth: usize,
    out: &mut Vec<PathBuf>,
    problems: &mut Vec<String>,
) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        if out.len() >= MAX_FILES {
            problems.push(format!(
                "more than {MAX_FILES} files under `{}`; the rest are ignored",
                root.display()
            ));
            return Ok(());
        }
        let path = e.path();
        let Ok(ft) = std::fs::metadata(&path).map(|m| m.file_type()) else {
            continue;
        };
        if ft.is_dir() {
            if depth < MAX_DEPTH
                && let Err(err) = walk(root, &path, depth + 1, out, problems)
            {
                problems.push(format!("cannot read `{}`: {err}", path.display()));
            }
        } else if ft.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

fn read_file(path: &Path) -> Result<Vec<Target>, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if meta.len() > MAX_FILE {
        return Err(format!(
            "{} bytes, above the {} MiB limit",
            meta.len(),
            MAX_FILE / 1024 / 1024
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    if path.extension().is_some_and(|e| e == "json") {
        sd::parse_json(&bytes)
    } else {
        let text = String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
        sd::parse_yaml(&text)
    }
}

impl Runner {
    /// One pass over the directory (blocking I/O; call from `spawn_blocking`).
    pub fn scan(&mut self) -> Result<Snapshot, String> {
        let mut files = Vec::new();
        let mut problems = Vec::new();
        walk(&self.dir, &self.dir, 0, &mut files, &mut problems).map_err(|e| {
            format!(
                "cannot read the directory `{}`: {e}; check `dir` (relative paths start at the config file's directory)",
                self.dir.display()
            )
        })?;
        let mut targets = Vec::new();
        let mut seen = HashMap::new();
        for path in files {
            let rel = path.strip_prefix(&self.dir).unwrap_or(&path);
            if !self.include.is_match(rel) || self.exclude.is_match(rel) {
                continue;
            }
            match read_file(&path) {
                Ok(t) => {
                    targets.extend(t.iter().cloned());
                    seen.insert(path, t);
                }
                Err(e) => match self.last.get(&path) {
                    Some(prev) => {
                        problems.push(format!(
                            "`{}`: {e}; its last good {} target(s) are kept",
                            path.display(),
                            prev.len()
                        ));
                        targets.extend(prev.iter().cloned());
                        seen.insert(path, prev.clone());
                    }
                    None => problems.push(format!("`{}`: {e}; skipped", path.display())),
                },
            }
        }
        self.last = seen;
        Ok(Snapshot { targets, problems })
    }
}

#[async_trait::async_trait]
impl Poll for Runner {
    async fn fetch(&mut self) -> Result<Snapshot, String> {
        // Move self's state into the blocking task and back.
        let mut me = Runner {
            dir: self.dir.clone(),
            include: self.include.clone(),
            exclude: self.exclude.clone(),
            last: std::mem::take(&mut self.last),
        };
        let (r, last) = tokio::task::spawn_blocking(move || {
            let r = me.scan();
            (r, me.last)
        })
        .await
        .map_err(|e| format!("file scan task failed: {e}"))?;
        self.last = last;
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_globs_and_keeps_last_good() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.yaml"), "- targets: ['h1:1']\n").unwrap();
        std::fs::write(
            d.path().join("b.json"),
            r#"[{"targets":["h2:2"],"labels":{"x":"y"}}]"#,
        )
        .unwrap();
        std::fs::write(d.path().join("c.txt"), "ignored").unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/d.yaml"), "- targets: ['h3:3']\n").unwrap();
        let cx = SourceCx {
            name: "t".into(),
            refresh: std::time::Duration::from_secs(1),
            base_dir: d.path().to_path_buf(),
            resolver: Default::default(),
            cancel: Default::default(),
        };
        let mut r = Runner::new(
            FilesSource {
                dir: ".".into(),
                include: default_include(),
                exclude: vec![],
            },
            &cx,
        );
        let s = r.scan().unwrap();
        assert_eq!(s.targets.len(), 2, "{s:?}");
        assert!(s.problems.is_empty());
        std::fs::write(d.path().join("a.yaml"), "- targets: ['h1:1'\n").unwrap();
        let s = r.scan().unwrap();
        assert_eq!(s.targets.len(), 2, "last good kept: {s:?}");
        assert!(s.problems[0].contains("a.yaml"), "{s:?}");
        let mut r2 = Runner::new(
            FilesSource {
                dir: ".".into(),
                include: vec!["**/*.yaml".into()],
                exclude: vec!["a.yaml".into()],
            },
            &cx,
        );
        let s = r2.scan().unwrap();
        assert_eq!(
            s.targets
                .iter()
                .map(|t| t.address.as_str())
                .collect::<Vec<_>>(),
            vec!["h3"]
        );
        let mut gone = Runner::new(
            FilesSource {
                dir: "nope".into(),
                include: default_include(),
                exclude: vec![],
            },
            &cx,
        );
        assert!(
            gone.scan()
                .unwrap_err()
                .contains("cannot read the directory")
        );
    }
}
