//! Who may use the UI and the API.
//!
//! - **Users** (config `auth.users`, argon2 hashes) log in through `/login` and get a session:
//!   a random 256-bit cookie (`pw_session`, HttpOnly, SameSite=Lax, Secure under TLS) whose
//!   SHA-256 is kept in the store with its CSRF token, expiry and last activity.
//! - **API tokens** (config `auth.tokens`) are sent as `Authorization: Bearer <secret>`.
//! - **Roles**: `viewer` reads; `editor` also runs checks and acknowledges incidents; `admin`
//!   also manages sessions. Role checks happen in one place ([`required_role`]).
//! - With no user in config, the first start creates `admin` with a random password written to
//!   `<data_dir>/admin-password` (mode 0600), never to the log ([`ensure_admin`]).

pub mod limiter;
pub mod middleware;
pub mod pages;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use base64::Engine as _;
use chrono::Utc;
use portwarden_config::{AuthSettings, MetricsAccess, Role};
use portwarden_store::{LocalUser, Store};
use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};

pub use middleware::{Principal, Via};

/// Cookie of a logged-in browser.
pub const SESSION_COOKIE: &str = "pw_session";
/// Cookie of the login form's CSRF token (before there is a session).
pub const LOGIN_COOKIE: &str = "pw_login";
/// File the generated admin password is written to, inside the data directory.
pub const ADMIN_PASSWORD_FILE: &str = "admin-password";

/// `n` random bytes from the OS, base64url without padding.
pub fn random_token(n: usize) -> String {
    let mut buf = vec![0u8; n];
    // SystemRandom only fails when the OS has no entropy source at all; fall back to failing
    // closed with a token nobody can guess from this process either (all requests then fail
    // to match).
    if SystemRandom::new().fill(&mut buf).is_err() {
        tracing::error!("the OS random generator failed; sessions cannot be created");
        return String::new();
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// SHA-256 in hex (how session ids are stored).
pub fn sha256_hex(s: &str) -> String {
    hex::encode(digest::digest(&digest::SHA256, s.as_bytes()))
}

/// Equal without an early exit (CSRF tokens).
pub fn constant_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Hashes a password as an argon2id PHC string (`portwarden hash-password`).
pub fn hash_password(password: &str) -> Result<String, String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// Checks a password against a PHC string.
pub fn verify_password(password: &str, phc: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), phc)
        .is_ok()
}

/// A user who can log in.
#[derive(Debug, Clone)]
pub struct Account {
    pub name: String,
    pub password_hash: String,
    pub role: Role,
}

#[derive(Debug, Clone)]
struct TokenEntry {
    name: String,
    role: Role,
}

/// The auth part of the current config (replaced on reload).
#[derive(Debug)]
pub struct AuthConfig {
    pub settings: AuthSettings,
    accounts: HashMap<String, Account>,
    /// SHA-256 of each token secret → its name and role.
    tokens: HashMap<[u8; 32], TokenEntry>,
}

impl AuthConfig {
    fn build(settings: &AuthSettings, generated: Option<&Account>) -> AuthConfig {
        let mut accounts: HashMap<String, Account> = settings
            .users
            .iter()
            .map(|u| {
                (
                    u.name.clone(),
                    Account {
                        name: u.name.clone(),
                        password_hash: u.password_hash.clone(),
                        role: u.role,
                    },
                )
            })
            .collect();
        if accounts.is_empty()
            && let Some(g) = generated
        {
            accounts.insert(g.name.clone(), g.clone());
        }
        let tokens = settings
            .tokens
            .iter()
            .map(|t| {
                (
                    token_digest(t.secret.expose()),
                    TokenEntry {
                        name: t.name.clone(),
                        role: t.role,
                    },
                )
            })
            .collect();
        AuthConfig {
            settings: settings.clone(),
            accounts,
            tokens,
        }
    }

    pub fn account(&self, name: &str) -> Option<&Account> {
        self.accounts.get(name)
    }

    fn token(&self, secret: &str) -> Option<&TokenEntry> {
        self.tokens.get(&token_digest(secret))
    }
}

