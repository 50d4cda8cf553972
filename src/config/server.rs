//! `server.*`: the listener, its bounds, and the proxies it believes.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

use super::string_list;

/// `server.*`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address and port to listen on.
    #[serde(deserialize_with = "socket_addr")]
    pub listen: SocketAddr,
    /// Largest accepted request body, in bytes; larger ones get 413 before they are buffered.
    pub max_body_bytes: usize,
    /// Reverse proxies (IP addresses or CIDR ranges) whose `X-Forwarded-For` is believed.
    #[serde(deserialize_with = "ip_ranges")]
    pub trusted_proxies: Vec<IpRange>,
    /// HTTP worker threads; 0 means one per core.
    pub workers: usize,
    /// Serve every route under this prefix (e.g. `/fxhook` behind a shared host); empty: none.
    pub path_prefix: String,
    /// Deadline for a request body once its headers are in: a client that stalls mid-body gets
    /// `408` and its connection is closed, so stalled uploads cannot pile up.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// Most open client connections (all workers together); unset: sized to the process's
    /// open-file limit (see [`ServerSettings::connection_budget`]).
    pub max_connections: Option<usize>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 1024 * 1024,
            trusted_proxies: Vec::new(),
            workers: 0,
            path_prefix: String::new(),
            body_timeout: Duration::from_secs(10),
            max_connections: None,
        }
    }
}

/// File descriptors kept out of the connection budget: the store and its WAL, the listener, the
/// mappings watcher, the vendor client's connections, logs; and a few per HTTP worker (its
/// poller and wakers).
const RESERVED_FILES: usize = 64;
/// Kept out of the budget for each HTTP worker.
const RESERVED_PER_WORKER: usize = 4;

/// How many connections the server may hold open, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionBudget {
    /// Connections per HTTP worker (actix's limit is per worker).
    pub per_worker: usize,
    /// `per_worker` × workers.
    pub total: usize,
    /// Set when `server.max_connections` asked for more than the file limit allows.
    pub clamped_from: Option<usize>,
}

impl ServerSettings {
    /// The connection bound for `workers` HTTP workers under an open-file limit of
    /// `file_limit`: `server.max_connections` when it fits, else what the limit leaves after
    /// `RESERVED_FILES` (64). Never less than one connection a worker.
    pub fn connection_budget(&self, workers: usize, file_limit: u64) -> ConnectionBudget {
        let workers = workers.max(1);
        let fits = usize::try_from(file_limit)
            .unwrap_or(usize::MAX)
            .saturating_sub(RESERVED_FILES + RESERVED_PER_WORKER * workers)
            .max(workers);
        let (wanted, clamped_from) = match self.max_connections {
            Some(n) if n > fits => (fits, Some(n)),
            Some(n) => (n.max(workers), None),
            None => (fits, None),
        };
        let per_worker = wanted / workers;
        ConnectionBudget {
            per_worker,
            total: per_worker * workers,
            clamped_from,
        }
    }
}

/// `IP:PORT`.
fn socket_addr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(d)?;
    text.trim().parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "{text:?} is not an IP:PORT address such as 127.0.0.1:8080"
        ))
    })
}

/// Addresses or CIDR ranges, as a list or one comma-separated string.
fn ip_ranges<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<IpRange>, D::Error> {
    string_list(d)?
        .iter()
        .map(|p| {
            parse_ip_range(p).map_err(|_| {
                serde::de::Error::custom(format!("{p:?} is not an IP address or CIDR range"))
            })
        })
        .collect()
}

/// An IP address or a CIDR range, as written in `server.trusted_proxies`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    network: std::net::IpAddr,
    prefix: u8,
}

impl IpRange {
    /// True when `ip` is inside the range.
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr::{V4, V6};
        let ip = match ip {
            V6(v6) => v6.to_ipv4_mapped().map(V4).unwrap_or(V6(v6)),
            v4 => v4,
        };
        match (self.network, ip) {
            (V4(net), V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (V6(net), V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Parses `10.0.0.1` or `10.0.0.0/8` or `::1`.
///
/// # Errors
/// When the text is neither.
pub fn parse_ip_range(text: &str) -> anyhow::Result<IpRange> {
    let (addr, prefix) = match text.trim().split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text.trim(), None),
    };
    let network: std::net::IpAddr = addr.parse().context("not an IP address")?;
    let max = if network.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        Some(p) => p
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .context("bad prefix length")?,
        None => max,
    };
    Ok(IpRange { network, prefix })
}
