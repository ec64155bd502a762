//! PostgreSQL for tests: a throwaway database on the shared server (127.0.0.1:5432, trust
//! auth), created per test and dropped (with its connections) when the guard drops.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// Host and port of the shared PostgreSQL.
pub const HOST: &str = "127.0.0.1";
pub const PORT: u16 = 5432;
/// The role tests connect as (trust auth).
pub const USER: &str = "postgres";

/// Is the shared PostgreSQL reachable? (Skip or fail as [`crate::need`] says.)
#[track_caller]
pub fn need_postgres() -> bool {
    crate::need_service("PostgreSQL", PORT)
}

fn psql(db: &str, sql: &str) -> Result<String, String> {
    let out = Command::new("psql")
        .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1"])
        .args(["-h", HOST, "-p", &PORT.to_string(), "-U", USER, "-d", db])
        .args(["-c", sql])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run psql: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// A database created for one test; dropped (connections terminated) on drop.
#[derive(Debug)]
pub struct TestDatabase {
    pub name: String,
}

impl TestDatabase {
    /// Creates `pw_test_<pid>_<n>_<nanos>` on the shared server. `None` after a loud skip
    /// when PostgreSQL is absent (a failure with `PORTWARDEN_REQUIRE_SERVICES=1`).
    #[track_caller]
    pub fn create() -> Option<TestDatabase> {
        if !need_postgres() {
            return None;
        }
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "pw_test_{}_{}_{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        match psql("postgres", &format!("CREATE DATABASE {name}")) {
            Ok(_) => Some(TestDatabase { name }),
            Err(e) => {
                crate::need(
                    false,
                    &format!("CREATE DATABASE on PostgreSQL {HOST}:{PORT}: {e}"),
                );
                None
            }
        }
    }

    /// `postgres://postgres@127.0.0.1:5432/<name>`
    pub fn url(&self) -> String {
        format!("postgres://{USER}@{HOST}:{PORT}/{}", self.name)
    }

    /// Runs SQL in this database with psql; returns the unaligned output.
    pub fn psql(&self, sql: &str) -> Result<String, String> {
        psql(&self.name, sql)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Err(e) = psql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        ) {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
    }
}
