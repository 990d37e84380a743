//! The test network: one namespace per node, veth pairs on a bridge, and the faults
//! applied to it (iptables on UDP between nodes; netem where the kernel has it).

use std::net::Ipv4Addr;
use std::process::Command;

/// Runs a command; returns its stderr as the error.
pub(crate) fn sh(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The namespaces, bridge and addresses of one run.
pub(crate) struct Net {
    pub(crate) tag: String,
    pub(crate) nodes: usize,
    bridge: String,
    pub(crate) netem: bool,
}

impl Net {
    /// Node `i`'s address (0-based).
    pub(crate) fn addr(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, 0, 11 + u8::try_from(i).unwrap_or(0))
    }

    /// The namespace of node `i`.
    pub(crate) fn ns(&self, i: usize) -> String {
        format!("{}-n{i}", self.tag)
    }

    /// Whether this machine lets us make namespaces (root, iproute2, iptables).
    pub(crate) fn check() -> Result<(), String> {
        let probe = format!("cairn-probe-{}", std::process::id());
        sh(&["ip", "netns", "add", &probe])?;
        let ipt = Self::in_ns(&probe, "iptables -S");
        let _ = sh(&["ip", "netns", "del", &probe]);
        ipt
    }

    /// Runs `command` (words separated by spaces) inside namespace `ns`.
    fn in_ns(ns: &str, command: &str) -> Result<(), String> {
        let mut args = vec!["ip", "netns", "exec", ns];
        args.extend(command.split_whitespace());
        sh(&args)
    }

    /// The veth end inside node `i`'s namespace.
    fn dev(&self, i: usize) -> String {
        format!("{}e{i}", self.tag)
    }

    /// Creates the bridge (10.77.0.1, where the clients live) and one namespace per node.
    pub(crate) fn up(nodes: usize) -> Result<Net, String> {
        let tag = format!("cn{}", std::process::id() % 100_000);
        let net = Net {
            bridge: format!("{tag}br"),
            tag,
            nodes,
            netem: false,
        };
        net.down(); // Leftovers of a crashed run with the same pid.
        let br = &net.bridge;
        for cmd in [
            format!("ip link add {br} type bridge"),
            format!("ip addr add 10.77.0.1/24 dev {br}"),
            format!("ip link set {br} up"),
        ] {
            sh(&cmd.split_whitespace().collect::<Vec<_>>())?;
        }
        for i in 0..nodes {
            let (ns, host, inner) = (net.ns(i), format!("{}v{i}", net.tag), net.dev(i));
            for cmd in [
                format!("ip netns add {ns}"),
                format!("ip link add {host} type veth peer name {inner}"),
                format!("ip link set {inner} netns {ns}"),
                format!("ip link set {host} master {br}"),
                format!("ip link set {host} up"),
            ] {
                sh(&cmd.split_whitespace().collect::<Vec<_>>())?;
            }
            let cidr = format!("{}/24", net.addr(i));
            Self::in_ns(&ns, &format!("ip addr add {cidr} dev {inner}"))?;
            Self::in_ns(&ns, &format!("ip link set {inner} up"))?;
            Self::in_ns(&ns, "ip link set lo up")?;
        }
        let dev = net.dev(0);
        let netem = Self::in_ns(
            &net.ns(0),
            &format!("tc qdisc add dev {dev} root netem delay 1ms"),
        )
        .is_ok();
        if netem {
            let _ = Self::in_ns(&net.ns(0), &format!("tc qdisc del dev {dev} root"));
        }
        Ok(Net { netem, ..net })
    }

    /// Removes everything `up` made (errors ignored: parts may be gone already).
    pub(crate) fn down(&self) {
        for i in 0..self.nodes {
            let _ = sh(&["ip", "netns", "del", &self.ns(i)]);
            let _ = sh(&["ip", "link", "del", &format!("{}v{i}", self.tag)]);
        }
        let _ = sh(&["ip", "link", "del", &self.bridge]);
    }

    /// Drops UDP from node `from` to node `to` (in `from`'s namespace, outbound).
    pub(crate) fn block(&self, from: usize, to: usize) -> Result<(), String> {
        let dst = self.addr(to);
        Self::in_ns(
            &self.ns(from),
            &format!("iptables -A OUTPUT -p udp -d {dst} -j DROP"),
        )
    }

    /// Drops a fraction of the UDP node `i` sends to other nodes (iptables statistic).
    pub(crate) fn lossy(&self, i: usize, probability: f64) -> Result<(), String> {
        // Only towards the other nodes: replies to the clients (10.77.0.1) are spared.
        for j in (0..self.nodes).filter(|j| *j != i) {
            let dst = self.addr(j);
            let rule = format!(
                "iptables -A OUTPUT -p udp -d {dst} -m statistic --mode random --probability {probability} -j DROP"
            );
            Self::in_ns(&self.ns(i), &rule)?;
        }
        Ok(())
    }

    /// Delay, duplication and reordering on node `i`'s link (needs sch_netem).
    pub(crate) fn netem(&self, i: usize) -> Result<(), String> {
        let dev = self.dev(i);
        let qdisc =
            format!("tc qdisc add dev {dev} root netem delay 30ms 10ms duplicate 2% reorder 10%");
        Self::in_ns(&self.ns(i), &qdisc)
    }

    /// Removes every rule and qdisc: the network is whole again.
    pub(crate) fn heal(&self) {
        for i in 0..self.nodes {
            let _ = Self::in_ns(&self.ns(i), "iptables -F");
            let _ = Self::in_ns(
                &self.ns(i),
                &format!("tc qdisc del dev {} root", self.dev(i)),
            );
        }
    }
}