fn token_digest(secret: &str) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, secret.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Auth state shared by the handlers.
pub struct Auth {
    current: RwLock<Arc<AuthConfig>>,
    /// The first-start admin, when one exists in the store.
    generated: RwLock<Option<Account>>,
    pub limiter: limiter::Limiter,
    /// Bounds concurrent argon2 verifications (each takes ~20 MB and tens of ms).
    pub hashing: tokio::sync::Semaphore,
    /// Cookies get `Secure` when the listener speaks TLS.
    pub secure_cookies: bool,
    /// A hash to verify against when the user does not exist (same cost as a real miss).
    dummy_hash: Arc<std::sync::OnceLock<String>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").finish_non_exhaustive()
    }
}

impl Auth {
    pub fn new(settings: &AuthSettings, generated: Option<Account>, secure_cookies: bool) -> Auth {
        let cfg = AuthConfig::build(settings, generated.as_ref());
        Auth {
            limiter: limiter::Limiter::new(settings.login_attempts, settings.login_window),
            current: RwLock::new(Arc::new(cfg)),
            generated: RwLock::new(generated),
            hashing: tokio::sync::Semaphore::new(2),
            secure_cookies,
            dummy_hash: Arc::new(std::sync::OnceLock::new()),
        }
    }

    pub fn config(&self) -> Arc<AuthConfig> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Applies the auth section of a reloaded config.
    pub fn update(&self, settings: &AuthSettings, generated: Option<Account>) {
        if generated.is_some() {
            *self.generated.write().unwrap_or_else(|p| p.into_inner()) = generated;
        }
        let g = self
            .generated
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let cfg = AuthConfig::build(settings, g.as_ref());
        self.limiter
            .configure(settings.login_attempts, settings.login_window);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(cfg);
    }

    pub fn metrics_public(&self) -> bool {
        self.config().settings.metrics == MetricsAccess::Public
    }

    /// Checks a login; `None` for a wrong user or password (indistinguishable, same cost: an
    /// unknown user is verified against a hash of a random password).
    pub async fn check_login(&self, user: &str, password: &str) -> Option<Account> {
        let cfg = self.config();
        let account = cfg.account(user).cloned();
        let hash = account.as_ref().map(|a| a.password_hash.clone());
        let dummy = self.dummy_hash.clone();
        let password = password.to_string();
        let _permit = self.hashing.acquire().await.ok()?;
        let ok = tokio::task::spawn_blocking(move || {
            let hash = hash.unwrap_or_else(|| {
                dummy
                    .get_or_init(|| hash_password(&random_token(16)).unwrap_or_default())
                    .clone()
            });
            verify_password(&password, &hash)
        })
        .await
        .unwrap_or(false);
        if ok { account } else { None }
    }

    /// The role of an API token, by its secret.
    pub fn token_principal(&self, secret: &str) -> Option<Principal> {
        let cfg = self.config();
        cfg.token(secret).map(|t| Principal {
            name: t.name.clone(),
            role: t.role,
            via: Via::Token,
        })
    }
}

/// Idle and absolute session limits in one place.
pub fn session_times(s: &AuthSettings) -> (chrono::Duration, chrono::Duration) {
    let c = |d: Duration| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::hours(12));
    (c(s.session_ttl), c(s.session_idle))
}

