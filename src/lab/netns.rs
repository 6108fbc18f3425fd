//! Network namespaces for the failover test bed: one namespace per host (NVRs,
//! cameras, the lab's controller) joined by veth pairs to a bridge in a switch
//! namespace, all named with a per-run prefix and removed on every exit path.
//!
//! Must never touch the root namespace's interfaces or routes: every `ip`
//! command names its namespace, so the test addresses exist only inside.

use std::process::Command;

use anyhow::{bail, Context, Result};

pub struct Net {
    pub prefix: String,
    hosts: Vec<String>,
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running `ip` (Debian package iproute2)")?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

impl Net {
    /// Creates the switch namespace with its bridge. Removes leftovers of an
    /// earlier run that was killed before it could clean up.
    pub fn new(prefix: &str) -> Result<Net> {
        if let Ok(out) = Command::new("ip").args(["netns", "list"]).output() {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let name = line.split_whitespace().next().unwrap_or_default();
                if name.starts_with(prefix) {
                    let _ = ip(&["netns", "del", name]);
                }
            }
        }
        let net = Net {
            prefix: prefix.to_string(),
            hosts: Vec::new(),
        };
        let sw = net.ns("sw");
        ip(&["netns", "add", &sw])?;
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &sw, "link", "set", "br0", "up"])?;
        Ok(net)
    }

    pub fn ns(&self, host: &str) -> String {
        format!("{}{host}", self.prefix)
    }

    /// Adds a host namespace with `eth0` at `addr` (CIDR) on the bridge.
    pub fn add_host(&mut self, host: &str, addr: &str) -> Result<()> {
        let ns = self.ns(host);
        let sw = self.ns("sw");
        ip(&["netns", "add", &ns])?;
        self.hosts.push(ns.clone());
        let port = format!("v{}", self.hosts.len());
        ip(&[
            "-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ])?;
        ip(&["-n", &sw, "link", "set", &port, "master", "br0", "up"])?;
        ip(&["-n", &ns, "addr", "add", addr, "dev", "eth0"])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        Ok(())
    }

    /// The paper's pulled cable.
    pub fn set_link(&self, host: &str, up: bool) -> Result<()> {
        ip(&[
            "-n",
            &self.ns(host),
            "link",
            "set",
            "eth0",
            if up { "up" } else { "down" },
        ])
    }

    /// Cuts (or heals) the path between two hosts only, with blackhole routes
    /// on both sides; both keep reaching everyone else.
    pub fn partition(&self, a: (&str, &str), b: (&str, &str), on: bool) -> Result<()> {
        let verb = if on { "add" } else { "del" };
        ip(&["-n", &self.ns(a.0), "route", verb, "blackhole", &format!("{}/32", b.1)])?;
        ip(&["-n", &self.ns(b.0), "route", verb, "blackhole", &format!("{}/32", a.1)])
    }

    /// Bytes received on a host's `eth0` so far.
    pub fn rx_bytes(&self, host: &str) -> Result<u64> {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns(host),
                "cat",
                "/sys/class/net/eth0/statistics/rx_bytes",
            ])
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
    }

    /// Moves the calling thread into a host's namespace (its sockets then live there).
    pub fn enter(&self, host: &str) -> Result<()> {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open(format!("/run/netns/{}", self.ns(host)))?;
        // SAFETY: setns on a descriptor we hold open; affects only this thread.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// A command run inside a host's namespace.
    pub fn command(&self, host: &str, program: &std::path::Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(host)]).arg(program);
        c
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in self.hosts.iter().chain(std::iter::once(&self.ns("sw"))) {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}
