//! Test-owned database servers for the database probe tests: PostgreSQL clusters (initdb,
//! streaming replicas), Redis and memcached on free ports. Each is stopped when dropped.
//!
//! PostgreSQL refuses to run as root, so its programs run with the `postgres` user's uid/gid
//! (set directly on the child with `CommandExt::uid`, so the server *is* our child and a kill
//! reaches it; `runuser` would fork and leave it orphaned) on a directory owned by `postgres`.
#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use portwarden_testkit as tk;

/// The newest `/usr/lib/postgresql/<ver>/bin/<name>`.
pub fn pg_bin(name: &str) -> Option<PathBuf> {
    let mut vers: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let p = e.path().join("bin").join(name);
            p.is_file().then_some((v, p))
        })
        .collect();
    vers.sort();
    vers.pop().map(|(_, p)| p)
}

/// uid and gid of the `postgres` user.
pub fn postgres_ids() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&"postgres"))
            .then(|| Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?)))?
    })
}

/// Can this machine run test-owned PostgreSQL clusters? (root, postgres user, binaries)
#[track_caller]
pub fn need_pg() -> bool {
    tk::need(
        tk::is_root(),
        "root (to run PostgreSQL as the postgres user)",
    ) && tk::need(postgres_ids().is_some(), "the `postgres` system user")
        && tk::need(
            pg_bin("initdb").is_some(),
            "PostgreSQL server binaries under /usr/lib/postgresql/<ver>/bin",
        )
}

fn as_postgres(cmd: &mut Command) {
    if let Some((uid, gid)) = postgres_ids() {
        cmd.uid(uid).gid(gid);
    }
}

/// A test-owned PostgreSQL cluster.
pub struct Pg {
    pub port: u16,
    pub root: tempfile::TempDir,
    pub data: PathBuf,
    child: Option<Child>,
}

impl Pg {
    fn new_dir() -> (tempfile::TempDir, PathBuf) {
        let root = tempfile::Builder::new()
            .prefix("pw-pg-")
            .tempdir()
            .expect("tempdir");
        let (uid, gid) = postgres_ids().expect("postgres user");
        std::os::unix::fs::chown(root.path(), Some(uid), Some(gid)).expect("chown");
        let data = root.path().join("data");
        (root, data)
    }

