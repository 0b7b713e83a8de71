//! Built-in probes end to end: a disk probe on a small tmpfs the test fills crosses warning
//! then critical and clears when the test frees it; an HTTP probe against a local server the
//! test stops and starts raises and clears an outage; Debian's `check_tcp` (a real Nagios
//! plugin) runs through the command probe with its perfdata in metrics; the catalogue.

use std::time::Duration;

use serde_json::Value;

use crate::actions::eventually;
use crate::harness::TestServer;

const CHECK_TCP: &str = "/usr/lib/nagios/plugins/check_tcp";

/// The alert a probe raised (its check is the probe's name), if any.
async fn probe_alert(server: &TestServer, check: &str) -> Option<Value> {
    let (status, page) = server.get(&format!("/api/v1/alerts?check={check}")).await;
    assert_eq!(status, 200, "{page}");
    page["items"].as_array()?.first().cloned()
}

async fn wait_for(
    server: &TestServer,
    check: &str,
    what: &str,
    want: impl Fn(&Value) -> bool,
) -> Value {
    eventually(20, what, || async {
        probe_alert(server, check).await.filter(|a| want(a))
    })
    .await
}

/// A local web service the test stops and starts on one port.
async fn serve_on(addr: std::net::SocketAddr) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
    tokio::spawn(async move {
        let app = axum::Router::new().route("/health", axum::routing::get(|| async { "all ok" }));
        let _ = axum::serve(listener, app).await;
    })
}

