//! The server's settings: read from a TOML file, `CAIRN_*` environment variables and
//! command-line flags (later sources win), then validated once into a [`ServerConfig`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Every setting, each optional: one layer of configuration (a file, the environment or
/// the flags). [`RawConfig::layer`] stacks them; [`RawConfig::validate`] checks the result.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Data directory.
    pub data: Option<PathBuf>,
    /// QUIC address for peers and SDK clients.
    pub listen: Option<String>,
    /// Address peers should dial, when it differs from `listen` (a wildcard bind).
    pub advertise: Option<String>,
    /// HTTP address.
    pub http: Option<String>,
    /// An existing node's QUIC address, to join its cluster.
    pub join: Option<String>,
    /// Failure domain.
    pub zone: Option<String>,
    /// Relative storage capacity (0: a gateway that holds no data).
    pub capacity: Option<u64>,
    /// A name for logs and status.
    pub name: Option<String>,
    /// Replicas per partition, fixed when a cluster's first node starts.
    pub replication: Option<u8>,
    /// Partitions in the ring, fixed when a cluster's first node starts.
    pub partitions: Option<u16>,
    /// `fsync` (default) or `none`.
    pub durability: Option<String>,
    /// Cluster CA certificate (PEM).
    pub tls_ca: Option<PathBuf>,
    /// This node's certificate (PEM).
    pub tls_cert: Option<PathBuf>,
    /// This node's private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Test-only: milliseconds added to this node's wall clock (clock-skew faults).
    pub clock_offset_ms: Option<i64>,
    /// How long a first start keeps asking the `join` node (milliseconds).
    pub join_patience_ms: Option<u64>,
    /// Threads serving QUIC and HTTP and running the node's core ([`default_io_threads`]
    /// if unset).
    pub io_threads: Option<usize>,
    /// Memory for the decoded values of recent writes, kept for the next update of their
    /// key, in MiB (estimated; [`WARM_MIB_DEFAULT`] if unset, 0 keeps none).
    pub warm_mib: Option<u64>,
    /// Client requests this node coordinates that take at least this long are logged
    /// (milliseconds; [`SLOW_REQUEST_MS_DEFAULT`] if unset, 0 logs none). See
    /// `crate::slow`.
    pub slow_request_ms: Option<u64>,
}

/// The environment variables [`RawConfig::from_env`] reads, with the setting each sets.
pub const ENV_VARS: &[(&str, &str)] = &[
    ("CAIRN_DATA", "data"),
    ("CAIRN_LISTEN", "listen"),
    ("CAIRN_ADVERTISE", "advertise"),
    ("CAIRN_HTTP", "http"),
    ("CAIRN_JOIN", "join"),
    ("CAIRN_ZONE", "zone"),
    ("CAIRN_CAPACITY", "capacity"),
    ("CAIRN_NAME", "name"),
    ("CAIRN_REPLICATION", "replication"),
    ("CAIRN_PARTITIONS", "partitions"),
    ("CAIRN_DURABILITY", "durability"),
    ("CAIRN_TLS_CA", "tls_ca"),
    ("CAIRN_TLS_CERT", "tls_cert"),
    ("CAIRN_TLS_KEY", "tls_key"),
    ("CAIRN_CLOCK_OFFSET_MS", "clock_offset_ms"),
    ("CAIRN_JOIN_PATIENCE_MS", "join_patience_ms"),
    ("CAIRN_IO_THREADS", "io_threads"),
    ("CAIRN_WARM_MIB", "warm_mib"),
    ("CAIRN_SLOW_REQUEST_MS", "slow_request_ms"),
];

/// A configuration that does not parse or does not make sense.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

fn bad(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
}

