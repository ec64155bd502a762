//! Real server processes started by tests on free ports, killed when the guard drops.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A child process that is killed (and reaped) on drop.
pub struct Server {
    pub child: Option<Child>,
    pub port: u16,
    pub name: String,
}

impl Server {
    /// Spawns `cmd` and waits until `port` accepts TCP connections.
    pub fn spawn_tcp(
        name: &str,
        mut cmd: Command,
        port: u16,
        wait: Duration,
    ) -> Result<Server, String> {
        cmd.stdout(Stdio::null())
            .stderr(Stdio::null())
            .stdin(Stdio::null());
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        let mut s = Server {
            child: Some(child),
            port,
            name: name.to_string(),
        };
        if !crate::wait_for_port(port, wait) {
            s.kill();
            return Err(format!(
                "{name} did not listen on port {port} within {wait:?}"
            ));
        }
        Ok(s)
    }

    /// Spawns without waiting for a TCP port (UDP servers).
    pub fn spawn(name: &str, mut cmd: Command, port: u16) -> Result<Server, String> {
        cmd.stdout(Stdio::null())
            .stderr(Stdio::null())
            .stdin(Stdio::null());
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        Ok(Server {
            child: Some(child),
            port,
            name: name.to_string(),
        })
    }

    /// Starts a throwaway `redis-server` on a free port (nothing saved to disk).
    pub fn redis() -> Result<Server, String> {
        let bin = crate::which("redis-server").ok_or("redis-server is not installed")?;
        let port = crate::free_port();
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
        cmd.current_dir(std::env::temp_dir());
        Server::spawn_tcp("redis-server", cmd, port, Duration::from_secs(10))
    }

    /// Kills the process now (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}
