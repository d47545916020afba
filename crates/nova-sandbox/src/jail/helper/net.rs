//! Network access for one run (`ExecRequest::network`): egress through slirp4netns, a user-mode TCP/IP stack,
//! under an egress policy enforced by the run's own routing table.
//!
//! Every run has a fresh network namespace. With network on, the helper starts slirp4netns on it: the tool
//! creates a tap device there (`tap0`) and turns the program's packets into ordinary sockets of the host,
//! opened by the tool, which the helper kills when the run ends. The run's init then configures the
//! namespace (see [`configure`]): the program's address, a `/32` route to the tool's gateway, a default route
//! through it, and a `prohibit` route for every refused destination: loopback,
//! private, link-local (the cloud metadata address among them), CGNAT, multicast, reserved and unspecified
//! ranges, and each of the host's own addresses. The kernel looks the route up at `connect` and `sendto` on
//! the address actually used (after DNS), so a refused destination fails at once with `EACCES` and no packet
//! reaches the tool. The program cannot change the routes (it holds no capability), has no raw or packet
//! socket (seccomp), and reaches the tool only through its neighbour entries: binding a socket to `tap0` (or
//! naming it in `IP_PKTINFO`) makes the kernel take a refused address as on-link, and the tool answers ARP for
//! its own two addresses only: its gateway `10.0.2.2`, which relays nothing (`--disable-host-loopback`), and
//! its DNS forwarder `10.0.2.3`, which relays every port, not only 53, to the host's resolver (often on the
//! host's loopback or private network), so the run takes that address as its own and never sends to it.
//! Runs resolve names through the host's name servers that the policy allows (see [`public_resolvers`]), or
//! not at all. No IPv6 is configured, so IPv6 egress fails with `ENETUNREACH`.
//!
//! A seccomp user-notification filter on the program's `connect` and `sendto` was the alternative; it reads
//! the address from the program's memory, which another of its threads can change between the check and
//! the call, so it cannot be a policy on its own.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::os::{self, pid_t};

/// The user-mode network stack, and the Debian package that has it.
pub(super) const TOOL: &str = "slirp4netns";

/// The tap device the tool creates in the run's network namespace.
const DEVICE: &str = "tap0";
/// The program's address and the tool's gateway (its defaults for `10.0.2.0/24`).
const GUEST: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 100);
const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
/// The tool's DNS forwarder, which relays whatever reaches it (any port, even with `--disable-dns`) to the
/// host's resolver: the run owns this address itself, so nothing sent to it ever leaves the namespace.
const FORWARDER: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 3);

/// Destinations no run may reach, whatever resolves to them (the host's own addresses are added per run).
const REFUSED: [(Ipv4Addr, u8); 11] = nova_core::net::REFUSED_V4;

/// The most descriptors the tool may open: each of the program's connections and UDP peers is a socket of
/// the tool's, and the program itself may open 256.
const TOOL_MAX_FILES: u64 = 1024;

/// How long the tool may take to attach to the run's namespace.
const START_TIMEOUT: Duration = Duration::from_secs(5);

/// The egress policy of one run: the prefixes its routing table refuses.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Egress {
    pub(super) refused: Vec<(Ipv4Addr, u8)>,
}

impl Egress {
    /// The fixed ranges and the host's own addresses, read now (the helper runs in the host's network
    /// namespace, where the tool opens its sockets).
    pub(super) fn for_this_host() -> io::Result<Egress> {
        let mut refused = REFUSED.to_vec();
        for address in os::ipv4_addresses()? {
            if !refused.iter().any(|&(net, len)| within(address, net, len)) {
                refused.push((address, 32));
            }
        }
        Ok(Egress { refused })
    }

    fn refuses(&self, address: Ipv4Addr) -> bool {
        self.refused.iter().any(|&(net, len)| within(address, net, len))
    }
}

/// The host's IPv4 name servers (`/etc/resolv.conf`) that the policy lets a run reach: a run resolves names
/// through them directly. A host whose resolvers are all local or private gives runs none.
pub(super) fn public_resolvers() -> Vec<Ipv4Addr> {
    let Ok(egress) = Egress::for_this_host() else { return Vec::new() };
    let config = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    config
        .lines()
        .filter_map(|line| line.trim().strip_prefix("nameserver"))
        .filter_map(|address| address.trim().parse::<Ipv4Addr>().ok())
        .filter(|&address| !egress.refuses(address))
        .collect()
}