impl RawConfig {
    /// Reads a TOML file whose keys are the field names above.
    pub fn from_file(path: &Path) -> Result<RawConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
        toml::from_str(&text).map_err(|e| bad(format!("{}: {e}", path.display())))
    }

    /// Reads the `CAIRN_*` variables named in [`ENV_VARS`] through `get`.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<RawConfig, ConfigError> {
        let mut toml_text = String::new();
        for (var, field) in ENV_VARS {
            if let Some(value) = get(var) {
                let value = match *field {
                    "capacity" | "replication" | "partitions" | "clock_offset_ms"
                    | "join_patience_ms" | "io_threads" | "warm_mib" | "slow_request_ms" => {
                        value
                            .trim()
                            .parse::<i128>()
                            .map_err(|_| bad(format!("{var}={value:?} is not a number")))?;
                        value.trim().to_owned()
                    }
                    _ => toml_string(&value),
                };
                toml_text.push_str(&format!("{field} = {value}\n"));
            }
        }
        toml::from_str(&toml_text).map_err(|e| bad(format!("environment: {e}")))
    }

    /// `self` with every setting that `over` has replaced by `over`'s.
    pub fn layer(self, over: RawConfig) -> RawConfig {
        RawConfig {
            data: over.data.or(self.data),
            listen: over.listen.or(self.listen),
            advertise: over.advertise.or(self.advertise),
            http: over.http.or(self.http),
            join: over.join.or(self.join),
            zone: over.zone.or(self.zone),
            capacity: over.capacity.or(self.capacity),
            name: over.name.or(self.name),
            replication: over.replication.or(self.replication),
            partitions: over.partitions.or(self.partitions),
            durability: over.durability.or(self.durability),
            tls_ca: over.tls_ca.or(self.tls_ca),
            tls_cert: over.tls_cert.or(self.tls_cert),
            tls_key: over.tls_key.or(self.tls_key),
            clock_offset_ms: over.clock_offset_ms.or(self.clock_offset_ms),
            join_patience_ms: over.join_patience_ms.or(self.join_patience_ms),
            io_threads: over.io_threads.or(self.io_threads),
            warm_mib: over.warm_mib.or(self.warm_mib),
            slow_request_ms: over.slow_request_ms.or(self.slow_request_ms),
        }
    }

    /// Checks every setting and fills in the defaults.
    pub fn validate(self) -> Result<ServerConfig, ConfigError> {
        let tls = match (self.tls_ca, self.tls_cert, self.tls_key) {
            (None, None, None) => Tls::Development,
            (Some(ca), Some(cert), Some(key)) => Tls::Files { ca, cert, key },
            _ => {
                return Err(bad(
                    "tls_ca, tls_cert and tls_key go together: set all three or none",
                ))
            }
        };
        let mut listen = addr("listen", self.listen.as_deref().unwrap_or("127.0.0.1:7000"))?;
        let mut http = addr("http", self.http.as_deref().unwrap_or("127.0.0.1:8000"))?;
        let mut loopback_forced = false;
        if tls == Tls::Development {
            // A development CA's key sits in the data directory: never expose it.
            for a in [&mut listen, &mut http] {
                if !a.ip().is_loopback() {
                    a.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
                    loopback_forced = true;
                }
            }
        }
        let advertise = match self.advertise {
            Some(text) => addr("advertise", &text)?,
            None if listen.ip().is_unspecified() => {
                return Err(bad(
                    "listen is a wildcard address: set advertise to the address peers dial",
                ))
            }
            None => listen,
        };
        let join = self.join.map(|j| addr("join", &j)).transpose()?;
        let zone = self.zone.unwrap_or_else(|| "default".to_owned());
        cairn_ring::Zone::new(zone.clone()).map_err(|e| bad(format!("zone: {e}")))?;
        let replication = self.replication.unwrap_or(1);
        let partitions = self.partitions.unwrap_or(64);
        cairn_ring::LayoutConfig::new(partitions, replication)
            .map_err(|e| bad(format!("replication/partitions: {e}")))?;
        let durability = match self.durability.as_deref().unwrap_or("fsync") {
            "fsync" => Durability::Fsync,
            "none" => Durability::None,
            other => return Err(bad(format!("durability {other:?}: expected fsync or none"))),
        };
        let io_threads = self.io_threads.unwrap_or_else(default_io_threads);
        if !(1..=IO_THREADS_MAX).contains(&io_threads) {
            return Err(bad(format!("io_threads must be 1..={IO_THREADS_MAX}")));
        }
        let warm_mib = self.warm_mib.unwrap_or(WARM_MIB_DEFAULT);
        if warm_mib > WARM_MIB_MAX {
            return Err(bad(format!("warm_mib must be 0..={WARM_MIB_MAX}")));
        }
        let name = self
            .name
            .unwrap_or_else(|| format!("cairn-{}", advertise.port()));
        if name.is_empty() || name.len() > NAME_BYTES_MAX {
            return Err(bad(format!("name must be 1..={NAME_BYTES_MAX} bytes")));
        }
        Ok(ServerConfig {
            data: self.data.unwrap_or_else(|| PathBuf::from("./cairn-data")),
            listen,
            advertise,
            http,
            join,
            zone,
            capacity: self.capacity.unwrap_or(100),
            name,
            replication,
            partitions,
            durability,
            tls,
            loopback_forced,
            clock_offset_ms: self.clock_offset_ms.unwrap_or(0),
            shutdown_grace: Duration::from_secs(10),
            join_patience: Duration::from_millis(self.join_patience_ms.unwrap_or(30_000)),
            io_threads,
            warm_bytes: warm_mib << 20,
            slow_request: match self.slow_request_ms.unwrap_or(SLOW_REQUEST_MS_DEFAULT) {
                0 => None,
                ms => Some(Duration::from_millis(ms)),
            },
        })
    }
}

