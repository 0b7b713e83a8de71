//! Slow and silent clients cannot hold the server (issue 17's attack list: 500 trickling
//! connections held 25 s, 100 idle ones 75 s, and 1,100 made `/healthz` fail): idle and
//! trickling connections are closed at the header deadline, connections past the cap are
//! closed at once, and `/healthz` answers throughout.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::TestServer;

const CONFIG: &str = "[server]\nconnections_max = 40\nheader_read_timeout_secs = 1\n";

/// Waits until the server closes `stream` (a read returns 0 or fails), or `limit` passes.
async fn closed_within(mut stream: TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(
            limit.saturating_sub(started.elapsed()),
            stream.read(&mut buf),
        )
        .await
        {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue, // a 408 or similar before the close
            Err(_) => return None,
        }
    }
}

async fn healthz_ms(base: &str) -> u128 {
    let started = Instant::now();
    let status = reqwest::get(format!("{base}/healthz"))
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0);
    assert_eq!(status, 200, "/healthz answers");
    started.elapsed().as_millis()
}

#[tokio::test]
async fn idle_trickling_and_surplus_connections_are_closed_and_health_answers() {
    let server = TestServer::with_config(Some(CONFIG)).await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    // 30 idle connections and 5 that trickle a header a byte at a time.
    let mut idle = Vec::new();
    for _ in 0..30 {
        idle.push(TcpStream::connect(&addr).await.expect("connect"));
    }
    let mut tricklers = Vec::new();
    for _ in 0..5 {
        let mut stream = TcpStream::connect(&addr).await.expect("connect");
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("write");
        tricklers.push(tokio::spawn(async move {
            for byte in b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter() {
                if stream.write_all(&[*byte]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            stream
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        healthz_ms(&server.base).await < 1000,
        "health answers beside them"
    );
    // Past the cap (40), new connections are closed at once.
    let mut surplus = Vec::new();
    for _ in 0..10 {
        surplus.push(TcpStream::connect(&addr).await.expect("connect"));
    }
    let mut closed_at_once = 0;
    for stream in surplus {
        if closed_within(stream, Duration::from_millis(500))
            .await
            .is_some()
        {
            closed_at_once += 1;
        }
    }
    assert!(
        closed_at_once >= 5,
        "connections past the cap are closed: {closed_at_once} of 10"
    );
    // The idle ones end at the header deadline (1 s), not minutes later.
    for stream in idle {
        let took = closed_within(stream, Duration::from_secs(5)).await;
        assert!(took.is_some(), "an idle connection stayed open past 5 s");
    }
    for trickler in tricklers {
        let stream = trickler.await.expect("trickler");
        assert!(
            closed_within(stream, Duration::from_secs(5))
                .await
                .is_some(),
            "a trickling connection was kept"
        );
    }
    // Room again: health answers quickly.
    assert!(healthz_ms(&server.base).await < 100);
}

/// A request whose body stops coming is answered at the body deadline
/// (`body_read_timeout_secs`) with an error that says so, not held open.
#[tokio::test]
async fn a_body_that_stops_coming_is_refused_at_the_body_deadline() {
    let server = TestServer::with_config(Some("[server]\nbody_read_timeout_secs = 1\n")).await;
    let host = server.base.trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(&host).await.expect("connect");
    let head = format!(
        "POST /api/v1/events HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n[{{\"resource\""
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") || !answer.ends_with(b"}") {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) => panic!("no answer within 5 s"),
        }
    }
    let took = started.elapsed();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.contains("not received within the designated timeout"),
        "{answer}"
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "answered after {took:?}"
    );
}