fn within(address: Ipv4Addr, net: Ipv4Addr, len: u8) -> bool {
    nova_core::net::within_v4(address, net, len)
}

/// Where the tool is installed, if it is: `configured` when given, else looked up in the system's
/// directories (the helper runs with an empty environment, and the caller's `PATH` is not trusted for what
/// runs as the helper).
pub(super) fn find_tool(configured: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = configured {
        return path.is_file().then(|| path.to_path_buf());
    }
    ["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"]
        .iter()
        .map(|dir| Path::new(dir).join(TOOL))
        .find(|path| path.is_file())
}

/// A running slirp4netns attached to one run's network namespace.
pub(super) struct Stack {
    child: Child,
    /// Closing this makes the tool exit (`--exit-fd`); it also dies with the helper (parent death signal).
    _exit: OwnedFd,
}

impl Stack {
    /// Starts the tool on the network namespace `netns` (owned by the jail's user namespace, that of the
    /// jail's init `init`) and waits until its device exists there.
    pub(super) fn start(tool: &Path, netns: OwnedFd, init: pid_t) -> Result<Stack, String> {
        let pipes = os::pipe().and_then(|ready| os::pipe().map(|exit| (ready, exit)));
        let ((ready_r, ready_w), (exit_r, exit_w)) = pipes.map_err(|e| format!("creating pipes: {e}"))?;
        let mut command = Command::new(tool);
        command
            .arg(format!("--ready-fd={}", ready_w.as_raw_fd()))
            .arg(format!("--exit-fd={}", exit_r.as_raw_fd()))
            // The tool parses the program's packets: it installs a seccomp filter on itself once attached. Not
            // `--enable-sandbox`: slirp4netns 1.2's own mount namespace detaches the host's shared mounts (the
            // named network namespaces under /run/netns vanished while it ran).
            .args(["--disable-host-loopback", "--disable-dns", "--enable-seccomp"])
            .arg("--netns-type=path")
            .arg(format!("--userns-path=/proc/{init}/ns/user"))
            .arg(format!("/proc/self/fd/{}", netns.as_raw_fd()))
            .arg(DEVICE)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        os::keep_fds_and_die_with_parent(
            &mut command,
            vec![ready_w.as_raw_fd(), exit_r.as_raw_fd(), netns.as_raw_fd()],
            TOOL_MAX_FILES,
        );
        let child = command.spawn().map_err(|e| format!("starting {}: {e}", tool.display()))?;
        drop((ready_w, exit_r, netns));
        let started = Instant::now();
        let mut ready = File::from(ready_r);
        let waited = loop {
            let left = START_TIMEOUT.saturating_sub(started.elapsed());
            match os::poll(&[(ready.as_raw_fd(), libc::POLLIN)], left.as_millis() as i32) {
                Ok(revents) if revents[0] != 0 => break ready.read(&mut [0u8; 1]).map_err(|e| e.to_string()),
                Ok(_) if left.is_zero() => break Err(format!("not ready after {START_TIMEOUT:?}")),
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(e.to_string()),
            }
        };
        let mut stack = Stack { child, _exit: exit_w };
        match waited {
            Ok(1) => Ok(stack),
            other => {
                let stderr = stack.child.stderr.take();
                drop(stack);
                let mut message = Vec::new();
                if let Some(mut stderr) = stderr {
                    // What it wrote before it died; never wait for more.
                    let _ = os::set_nonblocking(stderr.as_raw_fd());
                    let _ = stderr.read_to_end(&mut message);
                }
                let why = match other {
                    Err(e) => e,
                    Ok(_) => "it exited".to_owned(),
                };
                let message = String::from_utf8_lossy(&message);
                Err(format!("{TOOL} did not attach to the run's network ({why}): {}", message.trim()))
            }
        }
    }
}