/// The slow-request log's threshold by default, in milliseconds: a tenth of the default
/// request timeout (5 s), well above what a healthy cluster takes (p99.9 of 10–30 ms on
/// the development VM at half its peak).
pub const SLOW_REQUEST_MS_DEFAULT: u64 = 500;

/// Longest node name.
pub const NAME_BYTES_MAX: usize = 64;

/// Most threads serving QUIC and HTTP.
pub const IO_THREADS_MAX: usize = 256;

/// The store's decoded values of recent writes by default, in MiB
/// ([`cairn_store::WARM_BYTES`]).
pub const WARM_MIB_DEFAULT: u64 = cairn_store::WARM_BYTES >> 20;

/// Most MiB for those values (1 TiB): a bound that keeps the byte count far from
/// overflowing, not a sizing advice.
pub const WARM_MIB_MAX: u64 = 1 << 20;

/// Threads serving QUIC and HTTP and running the node's core (one task) by default: one,
/// on a current-thread runtime (the binary's `io_runtime` says why). The store's log
/// writer and applier have a thread each besides. On two cores: two multi-thread workers
/// fought over each QUIC connection's lock (one node ~32k against ~37k increments/s with
/// one worker, session 12), and even one multi-thread worker sends most answers in a
/// packet of their own (one node unbatched ~50–57k against ~59–67k/s on the
/// current-thread runtime, session 18; issue 8's notes have the runs). More threads are for experiments on larger machines, where they have not
/// been measured.
pub fn default_io_threads() -> usize {
    1
}

fn toml_string(s: &str) -> String {
    // A TOML basic string: escape what TOML requires.
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn addr(what: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.parse()
        .map_err(|_| bad(format!("{what} {text:?} is not an IP:port address")))
}

/// How the node's TLS identity is found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tls {
    /// No certificate configured: a development CA and node certificate are made in the
    /// data directory, and the node binds to loopback only.
    Development,
    /// PEM files from a cluster CA.
    Files {
        /// The CA certificate.
        ca: PathBuf,
        /// This node's certificate.
        cert: PathBuf,
        /// This node's key.
        key: PathBuf,
    },
}

