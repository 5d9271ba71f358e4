//! The host's IPv4 interfaces (`getifaddrs`).

use std::net::Ipv4Addr;

use nix::net::if_::InterfaceFlags;

/// An IPv4 interface address of this host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Interface {
    /// Name (`eth0`, `wlan0`, `lo`).
    pub name: String,
    /// OS interface index (`ifindex`).
    pub index: u32,
    /// This host's address on it.
    pub addr: Ipv4Addr,
    /// Its netmask.
    pub netmask: Ipv4Addr,
    /// Its broadcast address, if it has one.
    pub broadcast: Option<Ipv4Addr>,
    /// The loopback interface.
    pub loopback: bool,
    /// The interface says it supports multicast (`IFF_MULTICAST`).
    pub multicast: bool,
}

impl Interface {
    /// Whether `ip` is on this interface's subnet (or is its address).
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let m = u32::from(self.netmask);
        ip == self.addr || (u32::from(ip) & m) == (u32::from(self.addr) & m)
    }
}

/// Every IPv4 address of every interface that is up, in the order the OS
/// lists them.
///
/// # Errors
/// When `getifaddrs` fails.
pub(crate) fn list() -> std::io::Result<Vec<Interface>> {
    let mut out = Vec::new();
    for ifa in nix::ifaddrs::getifaddrs().map_err(std::io::Error::from)? {
        if !ifa.flags.contains(InterfaceFlags::IFF_UP) {
            continue;
        }
        let v4 = |s: &Option<nix::sys::socket::SockaddrStorage>| {
            s.as_ref()
                .and_then(|s| s.as_sockaddr_in())
                .map(|s| Ipv4Addr::from(s.ip()))
        };
        let Some(addr) = v4(&ifa.address) else {
            continue;
        };
        let netmask = v4(&ifa.netmask).unwrap_or(Ipv4Addr::BROADCAST);
        let broadcast = if ifa.flags.contains(InterfaceFlags::IFF_BROADCAST) {
            v4(&ifa.broadcast)
        } else {
            None
        };
        let index = nix::net::if_::if_nametoindex(ifa.interface_name.as_str()).unwrap_or(0);
        out.push(Interface {
            name: ifa.interface_name.clone(),
            index,
            addr,
            netmask,
            broadcast,
            loopback: ifa.flags.contains(InterfaceFlags::IFF_LOOPBACK),
            multicast: ifa.flags.contains(InterfaceFlags::IFF_MULTICAST),
        });
    }
    Ok(out)
}
