//! Monitor templates: a `template:` mapping shaped like a `monitors:` item whose string values
//! may hold minijinja expressions (`name: "pg-{{ address }}-{{ port }}"`). Each discovered
//! target renders the mapping into a located YAML tree, which the config crate resolves into a
//! `Monitor` exactly like a written one — so an error points at the template's line.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use minijinja::value::{Object, Value};
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use portwarden_config::node::NodeKind;
use portwarden_config::{Diagnostic, Loc, Node, diag};

use crate::target::Target;

/// Variables a template may use.
pub const VARIABLES: &[&str] = &[
    "address",
    "port",
    "hostport",
    "transport",
    "source",
    "labels",
    "meta",
];

const DEFAULT_NAME: &str = "{{ source }}-{{ hostport }}";
const DEFAULT_TARGET: &str = "{% if transport == 'udp' %}udp://{% endif %}{{ hostport }}";

/// A compiled template.
#[derive(Clone)]
pub struct MonitorTemplate {
    /// The mapping, with `name`/`target` defaults filled in.
    root: Node,
    env: Arc<Environment<'static>>,
    /// Does any expression read `labels` or `meta` (whose keys are unknown until a target
    /// comes)?
    pub uses_target_data: bool,
}

impl std::fmt::Debug for MonitorTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MonitorTemplate")
            .field("root", &self.root)
            .finish()
    }
}

impl PartialEq for MonitorTemplate {
    fn eq(&self, other: &Self) -> bool {
        self.root == other.root
    }
}

fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%") || s.contains("{#")
}

/// Visits every string scalar that is a template, in a fixed order (values only, not keys).
fn walk<'a>(n: &'a Node, f: &mut impl FnMut(&'a Node, &'a str)) {
    match &n.kind {
        NodeKind::Str(s) if is_template(s) => f(n, s),
        NodeKind::Seq(items) => items.iter().for_each(|i| walk(i, f)),
        NodeKind::Map(entries) => entries.iter().for_each(|(_, v)| walk(v, f)),
        _ => {}
    }
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env
}

impl MonitorTemplate {
    /// Compiles `node` (the `template:` mapping). Syntax errors and unknown variables are
    /// located at the scalar that holds them.
    pub fn compile(node: &Node) -> Result<MonitorTemplate, Vec<Diagnostic>> {
        let mut diags = Vec::new();
        let NodeKind::Map(entries) = &node.kind else {
            return Err(vec![
                Diagnostic::error(
                    node.loc,
                    format!("`template` must be a mapping, found {}", node.describe()),
                )
                .hint(
                    "write the monitor fields (name, target, check, tier, ...) under `template:`",
                ),
            ]);
        };
        let mut entries = entries.clone();
        let key = |k: &str, loc: Loc| Node::new(loc, NodeKind::Str(k.to_string()));
        if node.get("name").is_none() {
            entries.push((
                key("name", node.loc),
                Node::new(node.loc, NodeKind::Str(DEFAULT_NAME.into())),
            ));
        }
        if node.get("target").is_none() {
            entries.push((
                key("target", node.loc),
                Node::new(node.loc, NodeKind::Str(DEFAULT_TARGET.into())),
            ));
        }
        let root = Node::new(node.loc, NodeKind::Map(entries));
        let mut env = environment();
        let mut uses_target_data = false;
        let mut i = 0usize;
        walk(&root, &mut |n, s| {
            let id = format!("t{i}");
            i += 1;
            match env.add_template_owned(id.clone(), s.to_string()) {
                Ok(()) => {
                    if let Ok(t) = env.get_template(&id) {
                        for var in t.undeclared_variables(false) {
                            if var == "labels" || var == "meta" {
                                uses_target_data = true;
                            }
                            if !VARIABLES.contains(&var.as_str()) {
                                diags.push(
                                    Diagnostic::error(
                                        n.loc,
                                        format!("template: unknown variable `{var}`"),
                                    )
                                    .hint(format!(
                                        "{}; variables are {} (labels and facts as `labels.NAME`, `meta.NAME`)",
                                        diag::did_you_mean(&var, VARIABLES).trim_end_matches('.'),
                                        VARIABLES.iter().map(|v| format!("`{v}`")).collect::<Vec<_>>().join(", ")
                                    )),
                                );
                            }
                        }
                    }
                }
                Err(e) => {
                    // Keep the numbering in step with `render`.
                    let _ = env.add_template_owned(id, String::new());
                    diags.push(
                        Diagnostic::error(n.loc, format!("template syntax error: {}", describe(&e)))
                            .hint("fix the expression; templates use minijinja (Jinja2) syntax: `{{ address }}`, `{{ labels.env | default('prod') }}`"),
                    );
                }
            }
        });
        if diags.is_empty() {
            Ok(MonitorTemplate {
                root,
                env: Arc::new(env),
                uses_target_data,
            })
        } else {
            Err(diags)
        }
    }