    /// `initdb` (trust auth, superuser `postgres`) and start with `max_connections`.
    pub fn primary(max_connections: u32) -> Pg {
        let (root, data) = Self::new_dir();
        let mut init = Command::new(pg_bin("initdb").expect("initdb"));
        init.args(["-D"]).arg(&data).args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
        ]);
        as_postgres(&mut init);
        let out = init.output().expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut pg = Pg {
            port: tk::free_port(),
            root,
            data,
            child: None,
        };
        pg.start(max_connections);
        pg
    }

    /// A streaming replica of `primary` made with `pg_basebackup -R`.
    pub fn replica_of(primary: &Pg) -> Pg {
        let (root, data) = Self::new_dir();
        let mut bb = Command::new(pg_bin("pg_basebackup").expect("pg_basebackup"));
        bb.args([
            "-h",
            "127.0.0.1",
            "-p",
            &primary.port.to_string(),
            "-U",
            "postgres",
            "-D",
        ])
        .arg(&data)
        .args(["-R", "-X", "stream", "--no-sync"]);
        as_postgres(&mut bb);
        let out = bb.output().expect("run pg_basebackup");
        assert!(
            out.status.success(),
            "pg_basebackup failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut pg = Pg {
            port: tk::free_port(),
            root,
            data,
            child: None,
        };
        pg.start(20);
        pg
    }

    fn start(&mut self, max_connections: u32) {
        let mut cmd = Command::new(pg_bin("postgres").expect("postgres"));
        cmd.arg("-D")
            .arg(&self.data)
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                self.root.path().display()
            ))
            .args(["-c", &format!("max_connections={max_connections}")])
            .args(["-c", "superuser_reserved_connections=1"])
            .args(["-c", "fsync=off", "-c", "shared_buffers=16MB"])
            .args(["-c", "wal_retrieve_retry_interval=500ms"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(self.root.path().join("log")).expect("log file"),
            ));
        as_postgres(&mut cmd);
        self.child = Some(cmd.spawn().expect("start postgres"));
        // Listening is not enough: wait until it accepts a session.
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if psql(self.port, "SELECT 1").is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "postgres on port {} did not start: {}",
            self.port,
            self.log()
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("log")).unwrap_or_default()
    }

    /// Fast shutdown (SIGINT) and wait.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(20) {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // Immediate shutdown: the postmaster takes its backends down with it.
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGQUIT) };
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs SQL with `psql` as `postgres` against 127.0.0.1:`port`; returns unaligned output.
pub fn psql(port: u16, sql: &str) -> Result<String, String> {
    let out = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-d",
            "postgres",
        ])
        .args(["-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .env("PGCONNECT_TIMEOUT", "3")
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Holds an open PostgreSQL session (a backend on the server) until dropped.
pub struct PgSession {
    _client: tokio_postgres::Client,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PgSession {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn pg_session(port: u16) -> Result<PgSession, String> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let mut cfg = tokio_postgres::Config::new();
    cfg.user("postgres").dbname("postgres");
    let (client, conn) = cfg
        .connect_raw(tcp, tokio_postgres::NoTls)
        .await
        .map_err(|e| e.to_string())?;
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    client
        .simple_query("SELECT 1")
        .await
        .map_err(|e| e.to_string())?;
    Ok(PgSession {
        _client: client,
        task,
    })
}

/// A `redis-server` on a free port, optionally replicating from `replicaof`.
pub fn redis(replicaof: Option<u16>) -> Result<tk::process::Server, String> {
    let bin = tk::which("redis-server").ok_or("redis-server is not installed")?;
    let port = tk::free_port();
    let mut cmd = Command::new(bin);
    cmd.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]);
    if let Some(p) = replicaof {
        cmd.args(["--replicaof", "127.0.0.1", &p.to_string()]);
    }
    cmd.current_dir(std::env::temp_dir());
    tk::process::Server::spawn_tcp("redis-server", cmd, port, Duration::from_secs(10))
}

/// A `memcached` on a free port (as root it needs `-u`).
pub fn memcached(bin: &Path, max_conns: u32) -> Result<tk::process::Server, String> {
    let port = tk::free_port();
    let mut cmd = Command::new(bin);
    cmd.args([
        "-p",
        &port.to_string(),
        "-l",
        "127.0.0.1",
        "-U",
        "0",
        "-c",
        &max_conns.to_string(),
    ]);
    if tk::is_root() {
        cmd.args(["-u", "nobody"]);
    }
    tk::process::Server::spawn_tcp("memcached", cmd, port, Duration::from_secs(10))
}

/// A test-owned MariaDB (`mariadb-install-db` + `mariadbd --user=root`) on a free port.
pub struct Maria {
    pub server: tk::process::Server,
    pub dir: tempfile::TempDir,
}

impl Maria {
    pub fn start(server_id: u32) -> Result<Maria, String> {
        let install =
            tk::which("mariadb-install-db").ok_or("mariadb-install-db is not installed")?;
        let bin = tk::which("mariadbd").ok_or("mariadbd is not installed")?;
        let dir = tempfile::Builder::new()
            .prefix("pw-maria-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let data = dir.path().join("data");
        let out = Command::new(install)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .args([
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ])
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "mariadb-install-db: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let port = tk::free_port();
        let mut cmd = Command::new(bin);
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", dir.path().join("sock").display()))
            .arg(format!("--pid-file={}", dir.path().join("pid").display()))
            .arg(format!("--port={port}"))
            .args([
                "--bind-address=127.0.0.1",
                "--user=root",
                "--skip-log-error",
            ])
            .arg(format!("--server-id={server_id}"))
            .arg("--log-bin=mysql-bin")
            .args(["--innodb-buffer-pool-size=16M", "--skip-innodb-doublewrite"]);
        let server =
            tk::process::Server::spawn_tcp("mariadbd", cmd, port, Duration::from_secs(60))?;
        Ok(Maria { server, dir })
    }

    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// Runs SQL with the `mariadb` client as root over TCP.
    pub fn sql(&self, sql: &str) -> Result<String, String> {
        let client = tk::which("mariadb")
            .or_else(|| tk::which("mysql"))
            .ok_or("no mariadb client")?;
        let out = Command::new(client)
            .args([
                "--no-defaults",
                "-h",
                "127.0.0.1",
                "-P",
                &self.port().to_string(),
                "-uroot",
                "-N",
                "-B",
                "-e",
                sql,
            ])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}