impl Stack {
    /// Kills the tool at once; dropping the stack then only reaps it.
    pub(super) fn kill(mut self) -> Stack {
        let _ = self.child.kill();
        self
    }
}

impl Drop for Stack {
    /// Kills the tool and waits for it: no process of the run outlives it.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run by the run's init, root of the run's network namespace, once the tool's device exists: brings the
/// loopback and the device up and writes the routes described above.
pub(super) fn configure(egress: &Egress) -> io::Result<()> {
    let context = |what: String| move |e: io::Error| io::Error::new(e.kind(), format!("{what}: {e}"));
    let mut netlink = File::from(os::netlink_route().map_err(context("opening a netlink socket".into()))?);
    let device = os::interface_index(DEVICE).map_err(context(format!("finding {DEVICE}")))?;
    let loopback = os::interface_index("lo").map_err(context("finding lo".into()))?;
    let mut requests = vec![
        ("bringing lo up".to_owned(), link_up(loopback)),
        (format!("bringing {DEVICE} up"), link_up(device)),
        (format!("adding the address {GUEST}"), address(device, GUEST)),
        (format!("taking the address {FORWARDER}"), address(device, FORWARDER)),
    ];
    let r = Route { dst: GATEWAY, len: 32, kind: RTN_UNICAST, scope: RT_SCOPE_LINK, oif: device, via: None };
    requests.push((format!("adding the route to {GATEWAY}"), route(r)));
    let r = Route { dst: Ipv4Addr::UNSPECIFIED, len: 0, kind: RTN_UNICAST, scope: 0, oif: device, via: Some(GATEWAY) };
    requests.push(("adding the default route".to_owned(), route(r)));
    for &(dst, len) in &egress.refused {
        let r = Route { dst, len, kind: RTN_PROHIBIT, scope: 0, oif: 0, via: None };
        requests.push((format!("refusing {dst}/{len}"), route(r)));
    }
    for (seq, (what, (kind, flags, payload))) in (1..).zip(requests) {
        netlink.write_all(&netlink_message(kind, flags, seq, &payload)).map_err(context(what.clone()))?;
        acknowledged(&mut netlink, seq).map_err(context(what))?;
    }
    Ok(())
}

// The netlink constants used (linux/netlink.h, linux/rtnetlink.h, linux/if_addr.h).
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_STATIC: u8 = 4;
const RT_SCOPE_LINK: u8 = 253;
const RTN_UNICAST: u8 = 1;
const RTN_PROHIBIT: u8 = 8;

/// A message type, its flags and its payload (the header comes in [`netlink_message`]).
type Request = (u16, u16, Vec<u8>);

fn link_up(index: u32) -> Request {
    // struct ifinfomsg: family, pad, type, index, flags, change.
    let mut payload = vec![libc::AF_UNSPEC as u8, 0, 0, 0];
    payload.extend_from_slice(&(index as i32).to_ne_bytes());
    payload.extend_from_slice(&(libc::IFF_UP as u32).to_ne_bytes());
    payload.extend_from_slice(&(libc::IFF_UP as u32).to_ne_bytes());
    (RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, payload)
}

fn address(index: u32, address: Ipv4Addr) -> Request {
    // struct ifaddrmsg: family, prefix length, flags, scope, index. A /32: no route comes with it.
    let mut payload = vec![libc::AF_INET as u8, 32, 0, 0];
    payload.extend_from_slice(&index.to_ne_bytes());
    attribute(&mut payload, IFA_LOCAL, &address.octets());
    attribute(&mut payload, IFA_ADDRESS, &address.octets());
    (RTM_NEWADDR, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, payload)
}

struct Route {
    dst: Ipv4Addr,
    len: u8,
    kind: u8,
    scope: u8,
    /// The device, 0 for none.
    oif: u32,
    via: Option<Ipv4Addr>,
}

fn route(r: Route) -> Request {
    // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags (u32).
    let mut payload = vec![libc::AF_INET as u8, r.len, 0, 0, RT_TABLE_MAIN, RTPROT_STATIC, r.scope, r.kind, 0, 0, 0, 0];
    if r.len > 0 {
        attribute(&mut payload, RTA_DST, &r.dst.octets());
    }
    if r.oif != 0 {
        attribute(&mut payload, RTA_OIF, &r.oif.to_ne_bytes());
    }
    if let Some(gateway) = r.via {
        attribute(&mut payload, RTA_GATEWAY, &gateway.octets());
    }
    (RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, payload)
}

/// Appends one `struct rtattr` (length, type, data, padded to 4 bytes).
fn attribute(payload: &mut Vec<u8>, kind: u16, data: &[u8]) {
    payload.extend_from_slice(&(4 + data.len() as u16).to_ne_bytes());
    payload.extend_from_slice(&kind.to_ne_bytes());
    payload.extend_from_slice(data);
    payload.resize(payload.len().next_multiple_of(4), 0);
}

/// A whole message: `struct nlmsghdr` (length, type, flags, sequence, port 0 for "the kernel decides").
fn netlink_message(kind: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(16 + payload.len());
    message.extend_from_slice(&(16 + payload.len() as u32).to_ne_bytes());
    message.extend_from_slice(&kind.to_ne_bytes());
    message.extend_from_slice(&flags.to_ne_bytes());
    message.extend_from_slice(&seq.to_ne_bytes());
    message.extend_from_slice(&0u32.to_ne_bytes());
    message.extend_from_slice(payload);
    message
}

/// Reads the kernel's answer to request `seq`: an `NLMSG_ERROR` whose error is 0 on success.
fn acknowledged(netlink: &mut File, seq: u32) -> io::Result<()> {
    let mut buf = [0u8; 4096];
    let n = netlink.read(&mut buf)?;
    let field = |at: usize| buf.get(at..at + 4).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    let kind = buf.get(4..6).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    match (n >= 20, kind, field(8), field(16)) {
        (true, Some(NLMSG_ERROR), Some(s), Some(error)) if s == seq => match error as i32 {
            0 => Ok(()),
            negative => Err(io::Error::from_raw_os_error(-negative)),
        },
        _ => Err(io::Error::other("unexpected netlink answer")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_as_routes_do() {
        assert!(within(Ipv4Addr::new(169, 254, 169, 254), Ipv4Addr::new(169, 254, 0, 0), 16));
        assert!(within(Ipv4Addr::new(100, 127, 255, 1), Ipv4Addr::new(100, 64, 0, 0), 10));
        assert!(!within(Ipv4Addr::new(100, 128, 0, 1), Ipv4Addr::new(100, 64, 0, 0), 10));
        assert!(!within(Ipv4Addr::new(172, 32, 0, 1), Ipv4Addr::new(172, 16, 0, 0), 12));
        assert!(within(Ipv4Addr::new(8, 8, 8, 8), Ipv4Addr::UNSPECIFIED, 0));
    }

    #[test]
    fn the_policy_refuses_the_host_and_private_ranges_but_not_public_ones() {
        let egress = Egress::for_this_host().expect("interfaces readable");
        let refused = |a: Ipv4Addr| egress.refuses(a);
        for address in os::ipv4_addresses().unwrap() {
            assert!(refused(address), "host address {address} is reachable");
        }
        for a in ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "224.0.0.1"] {
            assert!(refused(a.parse().unwrap()), "{a} is reachable");
        }
        // Public addresses, unless this host happens to own one of them.
        let own = os::ipv4_addresses().unwrap();
        for a in ["1.1.1.1", "8.8.8.8", "203.0.113.7"].map(|a| a.parse::<Ipv4Addr>().unwrap()) {
            assert!(own.contains(&a) || !refused(a), "{a} is refused");
        }
    }

    #[test]
    fn attributes_are_padded_to_four_bytes() {
        let mut payload = Vec::new();
        attribute(&mut payload, RTA_DST, &[10, 0, 0]);
        assert_eq!(payload[..4], [7u16.to_ne_bytes(), RTA_DST.to_ne_bytes()].concat());
        assert_eq!(payload[4..], [10, 0, 0, 0]);
        let message = netlink_message(RTM_NEWROUTE, NLM_F_REQUEST, 9, &payload);
        assert_eq!(message.len(), 24);
        assert_eq!(u32::from_ne_bytes(message[..4].try_into().unwrap()), 24);
    }
}