    /// The (defaults-filled) template mapping.
    pub fn root(&self) -> &Node {
        &self.root
    }

    /// Renders for one target: the located tree to resolve as a monitor, or an error located
    /// at the failing expression.
    pub fn render(&self, source: &str, t: &Target) -> Result<Node, Diagnostic> {
        self.render_with(context(source, t))
    }

    /// Renders with placeholder values for every label and fact (validation).
    pub fn render_sample(&self, source: &str, sample: &Target) -> Result<Node, Diagnostic> {
        let mut ctx = context(source, sample);
        let any = Value::from_object(AnyKey);
        ctx.insert("labels", any.clone());
        ctx.insert("meta", any);
        self.render_with(ctx)
    }

    fn render_with(&self, ctx: BTreeMap<&'static str, Value>) -> Result<Node, Diagnostic> {
        let ctx = Value::from(
            ctx.into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect::<BTreeMap<String, Value>>(),
        );
        let mut i = 0usize;
        let mut err = None;
        let out = self.map_node(&self.root, &mut |n, _s| {
            let id = format!("t{i}");
            i += 1;
            let r = self
                .env
                .get_template(&id)
                .and_then(|t| t.render(ctx.clone()));
            match r {
                Ok(text) => Some(retype(n.loc, text)),
                Err(e) => {
                    if err.is_none() {
                        err = Some(
                            Diagnostic::error(n.loc, format!("template: {}", describe(&e)))
                                .hint("use `| default(...)` for labels that not every target has, or `{% if labels.x is defined %}`"),
                        );
                    }
                    None
                }
            }
        });
        match err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    fn map_node(&self, n: &Node, f: &mut impl FnMut(&Node, &str) -> Option<Node>) -> Node {
        match &n.kind {
            NodeKind::Str(s) if is_template(s) => f(n, s).unwrap_or_else(|| n.clone()),
            NodeKind::Seq(items) => {
                let mut c = n.clone();
                c.kind = NodeKind::Seq(items.iter().map(|i| self.map_node(i, f)).collect());
                c
            }
            NodeKind::Map(entries) => {
                let mut c = n.clone();
                c.kind = NodeKind::Map(
                    entries
                        .iter()
                        .map(|(k, v)| (k.clone(), self.map_node(v, f)))
                        .collect(),
                );
                c
            }
            _ => n.clone(),
        }
    }
}

/// A rendered value that reads as an integer or `true`/`false` is typed as YAML would type it
/// (`port: "{{ port }}"` feeds an integer field); the text is kept for string fields.
fn retype(loc: Loc, text: String) -> Node {
    let t = text.trim();
    let leading_zero = t.len() > 1 && t.starts_with('0');
    let kind = if !leading_zero && let Ok(i) = t.parse::<i64>() {
        NodeKind::Int(i)
    } else if t == "true" {
        NodeKind::Bool(true)
    } else if t == "false" {
        NodeKind::Bool(false)
    } else {
        return Node::new(loc, NodeKind::Str(text));
    };
    let mut n = Node::new(loc, kind);
    n.raw = Some(t.into());
    n
}

fn describe(e: &minijinja::Error) -> String {
    let mut s = e
        .detail()
        .map(str::to_string)
        .unwrap_or_else(|| e.kind().to_string());
    if let Some(line) = e.line()
        && line > 1
    {
        s.push_str(&format!(" (line {line} of the template)"));
    }
    s
}

fn strings(m: &BTreeMap<String, String>) -> Value {
    Value::from(
        m.iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect::<BTreeMap<String, Value>>(),
    )
}

fn context(source: &str, t: &Target) -> BTreeMap<&'static str, Value> {
    let mut c = BTreeMap::new();
    c.insert("address", Value::from(t.address.as_str()));
    if let Some(p) = t.port {
        c.insert("port", Value::from(p));
    }
    c.insert("hostport", Value::from(t.hostport()));
    c.insert("transport", Value::from(t.transport.as_str()));
    c.insert("source", Value::from(source));
    c.insert("labels", strings(&t.labels));
    c.insert("meta", strings(&t.meta));
    c
}