#[tokio::test]
async fn disk_http_and_nagios_probes_raise_and_clear_alerts() {
    let work = tempfile::tempdir().expect("dir");
    let disk = work.path().join("disk");
    std::fs::create_dir_all(&disk).expect("dir");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(&disk)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!(
            "\n*** SKIPPED disk_http_and_nagios_probes_raise_and_clear_alerts: cannot mount a tmpfs (needs root) ***\n"
        );
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _unmount = Unmount(disk.clone());
    assert!(
        std::path::Path::new(CHECK_TCP).exists(),
        "{CHECK_TCP} is missing: apt-get install monitoring-plugins-basic (.ci/run does)"
    );
    let addr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe");
        probe.local_addr().expect("addr")
    };
    let mut web = serve_on(addr).await;
    let config = format!(
        r#"
[[probes]]
name = "scratch-disk"
type = "disk"
path = "{disk}"
interval_secs = 1
warning = 50
critical = 80
hysteresis = 5
resource = "testhost"

[[probes]]
name = "web-health"
type = "http"
url = "http://{addr}/health"
body_match = "ok"
interval_secs = 1
timeout_secs = 2
resource = "testhost"

[[probes]]
name = "resolver"
type = "dns"
host = "localhost"
interval_secs = 1
resource = "testhost"

[[probes]]
name = "bogus-name"
type = "dns"
host = "no-such-host.invalid"
interval_secs = 1
timeout_secs = 3
resource = "testhost"

[[probes]]
name = "loopback"
type = "interface"
interface = "lo"
interval_secs = 1
warning = 1
resource = "testhost"

[[probes]]
name = "web-port"
type = "command"
command = ["{CHECK_TCP}", "-H", "127.0.0.1", "-p", "{port}"]
interval_secs = 1
resource = "testhost"
"#,
        disk = disk.display(),
        port = addr.port()
    );
    let server = TestServer::with_config(Some(&config)).await;

    // The disk: 55% -> warning, 85% -> critical, emptied -> resolved.
    let fill = |mib: f64| {
        let bytes = (mib * 1024.0 * 1024.0) as usize;
        std::fs::write(disk.join("fill"), vec![7u8; bytes]).expect("fill the disk");
    };
    fill(2.2);
    let warned = wait_for(&server, "scratch-disk", "disk warning", |a| {
        a["severity"] == "warning"
    })
    .await;
    assert_eq!(warned["status"], "open");
    assert_eq!(warned["resource"], "testhost");
    fill(3.4);
    wait_for(&server, "scratch-disk", "disk critical", |a| {
        a["severity"] == "critical"
    })
    .await;
    std::fs::remove_file(disk.join("fill")).expect("free the disk");
    wait_for(&server, "scratch-disk", "disk cleared", |a| {
        a["status"] == "resolved"
    })
    .await;
    let (_, events) = server
        .get("/api/v1/events?check=scratch-disk&limit=100")
        .await;
    let used: Vec<f64> = events["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|e| {
            e["event"]["metrics"]["used_pct"]
                .as_f64()
                .or_else(|| e["metrics"]["used_pct"].as_f64())
        })
        .collect();
    assert!(
        used.iter().any(|u| *u >= 80.0),
        "the measured values are in metrics: {used:?}"
    );

    // The web service stops: the HTTP probe and the Nagios plugin raise; it starts: both clear.
    web.abort();
    let _ = (&mut web).await;
    let down = wait_for(&server, "web-health", "http outage", |a| {
        a["status"] == "open"
    })
    .await;
    assert_eq!(down["severity"], "critical");
    let port_down = wait_for(&server, "web-port", "check_tcp critical", |a| {
        a["status"] == "open"
    })
    .await;
    assert_eq!(
        port_down["severity"], "critical",
        "check_tcp exits 2 when nothing listens"
    );
    let _web = serve_on(addr).await;
    wait_for(&server, "web-health", "http outage cleared", |a| {
        a["status"] == "resolved"
    })
    .await;
    wait_for(&server, "web-port", "check_tcp ok again", |a| {
        a["status"] == "resolved"
    })
    .await;
    // check_tcp's perfdata (`time=0.000123s;...`) arrived as a metric.
    let (_, events) = server
        .get("/api/v1/events?check=web-port&severity=ok&limit=10")
        .await;
    let first = &events["items"][0];
    let time = first["event"]["metrics"]["time"]
        .as_f64()
        .or_else(|| first["metrics"]["time"].as_f64());
    assert!(
        time.is_some_and(|t| t >= 0.0),
        "perfdata in metrics: {first}"
    );

    // A name that does not resolve is an outage; localhost resolves; loopback is up.
    let bogus = wait_for(&server, "bogus-name", "dns failure", |a| {
        a["status"] == "open"
    })
    .await;
    assert_eq!(bogus["severity"], "critical");
    assert!(
        probe_alert(&server, "resolver").await.is_none(),
        "localhost resolves"
    );
    assert!(probe_alert(&server, "loopback").await.is_none(), "lo is up");

    // The catalogue lists what is watched, with status and last values.
    let (status, monitors) = server.get("/api/v1/monitors").await;
    assert_eq!(status, 200);
    let items = monitors["items"].as_array().cloned().unwrap_or_default();
    let names: Vec<&str> = items.iter().filter_map(|m| m["name"].as_str()).collect();
    assert_eq!(
        names,
        [
            "bogus-name",
            "loopback",
            "resolver",
            "scratch-disk",
            "web-health",
            "web-port"
        ]
    );
    let status_of = |name: &str| {
        items
            .iter()
            .find(|m| m["name"] == name)
            .map(|m| m["status"].clone())
    };
    assert_eq!(status_of("bogus-name"), Some(serde_json::json!("critical")));
    for name in [
        "loopback",
        "resolver",
        "scratch-disk",
        "web-health",
        "web-port",
    ] {
        assert_eq!(
            status_of(name),
            Some(serde_json::json!("ok")),
            "{name}: {monitors}"
        );
    }
    assert!(
        items.iter().all(|m| m["last_seen"].is_string()),
        "{monitors}"
    );
    let loopback = items
        .iter()
        .find(|m| m["name"] == "loopback")
        .cloned()
        .unwrap_or_default();
    assert_eq!(loopback["metrics"]["up"], 1.0, "{loopback}");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args(["monitors", "--url", &server.base])
        .output()
        .await
        .expect("vakt runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("scratch-disk") && l.contains(" disk ") && l.contains(" ok ")),
        "{text}"
    );
    // Issue 13: values and thresholds, in aligned columns under a header.
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{text}");
    let column = |name: &str| {
        lines[0]
            .find(name)
            .unwrap_or_else(|| panic!("{name}: {text}"))
    };
    let disk = lines
        .iter()
        .find(|l| l.starts_with("scratch-disk"))
        .copied()
        .unwrap_or_default();
    assert_eq!(
        disk.get(column("WARNING")..column("WARNING") + 3),
        Some(">=5"),
        "{text}"
    );
    assert_eq!(
        disk.get(column("CRITICAL")..column("CRITICAL") + 4),
        Some(">=80"),
        "{text}"
    );
    let value = disk[column("VALUE")..column("WARNING")].trim();
    assert!(
        value.parse::<f64>().is_ok(),
        "the used percent: {value:?} in {text}"
    );
    assert!(
        scratch_value(&items).is_some(),
        "the catalogue has the value: {monitors}"
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
}

fn scratch_value(items: &[serde_json::Value]) -> Option<f64> {
    items
        .iter()
        .find(|m| m["name"] == "scratch-disk")
        .and_then(|m| m["value"].as_f64())
}
