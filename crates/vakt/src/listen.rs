//! TCP listeners with room for bursts of connections.
//!
//! `TcpListener::bind` (std's, under tokio's) listens with a backlog of 128: connections the
//! kernel completed and the server has not yet accepted. Clients that reconnect together
//! (agents after a network blip, slow clients cut at the header deadline at once) overflow
//! it, and each SYN dropped costs its client a second (the kernel's first retransmit). The
//! soak test saw 115 of them in two minutes and, once, a `/healthz` that took a second to
//! connect. Listeners here ask for `BACKLOG` (the kernel caps it at `net.core.somaxconn`).

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket, ToSocketAddrs};

/// Completed connections waiting to be accepted, at most.
pub const BACKLOG: u32 = 4096;

/// Listens on the first of `address`'s resolved addresses that can be bound, as
/// `TcpListener::bind` does, with `BACKLOG`.
pub async fn tcp(address: impl ToSocketAddrs) -> io::Result<TcpListener> {
    let mut last = None;
    for addr in tokio::net::lookup_host(address).await? {
        match bind(addr) {
            Ok(listener) => return Ok(listener),
            Err(error) => last = Some(error),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the address resolved to nothing",
        )
    }))
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    // As std does on Unix: a restart can bind while the last run's connections linger.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A burst of connections larger than std's backlog, none accepted yet, all connect at
    /// once: with a backlog of 128 the kernel drops the SYNs beyond it and those clients
    /// wait a second to retry.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_connections_waits_in_the_backlog_not_a_second_in_the_kernel() {
        let listener = tcp("127.0.0.1:0").await.expect("listen");
        let addr = listener.local_addr().expect("addr");
        let connects: Vec<_> = (0..400)
            .map(|_| {
                tokio::spawn(async move {
                    tokio::time::timeout(
                        Duration::from_millis(700),
                        tokio::net::TcpStream::connect(addr),
                    )
                    .await
                })
            })
            .collect();
        let mut slow = 0;
        let mut streams = Vec::new();
        for connect in connects {
            match connect.await.expect("task") {
                Ok(Ok(stream)) => streams.push(stream),
                Ok(Err(error)) => panic!("connect failed: {error}"),
                Err(_) => slow += 1,
            }
        }
        assert_eq!(
            slow, 0,
            "{slow} of 400 connects waited for a SYN retransmit"
        );
        // And they are there to accept.
        let (_, peer) = listener.accept().await.expect("accept");
        assert!(peer.ip().is_loopback());
        drop(streams);
    }

    #[tokio::test]
    async fn an_address_in_use_or_unresolvable_is_an_error() {
        let first = tcp("127.0.0.1:0").await.expect("listen");
        let taken = first.local_addr().expect("addr");
        let error = tcp(taken).await.expect_err("in use");
        assert_eq!(error.kind(), io::ErrorKind::AddrInUse, "{error}");
        assert!(tcp("no-such-host.invalid:80").await.is_err());
    }
}
