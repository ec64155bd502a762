//! Private hosts in network namespaces: a veth pair, an address on each side, iptables rules
//! inside, processes living only there. Everything is removed when the guard drops, even when
//! the test panics. Needs root.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A network namespace reachable from the host over a veth pair (`host_ip` ↔ `ns_ip`, a /30).
pub struct Netns {
    pub name: String,
    pub host_if: String,
    pub host_ip: Ipv4Addr,
    pub ns_ip: Ipv4Addr,
    children: Vec<Child>,
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Holds an exclusive `flock` so concurrent test processes pick distinct subnets.
struct AllocLock(File);

impl AllocLock {
    fn take() -> Result<AllocLock, String> {
        let f = File::create(std::env::temp_dir().join("portwarden-netns.lock"))
            .map_err(|e| format!("cannot create the netns lock file: {e}"))?;
        // SAFETY: flock on a valid, owned descriptor.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        if rc != 0 {
            return Err("cannot lock the netns lock file".into());
        }
        Ok(AllocLock(f))
    }
}

impl Drop for AllocLock {
    fn drop(&mut self) {
        // SAFETY: unlocking the descriptor we locked.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

impl Netns {
    /// Creates the namespace, the veth pair and the addresses (10.78.N.1 host, .2 inside).
    pub fn new() -> Result<Netns, String> {
        if !crate::is_root() {
            return Err("network namespaces need root".into());
        }
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{:x}{:x}", std::process::id(), n);
        let tag = &tag[tag.len().saturating_sub(10)..];
        let name = format!("pw-{tag}");
        let host_if = format!("pwh{tag}");
        let ns_if = format!("pwn{tag}");
        let _lock = AllocLock::take()?;
        let used = run(Command::new("ip").args(["-o", "-4", "addr", "show"]))?;
        let block = (0u8..=255)
            .find(|b| !used.contains(&format!(" 10.78.{b}.")))
            .ok_or("no free 10.78.N.0/30 subnet left for a test namespace")?;
        let host_ip = Ipv4Addr::new(10, 78, block, 1);
        let ns_ip = Ipv4Addr::new(10, 78, block, 2);
        let mut ns = Netns {
            name: name.clone(),
            host_if: host_if.clone(),
            host_ip,
            ns_ip,
            children: Vec::new(),
        };
        run(Command::new("ip").args(["netns", "add", &name]))?;
        run(Command::new("ip").args([
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ]))?;
        run(Command::new("ip").args(["link", "set", &ns_if, "netns", &name]))?;
        run(Command::new("ip").args(["addr", "add", &format!("{host_ip}/30"), "dev", &host_if]))?;
        run(Command::new("ip").args(["link", "set", &host_if, "up"]))?;
        ns.exec(&["ip", "addr", "add", &format!("{ns_ip}/30"), "dev", &ns_if])?;
        ns.exec(&["ip", "link", "set", &ns_if, "up"])?;
        ns.exec(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Runs a command inside the namespace and returns its stdout.
    pub fn exec(&mut self, args: &[&str]) -> Result<String, String> {
        run(Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args))
    }

    /// Adds an iptables rule inside the namespace, e.g.
    /// `-A INPUT -p tcp --dport 7001 -j DROP`.
    pub fn iptables(&mut self, rule: &str) -> Result<(), String> {
        let mut args = vec!["iptables"];
        args.extend(rule.split_whitespace());
        self.exec(&args).map(|_| ())
    }

    /// Flushes every iptables rule inside the namespace.
    pub fn iptables_flush(&mut self) -> Result<(), String> {
        self.exec(&["iptables", "-F"]).map(|_| ())
    }

    /// Starts a long-running process inside the namespace; it is killed on drop.
    pub fn spawn(&mut self, args: &[&str]) -> Result<u32, String> {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot spawn {args:?} in {}: {e}", self.name))?;
        let pid = child.id();
        self.children.push(child);
        Ok(pid)
    }

    /// Runs `f` on a thread that has entered this namespace: sockets it creates (listeners,
    /// UDP responders) live inside the namespace, and keep working from any thread afterwards.
    pub fn within<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, String> {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                let ns = File::open(&path).map_err(|e| format!("cannot open {path}: {e}"))?;
                // SAFETY: setns on a valid namespace descriptor; affects only this thread.
                if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(format!(
                        "setns({path}): {}",
                        std::io::Error::last_os_error()
                    ));
                }
                Ok(f())
            })
            .join()
            .map_err(|_| "the namespace thread panicked".to_string())?
        })
    }

    /// A command that runs inside this namespace (for callers that need the `Child`).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Kill anything else still running in the namespace, then remove it and the link.
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(p) = pid.parse::<i32>() {
                    // SAFETY: sending SIGKILL to a pid that lives in our test namespace.
                    unsafe { libc::kill(p, libc::SIGKILL) };
                }
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
    }
}