/// A map that has every key (placeholder values for validation).
#[derive(Debug)]
struct AnyKey;

impl Object for AnyKey {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let k = key.as_str().unwrap_or("x");
        let clean: String = k
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        Some(Value::from(format!("sample-{clean}")))
    }
}

/// The labels and facts a template reads (for `inventory` and docs): `labels.x` paths.
pub fn referenced(t: &MonitorTemplate) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut i = 0usize;
    walk(&t.root, &mut |_, _| {
        if let Ok(tpl) = t.env.get_template(&format!("t{i}")) {
            out.extend(tpl.undeclared_variables(true));
        }
        i += 1;
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tpl(yaml: &str) -> Result<MonitorTemplate, Vec<Diagnostic>> {
        let root = portwarden_config::node::parse(yaml).unwrap();
        MonitorTemplate::compile(root.get("template").unwrap())
    }

    #[test]
    fn renders_and_types() {
        let t = tpl("template:\n  name: \"pg-{{ address }}-{{ port }}\"\n  labels:\n    env: \"{{ labels.env | default('prod') }}\"\n  check:\n    type: tcp\n  interval: \"{{ meta.every }}\"\n").unwrap();
        let mut target = Target::new("10.0.0.5", Some(5432));
        target.meta.insert("every".into(), "30s".into());
        let n = t.render("pg", &target).unwrap();
        assert_eq!(n.get("name").unwrap().as_str(), Some("pg-10.0.0.5-5432"));
        assert_eq!(n.get("target").unwrap().as_str(), Some("10.0.0.5:5432"));
        assert_eq!(
            n.get("labels").unwrap().get("env").unwrap().as_str(),
            Some("prod")
        );
        assert!(t.uses_target_data);
        let mut u = Target::new("::1", Some(53));
        u.transport = "udp".into();
        u.meta.insert("every".into(), "1m".into());
        let n = t.render("dns", &u).unwrap();
        assert_eq!(n.get("target").unwrap().as_str(), Some("udp://[::1]:53"));
        let r = retype(Loc::default(), "5432".into());
        assert_eq!(r.kind, NodeKind::Int(5432));
        assert_eq!(
            retype(Loc::default(), "007".into()).kind,
            NodeKind::Str("007".into())
        );
    }

    #[test]
    fn errors_are_located() {
        let e = tpl("template:\n  name: \"pg-{{ adress }}\"\n").unwrap_err();
        assert_eq!(e[0].loc.unwrap().line, 2);
        assert!(e[0].message.contains("unknown variable `adress`"), "{e:?}");
        assert!(e[0].hint.as_deref().unwrap().contains("address"), "{e:?}");
        let e = tpl("template:\n  name: x\n  service: \"{{ labels.app \"\n").unwrap_err();
        assert_eq!(e[0].loc.unwrap().line, 3);
        assert!(e[0].message.contains("syntax error"), "{e:?}");
        let t = tpl("template:\n  name: \"{{ labels.app }}\"\n").unwrap();
        let e = t.render("s", &Target::new("h", Some(1))).unwrap_err();
        assert_eq!(e.loc.unwrap().line, 2);
        assert!(e.message.contains("undefined"), "{e:?}");
        let ok = t.render_sample("s", &Target::new("h", Some(1))).unwrap();
        assert_eq!(ok.get("name").unwrap().as_str(), Some("sample-app"));
        let t = tpl("template:\n  name: \"{{ port }}\"\n").unwrap();
        assert!(t.render("s", &Target::new("h", None)).is_err());
    }
}
