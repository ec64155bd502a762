//! Secrets: values that never print.
//!
//! In config a secret is written as `${env:NAME}` or `${file:/path}` (or, discouraged, as plain
//! text). The reference is resolved when the config is loaded; `Debug`, `Display` and `Serialize`
//! print `***`, so a secret cannot reach logs, API output, the UI or the database by accident.
//! Resolution is the one place this crate touches the environment or the file system: it happens
//! once, at config load, never on a hot path.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A secret value. Prints as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    value: String,
    /// How it was written (`${env:PG_PASSWORD}`), safe to show; `None` for plain text.
    reference: Option<String>,
}

/// Why a secret reference could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("environment variable `{0}` is not set; export it before starting Portwarden")]
    MissingEnv(String),
    #[error("environment variable `{0}` is not valid UTF-8")]
    NonUnicodeEnv(String),
    #[error("cannot read secret file `{0}`: {1}; check the path and its permissions")]
    File(String, String),
    #[error("unknown secret reference `${{{0}}}`; use `${{env:NAME}}` or `${{file:/path}}`")]
    UnknownScheme(String),
    #[error("unterminated secret reference in `{0}`: a `${{` has no closing `}}`")]
    Unterminated(String),
}

impl Secret {
    /// A secret from a literal value (tests, generated tokens).
    pub fn new(value: impl Into<String>) -> Self {
        Secret {
            value: value.into(),
            reference: None,
        }
    }

    /// The secret itself. Call only at the point of use (sending a password on the wire).
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// How the secret was written in config, if it was a reference (safe to display).
    pub fn reference(&self) -> Option<&str> {
        self.reference.as_deref()
    }

    pub fn is_empty(&self) -> bool {
        self.value.is_empty()
    }

    /// Resolves every `${env:NAME}` and `${file:/path}` in `template`.
    /// `$${` escapes a literal `${`.
    pub fn resolve(template: &str) -> Result<Secret, SecretError> {
        let mut out = String::with_capacity(template.len());
        let mut rest = template;
        let mut had_ref = false;
        while let Some(pos) = rest.find("${") {
            if pos > 0 && rest.as_bytes()[pos - 1] == b'$' {
                out.push_str(&rest[..pos - 1]);
                out.push_str("${");
                rest = &rest[pos + 2..];
                continue;
            }
            out.push_str(&rest[..pos]);
            let after = &rest[pos + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| SecretError::Unterminated(redact(template)))?;
            let inner = &after[..end];
            had_ref = true;
            if let Some(name) = inner.strip_prefix("env:") {
                match std::env::var(name) {
                    Ok(v) => out.push_str(&v),
                    Err(std::env::VarError::NotPresent) => {
                        return Err(SecretError::MissingEnv(name.to_string()));
                    }
                    Err(std::env::VarError::NotUnicode(_)) => {
                        return Err(SecretError::NonUnicodeEnv(name.to_string()));
                    }
                }
            } else if let Some(path) = inner.strip_prefix("file:") {
                let v = std::fs::read_to_string(path)
                    .map_err(|e| SecretError::File(path.to_string(), e.kind().to_string()))?;
                out.push_str(v.strip_suffix('\n').unwrap_or(&v));
            } else {
                return Err(SecretError::UnknownScheme(inner.to_string()));
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(Secret {
            value: out,
            reference: had_ref.then(|| template.to_string()),
        })
    }

    /// True when the value was written in plain text rather than as a reference.
    pub fn is_plain_text(&self) -> bool {
        self.reference.is_none() && !self.value.is_empty()
    }
}

/// Keeps only the reference parts of a template for an error message.
fn redact(template: &str) -> String {
    if template.contains("${") {
        template.to_string()
    } else {
        "***".into()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

thread_local! {
    static REVEAL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with secrets serializing as their value (escaped so that deserializing gives the
/// same value back, `${` written `$${`) instead of `***`. For the one place a secret must
/// travel: the assignment the server sends to the agent whose own probes need it. Scoped to
/// this thread and this call.
pub fn reveal_for_wire<T>(f: impl FnOnce() -> T) -> T {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            REVEAL.with(|r| r.set(self.0));
        }
    }
    let _reset = Reset(REVEAL.with(|r| r.replace(true)));
    f()
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if REVEAL.with(|r| r.get()) {
            s.serialize_str(&self.value.replace("${", "$${"))
        } else {
            s.serialize_str("***")
        }
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Secret::resolve(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reveal_is_scoped_and_round_trips() {
        let s = Secret::new("p${env:X}w");
        let wire = reveal_for_wire(|| serde_json::to_string(&s).unwrap());
        assert_eq!(wire, "\"p$${env:X}w\"");
        let back: Secret = serde_json::from_str(&wire).unwrap();
        assert_eq!(back.expose(), "p${env:X}w");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"***\"");
    }

    #[test]
    fn never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"***\"");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn resolves_env_and_file() {
        // SAFETY of the test: a unique variable name, set before any reader.
        let name = format!("PW_TEST_SECRET_{}", std::process::id());
        unsafe { std::env::set_var(&name, "s3cret") };
        let s = Secret::resolve(&format!("user:${{env:{name}}}@x")).unwrap();
        assert_eq!(s.expose(), "user:s3cret@x");
        assert!(s.reference().is_some());

        let dir = std::env::temp_dir().join(format!("pw-secret-{}", std::process::id()));
        std::fs::write(&dir, "from-file\n").unwrap();
        let f = Secret::resolve(&format!("${{file:{}}}", dir.display())).unwrap();
        assert_eq!(f.expose(), "from-file");
        let _ = std::fs::remove_file(&dir);

        assert_eq!(Secret::resolve("$${env:X}").unwrap().expose(), "${env:X}");
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(
            Secret::resolve("${env:PW_DEFINITELY_NOT_SET_42}"),
            Err(SecretError::MissingEnv("PW_DEFINITELY_NOT_SET_42".into()))
        );
        assert!(matches!(
            Secret::resolve("${file:/nonexistent/pw}"),
            Err(SecretError::File(..))
        ));
        assert!(matches!(
            Secret::resolve("${vault:x}"),
            Err(SecretError::UnknownScheme(_))
        ));
        assert!(matches!(
            Secret::resolve("${env:X"),
            Err(SecretError::Unterminated(_))
        ));
    }
}
