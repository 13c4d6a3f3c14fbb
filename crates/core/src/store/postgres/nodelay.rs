//! `TCP_NODELAY` on the store's connections to the server.
//!
//! sqlx 0.9.0 opens its TCP connections without `TCP_NODELAY` (upstream issue
//! launchbadge/sqlx#4335; the fix is merged there but not yet released). A message larger than
//! one TLS record (16 KiB), such as a batch of attempt results or a chunk of a user-wide end,
//! then leaves in two writes, and Nagle's algorithm holds the second until the server has
//! acknowledged the first, which the server delays by up to 40 ms. Each such statement took
//! about 48 ms, which held one node to about 1,300 recorded results per second.
//!
//! sqlx gives no access to its sockets, so after each new connection the store finds this
//! process's sockets connected to the server's port and sets the option on them. It reaches
//! each socket through a duplicate of its descriptor, obtained with `pidfd_getfd(2)` on this
//! process's own pidfd, which a process may always do to itself. Setting the option again on a
//! socket that has it, or on another TCP socket to that port, changes nothing that matters:
//! every socket logoutd writes to wants it.

/// Sets `TCP_NODELAY` on every TCP socket of this process whose peer listens on `port`;
/// returns how many did not have it yet.
#[cfg(target_os = "linux")]
pub(super) fn set_on_sockets_to(port: u16) -> std::io::Result<usize> {
    use rustix::net::sockopt::{set_tcp_nodelay, tcp_nodelay};
    use rustix::process::{PidfdFlags, PidfdGetfdFlags, getpid, pidfd_getfd, pidfd_open};
    let pidfd = pidfd_open(getpid(), PidfdFlags::empty())?;
    let mut changed = 0;
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let entry = entry?;
        let is_socket = std::fs::read_link(entry.path()).is_ok_and(|target| {
            target
                .as_os_str()
                .as_encoded_bytes()
                .starts_with(b"socket:")
        });
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if !is_socket {
            continue;
        }
        // The descriptor may have been closed meanwhile, or be a socket of another kind.
        let Ok(socket) = pidfd_getfd(&pidfd, fd, PidfdGetfdFlags::empty()) else {
            continue;
        };
        let peer = rustix::net::getpeername(&socket)
            .ok()
            .flatten()
            .and_then(|addr| std::net::SocketAddr::try_from(addr).ok());
        if peer.is_some_and(|peer| peer.port() == port) && tcp_nodelay(&socket) == Ok(false) {
            set_tcp_nodelay(&socket, true)?;
            changed += 1;
        }
    }
    Ok(changed)
}

/// Elsewhere the connections keep the driver's defaults.
#[cfg(not(target_os = "linux"))]
pub(super) fn set_on_sockets_to(_port: u16) -> std::io::Result<usize> {
    Ok(0)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn sets_the_option_on_sockets_to_the_port_and_leaves_others_alone() {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let other = TcpListener::bind("127.0.0.1:0").unwrap();
        let to_server = TcpStream::connect(server.local_addr().unwrap()).unwrap();
        let to_other = TcpStream::connect(other.local_addr().unwrap()).unwrap();
        assert!(!to_server.nodelay().unwrap() && !to_other.nodelay().unwrap());
        let changed = set_on_sockets_to(server.local_addr().unwrap().port()).unwrap();
        assert_eq!(changed, 1);
        assert!(to_server.nodelay().unwrap());
        assert!(!to_other.nodelay().unwrap());
        assert_eq!(
            set_on_sockets_to(server.local_addr().unwrap().port()).unwrap(),
            0
        );
    }
}