/// Whether acknowledged writes are synced to disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Every acknowledged write is on disk (the default).
    Fsync,
    /// Writes are acknowledged before they are synced: tests and benchmarks only.
    None,
}

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Data directory.
    pub data: PathBuf,
    /// QUIC bind address.
    pub listen: SocketAddr,
    /// The QUIC address peers dial (in the layout).
    pub advertise: SocketAddr,
    /// HTTP bind address.
    pub http: SocketAddr,
    /// A node to join at first start.
    pub join: Option<SocketAddr>,
    /// Failure domain.
    pub zone: String,
    /// Relative capacity.
    pub capacity: u64,
    /// Name for logs and status.
    pub name: String,
    /// Replicas per partition of a new cluster.
    pub replication: u8,
    /// Partitions of a new cluster.
    pub partitions: u16,
    /// Sync policy.
    pub durability: Durability,
    /// TLS identity source.
    pub tls: Tls,
    /// Whether a non-loopback address was replaced by 127.0.0.1 (development TLS).
    pub loopback_forced: bool,
    /// Test-only wall-clock offset.
    pub clock_offset_ms: i64,
    /// How long a graceful shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
    /// How long a first start keeps asking the `join` node to stage it.
    pub join_patience: Duration,
    /// Threads serving QUIC and HTTP and running the node's core (one: a current-thread
    /// runtime).
    pub io_threads: usize,
    /// The store's memory for decoded values of recent writes (estimated bytes).
    pub warm_bytes: u64,
    /// Requests coordinated here that take at least this long are logged; `None`: none.
    pub slow_request: Option<Duration>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_no_configuration() {
        let c = RawConfig::default().validate().unwrap();
        assert_eq!(c.listen, "127.0.0.1:7000".parse().unwrap());
        assert_eq!(c.http, "127.0.0.1:8000".parse().unwrap());
        assert_eq!(c.data, PathBuf::from("./cairn-data"));
        assert_eq!(c.tls, Tls::Development);
        assert_eq!(c.durability, Durability::Fsync);
        assert_eq!(c.io_threads, default_io_threads());
        assert!(c.io_threads >= 1);
        assert_eq!(c.warm_bytes, cairn_store::WARM_BYTES);
        assert_eq!(
            c.slow_request,
            Some(Duration::from_millis(SLOW_REQUEST_MS_DEFAULT))
        );
    }

    #[test]
    fn development_tls_binds_to_loopback_only() {
        let raw = RawConfig {
            listen: Some("0.0.0.0:7100".into()),
            http: Some("0.0.0.0:8100".into()),
            ..Default::default()
        };
        let c = raw.validate().unwrap();
        assert!(c.loopback_forced);
        assert_eq!(c.listen, "127.0.0.1:7100".parse().unwrap());
        assert_eq!(c.http, "127.0.0.1:8100".parse().unwrap());
    }

    #[test]
    fn later_layers_win_and_env_is_typed() {
        let file: RawConfig = toml::from_str("zone = \"a\"\ncapacity = 5\n").unwrap();
        let env = RawConfig::from_env(|v| match v {
            "CAIRN_ZONE" => Some("b".into()),
            "CAIRN_CAPACITY" => Some("7".into()),
            "CAIRN_IO_THREADS" => Some("3".into()),
            "CAIRN_WARM_MIB" => Some("16".into()),
            "CAIRN_SLOW_REQUEST_MS" => Some("0".into()),
            _ => None,
        })
        .unwrap();
        let c = file.layer(env).validate().unwrap();
        assert_eq!((c.zone.as_str(), c.capacity, c.io_threads), ("b", 7, 3));
        assert_eq!(c.warm_bytes, 16 << 20);
        assert_eq!(c.slow_request, None, "0 turns the slow-request log off");
        let err = RawConfig::from_env(|v| (v == "CAIRN_CAPACITY").then(|| "lots".into()));
        assert!(err.unwrap_err().to_string().contains("CAIRN_CAPACITY"));
    }

    #[test]
    fn bad_settings_are_named() {
        for (raw, needle) in [
            (
                RawConfig {
                    listen: Some("nope".into()),
                    ..Default::default()
                },
                "listen",
            ),
            (
                RawConfig {
                    durability: Some("sometimes".into()),
                    ..Default::default()
                },
                "durability",
            ),
            (
                RawConfig {
                    replication: Some(0),
                    ..Default::default()
                },
                "replication",
            ),
            (
                RawConfig {
                    tls_ca: Some("ca.pem".into()),
                    ..Default::default()
                },
                "tls_ca",
            ),
            (
                RawConfig {
                    io_threads: Some(0),
                    ..Default::default()
                },
                "io_threads",
            ),
            (
                RawConfig {
                    warm_mib: Some(WARM_MIB_MAX + 1),
                    ..Default::default()
                },
                "warm_mib",
            ),
        ] {
            let e = raw.validate().unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
        assert!(toml::from_str::<RawConfig>("colour = 1").is_err());
    }
}