/// With no user in config: makes sure the generated `admin` exists (creating it, with its
/// password written once to `<data_dir>/admin-password` (never to the log), on the first start) and
/// returns it. With users in config: returns `None`; a generated admin from an earlier start
/// stays in the store but cannot log in.
pub async fn ensure_admin(
    store: &Arc<dyn Store>,
    data_dir: &Path,
    settings: &AuthSettings,
) -> Result<Option<Account>, String> {
    if !settings.users.is_empty() {
        if let Ok(Some(_)) = store.local_user("admin").await {
            tracing::info!(
                "users come from the config; the generated `admin` of the first start is disabled"
            );
        }
        return Ok(None);
    }
    if let Some(u) = store
        .local_user("admin")
        .await
        .map_err(|e| format!("cannot read the generated admin user: {e}"))?
    {
        tracing::info!(
            file = %data_dir.join(ADMIN_PASSWORD_FILE).display(),
            "no user in config: the generated `admin` can log in (its password was written at the first start)"
        );
        return Ok(Some(Account {
            name: u.name,
            password_hash: u.password_hash,
            role: Role::parse(&u.role).unwrap_or(Role::Admin),
        }));
    }
    let password = random_token(18);
    if password.is_empty() {
        return Err("the OS random generator failed; cannot create the admin password".into());
    }
    let hash = tokio::task::spawn_blocking({
        let p = password.clone();
        move || hash_password(&p)
    })
    .await
    .map_err(|e| e.to_string())??;
    // The password goes to a file only the owner can read, never to the log. Written before
    // the user exists, so a start that cannot write it fails instead of creating an admin
    // nobody can log in as.
    let file = data_dir.join(ADMIN_PASSWORD_FILE);
    write_secret_file(&file, &format!("{password}\n")).map_err(|e| {
        format!(
            "cannot write the generated admin password to {}: {e} (fix the data directory, or add users under `auth.users`)",
            file.display()
        )
    })?;
    let created = store
        .create_local_user(LocalUser {
            name: "admin".into(),
            password_hash: hash.clone(),
            role: Role::Admin.as_str().into(),
            created_at: Utc::now(),
        })
        .await;
    match created {
        Ok(true) => tracing::warn!(
            user = "admin",
            file = %file.display(),
            "no user in config: created `admin` with a random password, written to the file (mode 0600). Log in, then add users under `auth.users` in the config and delete the file"
        ),
        Ok(false) => {
            // Another replica created it first: our password is not the stored one.
            let _ = std::fs::remove_file(&file);
            if let Ok(Some(u)) = store.local_user("admin").await {
                return Ok(Some(Account {
                    name: u.name,
                    password_hash: u.password_hash,
                    role: Role::parse(&u.role).unwrap_or(Role::Admin),
                }));
            }
        }
        Err(e) => {
            let _ = std::fs::remove_file(&file);
            return Err(format!("cannot save the generated admin user: {e}"));
        }
    }
    Ok(Some(Account {
        name: "admin".into(),
        password_hash: hash,
        role: Role::Admin,
    }))
}

/// Writes a new file readable only by its owner; never replaces an existing one.
fn write_secret_file(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(content.as_bytes())?;
    f.sync_all()
}

/// The role a non-public request needs, by path and method: session management is for
/// admins, every other change for editors (logging out excepted), reading for viewers.
pub fn required_role(method: &axum::http::Method, path: &str) -> Role {
    if path.starts_with("/sessions") {
        Role::Admin
    } else if method.is_safe() || path == "/logout" {
        Role::Viewer
    } else {
        Role::Editor
    }
}

/// Routes anyone may use.
pub fn is_public(path: &str, metrics_public: bool) -> bool {
    path == "/status"
        || path.starts_with("/status/")
        || path == "/status.json"
        || path == "/api/v1/health"
        || path == "/login"
        // Signed acknowledge links: the HMAC in the path is the credential.
        || path.starts_with("/ack/")
        || path.starts_with("/assets/")
        || path == "/favicon.ico"
        || (metrics_public && path == "/metrics")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn tokens_are_random_and_long() {
        let a = random_token(32);
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_token(32));
        assert!(constant_eq(&a, &a.clone()));
        assert!(!constant_eq(&a, &random_token(32)));
    }

    #[test]
    fn public_routes() {
        assert!(is_public("/status", false));
        assert!(is_public("/status.json", false));
        assert!(is_public("/status/feed.atom", false));
        assert!(is_public("/api/v1/health", false));
        assert!(is_public("/metrics", true));
        assert!(!is_public("/metrics", false));
        assert!(!is_public("/statusx", false));
        assert!(!is_public("/api/v1/monitors", true));
        assert!(!is_public("/", true));
    }
}
