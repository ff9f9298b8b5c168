//! Network access for one worker: off by default, granted with wasmtime's `-S` spellings
//! (`inherit-network`, `tcp`, `udp`, `allow-ip-name-lookup`).
//!
//! A grant widens both walls of that worker only: wasmtime-wasi lets the guest's sockets
//! reach addresses, and the worker's seccomp filter admits the socket calls (IPv4 and IPv6
//! sockets only: no Unix, netlink or raw sockets), plus, for name lookups, landlock read
//! access to the resolver's files under `/etc`. Every other worker keeps today's walls.

use serde::{Deserialize, Serialize};

/// What of the network a worker may use. The default is nothing.
///
/// # Examples
///
/// ```
/// // As `wasmtime run -S inherit-network,udp=n`: TCP to any address, no UDP.
/// let network = wasmp::Network {
///     udp: false,
///     ..wasmp::Network::inherit()
/// };
/// let grants = wasmp::Grants::new().network(network);
/// # let _ = grants;
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Network {
    /// Any address and port may be reached or bound (`-S inherit-network`); without it no
    /// address is allowed, so `tcp` and `udp` open nothing.
    pub inherit: bool,
    /// `wasi:sockets` TCP (`-S tcp`).
    pub tcp: bool,
    /// `wasi:sockets` UDP (`-S udp`).
    pub udp: bool,
    /// `wasi:sockets/ip-name-lookup` (`-S allow-ip-name-lookup`): the host's resolver.
    pub ip_name_lookup: bool,
}

impl Network {
    /// `-S inherit-network` alone: every address, TCP and UDP, no name lookups (wasmtime's
    /// defaults for the other three).
    pub fn inherit() -> Network {
        Network {
            inherit: true,
            tcp: true,
            udp: true,
            ip_name_lookup: false,
        }
    }

    /// Whether the worker makes socket system calls at all.
    pub(crate) fn opens_sockets(&self) -> bool {
        (self.inherit && (self.tcp || self.udp)) || self.ip_name_lookup
    }
}

/// Files the host's resolver reads (glibc's built-in `files` and `dns` services), granted
/// read-only to a worker allowed name lookups.
pub(crate) const RESOLVER_FILES: &[&str] = &[
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
    "/etc/gai.conf",
];
