//! Syslog from the real `logger` (util-linux) over UDP and TCP, RFC 3164 and 5424, and over TLS from Python's ssl.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::harness::TestServer;

fn hostname() -> String {
    let out = Command::new("hostname").output().expect("hostname runs");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Runs `logger` with these arguments; panics with its stderr when it fails.
fn logger(args: &[&str]) {
    let out = Command::new("logger")
        .args(args)
        .output()
        .expect("logger is installed (bsdutils)");
    assert!(
        out.status.success(),
        "logger {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits until an event of this check exists, and returns it.
async fn wait_for(server: &TestServer, check: &str) -> Value {
    for _ in 0..100 {
        let (_, events) = server.get(&format!("/api/v1/events?check={check}")).await;
        if let Some(event) = events["items"].as_array().and_then(|items| items.first()) {
            return event.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no event with check {check} arrived");
}

const CONFIG: &str = "[sources.syslog]\nudp = [\"127.0.0.1:0\"]\ntcp = [\"127.0.0.1:0\"]\n";

#[tokio::test]
async fn logger_over_udp_and_tcp_in_both_formats() {
    let server = TestServer::with_config(Some(CONFIG)).await;
    let bound = &server.server.as_ref().expect("running").sources;
    let udp = bound.syslog_udp[0].port().to_string();
    let tcp = bound.syslog_tcp[0].port().to_string();
    let host = hostname();
    let cases: [(&[&str], &str, &str, &str); 4] = [
        (
            &["-d", "--rfc3164", "-P", &udp, "-p", "local0.err"],
            "app3164udp",
            "major",
            "rfc3164 over udp",
        ),
        (
            &["-d", "--rfc5424", "-P", &udp, "-p", "daemon.warning"],
            "app5424udp",
            "warning",
            "rfc5424 over udp",
        ),
        (
            &["-T", "--rfc3164", "-P", &tcp, "-p", "auth.crit"],
            "app3164tcp",
            "critical",
            "rfc3164 over tcp",
        ),
        (
            &[
                "-T",
                "--rfc5424",
                "--octet-count",
                "-P",
                &tcp,
                "-p",
                "user.info",
                "--msgid",
                "M1",
                "--sd-id",
                "zoo@123",
                "--sd-param",
                "tiger=\"hungry\"",
            ],
            "app5424tcp",
            "info",
            "rfc5424 octet-counted over tcp",
        ),
    ];
    for (args, tag, _, message) in &cases {
        let mut all: Vec<&str> = vec!["-n", "127.0.0.1", "-t", tag];
        all.extend_from_slice(args);
        all.push(message);
        logger(&all);
    }
    for (_, tag, severity, message) in &cases {
        let event = wait_for(&server, tag).await;
        assert_eq!(event["resource"], host.as_str(), "{event}");
        assert_eq!(event["severity"], *severity, "{event}");
        assert_eq!(event["summary"], *message, "{event}");
        assert_eq!(event["source"], "syslog");
    }
    let tagged = wait_for(&server, "app5424tcp").await;
    assert_eq!(tagged["labels"]["msgid"], "M1");
    assert_eq!(tagged["labels"]["zoo@123.tiger"], "hungry");
    assert_eq!(tagged["labels"]["facility"], "user");

    // Garbage is kept as a parse-error event, and counted.
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    socket
        .send_to(b"\x01\x02 definitely not syslog", bound.syslog_udp[0])
        .expect("send");
    let broken = wait_for(&server, "syslog_parse_error").await;
    assert_eq!(broken["resource"], "127.0.0.1");
    assert!(
        broken["details"]["raw"]
            .as_str()
            .unwrap_or_default()
            .contains("definitely not syslog")
    );
    let (_, metrics) = server.get("/metrics").await;
    let text = metrics.as_str().unwrap_or_default();
    assert!(
        text.contains("vakt_parse_errors_total{channel=\"syslog\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("vakt_events_received_total{channel=\"syslog\"} 5"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("vakt_bytes_received_total{channel=\"syslog\"}")),
        "{text}"
    );
}

#[tokio::test]
async fn oversized_messages_are_cut_and_counted() {
    let config = "[sources.syslog]\nudp = [\"127.0.0.1:0\"]\nframe_bytes_max = 100\n";
    let server = TestServer::with_config(Some(config)).await;
    let udp = server.server.as_ref().expect("running").sources.syslog_udp[0];
    let long = format!("<13>Nov 24 07:59:58 h longapp: {}", "x".repeat(500));
    std::net::UdpSocket::bind("127.0.0.1:0")
        .expect("udp")
        .send_to(long.as_bytes(), udp)
        .expect("send");
    let event = wait_for(&server, "longapp").await;
    assert_eq!(event["labels"]["truncated"], "true");
    assert!(event["summary"].as_str().unwrap_or_default().len() < 100);
    let (_, metrics) = server.get("/metrics").await;
    assert!(
        metrics
            .as_str()
            .unwrap_or_default()
            .contains("vakt_frames_truncated_total{channel=\"syslog\"} 1")
    );
}

#[tokio::test]
async fn syslog_over_tls() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let config = format!(
        "[sources.syslog]\ntls = {{ listen = \"127.0.0.1:0\", cert_file = \"{}\", key_file = \"{}\" }}\n",
        cert.display(),
        key.display()
    );
    let server = TestServer::with_config(Some(&config)).await;
    let port = server.server.as_ref().expect("running").sources.syslog_tls[0].port();
    let message = "<12>1 2026-11-24T08:00:00Z tlshost tlsapp - - - secured warning";
    let script = format!(
        "import socket, ssl\nctx = ssl.create_default_context()\nctx.check_hostname = False\nctx.verify_mode = ssl.CERT_NONE\n\
         s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', {port})))\ns.sendall(b'{} {}')\ns.close()\n",
        message.len(),
        message
    );
    let out =
        tokio::task::spawn_blocking(move || Command::new("python3").arg("-c").arg(script).output())
            .await
            .expect("join")
            .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let event = wait_for(&server, "tlsapp").await;
    assert_eq!(event["resource"], "tlshost");
    assert_eq!(event["severity"], "warning");
}

/// With `client_ca_file`, a syslog sender over TLS must show a client certificate; its
/// events record the certificate's name as their sender. One without is not heard.
#[tokio::test]
async fn syslog_over_tls_with_client_certificates() {
    let dir = tempfile::tempdir().expect("temp dir");
    crate::access::certificates(dir.path(), "syslog-server").await;
    let config = format!(
        "[sources.syslog]\ntls = {{ listen = \"127.0.0.1:0\", cert_file = \"{}\", key_file = \"{}\", client_ca_file = \"{}\" }}\n",
        dir.path().join("server.pem").display(),
        dir.path().join("server.key").display(),
        dir.path().join("ca.pem").display()
    );
    let server = TestServer::with_config(Some(&config)).await;
    let port = server.server.as_ref().expect("running").sources.syslog_tls[0].port();
    let send = async |check: &str, with_cert: bool| {
        let message = format!("<12>1 2026-11-24T08:00:00Z edge1 {check} - - - link flap");
        let cert = if with_cert {
            "ctx.load_cert_chain('client.pem', 'client.key')\n"
        } else {
            ""
        };
        let script = format!(
            "import socket, ssl\nctx = ssl.create_default_context(cafile='ca.pem')\n{cert}\
             s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', {port})), server_hostname='127.0.0.1')\n\
             s.sendall(b'{} {}')\ns.close()\n",
            message.len(),
            message
        );
        tokio::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .current_dir(dir.path())
            .output()
            .await
            .expect("python3 runs")
    };
    let out = send("signedapp", true).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let event = wait_for(&server, "signedapp").await;
    assert!(
        event.to_string().contains("sent by edge-router"),
        "the client certificate names the sender: {event}"
    );
    // Without a certificate the handshake is refused (TLS 1.3 may report it only on the
    // first read, so the send itself can look fine): nothing arrives.
    let _ = send("unsignedapp", false).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, events) = server.get("/api/v1/events?check=unsignedapp").await;
    assert_eq!(
        events["items"].as_array().map(Vec::len),
        Some(0),
        "{events}"
    );
}

#[test]
fn a_taken_port_is_a_startup_error() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = format!("[sources.syslog]\nudp = [\"{addr}\"]\n");
    std::fs::write(dir.path().join("vakt.toml"), config).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(dir.path().join("vakt.toml"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .expect("vakt runs");
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot listen on UDP"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
