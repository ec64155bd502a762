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

/// A private PostgreSQL cluster on a free port (for tests that stop and restart the server):
/// `initdb` + `pg_ctl` as the `postgres` user (they refuse root), data in a temporary
/// directory, stopped (`-m immediate`) and removed on drop.
pub struct Cluster {
    pub port: u16,
    dir: std::path::PathBuf,
    bin: std::path::PathBuf,
    /// Extra server options (`-c ssl=on …`).
    extra: String,
}

fn pg_bin() -> Option<std::path::PathBuf> {
    let mut versions: Vec<std::path::PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop()
}

fn as_postgres(bin: &std::path::Path, tool: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(bin.join(tool))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {tool}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{tool} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

impl Cluster {
    /// `None` after a loud skip when not root or PostgreSQL's server binaries are missing.
    #[track_caller]
    pub fn start() -> Option<Cluster> {
        Cluster::start_inner(None)
    }

    /// [`start`](Self::start) serving TLS (also plain text) with this certificate and key (PEM).
    #[track_caller]
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> Option<Cluster> {
        Cluster::start_inner(Some((cert_pem, key_pem)))
    }

    #[track_caller]
    fn start_inner(tls: Option<(&str, &str)>) -> Option<Cluster> {
        if !crate::need(
            crate::is_root(),
            "root (to run a private PostgreSQL as `postgres`)",
        ) {
            return None;
        }
        let Some(bin) = pg_bin() else {
            crate::need(
                false,
                "PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb)",
            );
            return None;
        };
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "pw-pgcluster-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).ok()?;
        let chown = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status();
        if !chown.is_ok_and(|s| s.success()) {
            crate::need(false, "chown to the postgres user");
            return None;
        }
        let mut c = Cluster {
            port: crate::free_port(),
            dir,
            bin,
            extra: String::new(),
        };
        if let Some((cert, key)) = tls {
            use std::os::unix::fs::PermissionsExt;
            let (cp, kp) = (c.dir.join("server.crt"), c.dir.join("server.key"));
            let ok = std::fs::write(&cp, cert).is_ok()
                && std::fs::write(&kp, key).is_ok()
                && std::fs::set_permissions(&kp, std::fs::Permissions::from_mode(0o600)).is_ok()
                && Command::new("chown")
                    .args(["postgres:postgres"])
                    .arg(&cp)
                    .arg(&kp)
                    .status()
                    .is_ok_and(|s| s.success());
            if !ok {
                crate::need(false, "writing the server certificate for PostgreSQL");
                return None;
            }
            c.extra = format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                cp.display(),
                kp.display()
            );
        }
        let data = c.dir.join("data");
        let data = data.to_string_lossy();
        if let Err(e) = as_postgres(
            &c.bin,
            "initdb",
            &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"],
        ) {
            crate::need(false, &format!("initdb: {e}"));
            return None;
        }
        if let Err(e) = c.start_server() {
            crate::need(false, &format!("pg_ctl start: {e}"));
            return None;
        }
        Some(c)
    }

    fn start_server(&self) -> Result<(), String> {
        let data = self.dir.join("data");
        let log = self.dir.join("log");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off{}",
            self.port,
            self.dir.display(),
            self.extra
        );
        as_postgres(
            &self.bin,
            "pg_ctl",
            &[
                "-D",
                &data.to_string_lossy(),
                "-l",
                &log.to_string_lossy(),
                "-o",
                &opts,
                "-w",
                "start",
            ],
        )
    }

    /// Starts the server again (same port, same data).
    pub fn restart(&self) -> Result<(), String> {
        self.start_server()
    }

    /// Stops the server at once (`-m immediate`: like a crash).
    pub fn stop(&self) {
        let data = self.dir.join("data");
        let _ = as_postgres(
            &self.bin,
            "pg_ctl",
            &[
                "-D",
                &data.to_string_lossy(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`
    pub fn url(&self) -> String {
        format!("postgres://{USER}@{HOST}:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
