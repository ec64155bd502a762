//! minijinja templates for webhook and SMS bodies and headers.
//!
//! A template sees the notification's fields at the top level (`event`, `change`, `title`,
//! `items`, `incident_id`, `idempotency_key`, ...), the whole notification as `notification`
//! (`{{ notification|tojson }}`), and `headline`, `severity`, `dedup_key`. Undefined names are
//! errors, so a typo fails at send time with the template's name instead of sending a blank.

use minijinja::{Environment, UndefinedBehavior, Value};

use crate::Notification;

/// A set of named templates compiled once, at config load.
pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    /// Compiles `(name, source)` pairs; the error names the template and the problem.
    pub fn new(sources: Vec<(String, String)>) -> Result<Templates, String> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        for (name, src) in sources {
            env.add_template_owned(name.clone(), src)
                .map_err(|e| format!("template `{name}`: {}", describe(&e)))?;
        }
        Ok(Templates { env })
    }

    pub fn has(&self, name: &str) -> bool {
        self.env.get_template(name).is_ok()
    }

    /// Renders template `name` with `ctx`.
    pub fn render(&self, name: &str, ctx: &Value) -> Result<String, String> {
        let t = self
            .env
            .get_template(name)
            .map_err(|e| format!("template `{name}`: {}", describe(&e)))?;
        t.render(ctx)
            .map_err(|e| format!("template `{name}`: {}", describe(&e)))
    }
}

/// The context templates see, with `extra` entries (SMS: `to`, `from`, `text`) added on top.
pub fn context(n: &Notification, extra: &[(&str, Value)]) -> Value {
    let json = serde_json::to_value(n).unwrap_or(serde_json::Value::Null);
    let mut map: std::collections::BTreeMap<String, Value> = match &json {
        serde_json::Value::Object(o) => o.iter().map(|(k, v)| (k.clone(), from_json(v))).collect(),
        _ => Default::default(),
    };
    map.insert("notification".into(), from_json(&json));
    map.insert("headline".into(), Value::from(n.headline()));
    map.insert("severity".into(), Value::from(n.severity().as_str()));
    map.insert("dedup_key".into(), Value::from(n.dedup_key()));
    for (k, v) in extra {
        map.insert((*k).to_string(), v.clone());
    }
    Value::from(map)
}

/// JSON → template value.
pub fn from_json(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::from(()),
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(0.0))
            }
        }
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(a) => Value::from(a.iter().map(from_json).collect::<Vec<_>>()),
        serde_json::Value::Object(o) => Value::from(
            o.iter()
                .map(|(k, v)| (k.clone(), from_json(v)))
                .collect::<std::collections::BTreeMap<_, _>>(),
        ),
    }
}

fn describe(e: &minijinja::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_fields_and_json() {
        let n = Notification::sample(chrono::Utc::now());
        let t = Templates::new(vec![
            (
                "a".into(),
                "{{ event }} {{ items[0].monitor }} {{ severity }}".into(),
            ),
            ("b".into(), "{{ notification|tojson }}".into()),
            ("c".into(), "{{ nope }}".into()),
        ])
        .unwrap();
        let ctx = context(&n, &[]);
        assert_eq!(t.render("a", &ctx).unwrap(), "test orders-db-primary high");
        let back: Notification = serde_json::from_str(&t.render("b", &ctx).unwrap()).unwrap();
        assert_eq!(back, n);
        assert!(t.render("c", &ctx).unwrap_err().contains("template `c`"));
        assert!(Templates::new(vec![("x".into(), "{{ a".into())]).is_err());
    }
}
