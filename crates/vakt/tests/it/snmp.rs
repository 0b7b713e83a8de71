//! SNMP v2c traps and informs from the real net-snmp tools (`snmptrap`, `snmpinform`).

use std::time::Duration;

use serde_json::Value;

use crate::harness::TestServer;

const CONFIG: &str = r#"
[sources.snmp]
listen = ["127.0.0.1:0"]
communities = ["public"]

[sources.snmp.traps."1.3.6.1.4.1.8072.2.3.0.1"]
name = "netSnmpExampleHeartbeatNotification"
severity = "minor"

[sources.snmp.oids]
"1.3.6.1.4.1.8072.2.3.2.1" = "netSnmpExampleHeartbeatRate"
"#;

async fn net_snmp(tool: &str, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(tool)
        // Numeric OIDs only: no MIB files needed.
        .args(["-M", "/dev/null", "-m", ""])
        .args(args)
        .output()
        .await
        .unwrap_or_else(|e| panic!("{tool} is installed (Debian snmp): {e}"))
}

async fn wait_for(server: &TestServer, query: &str) -> Value {
    for _ in 0..100 {
        let (_, events) = server.get(&format!("/api/v1/events?{query}")).await;
        if let Some(event) = events["items"].as_array().and_then(|items| items.first()) {
            return event.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no event for {query}");
}

#[tokio::test]
async fn link_down_and_up_and_a_custom_trap_and_an_answered_inform() {
    let server = TestServer::with_config(Some(CONFIG)).await;
    let target = server.server.as_ref().expect("running").sources.snmp[0].to_string();
    let out = net_snmp(
        "snmptrap",
        &[
            "-v",
            "2c",
            "-c",
            "public",
            &target,
            "",
            "1.3.6.1.6.3.1.1.5.3",
            "1.3.6.1.2.1.2.2.1.1.2",
            "i",
            "2",
            "1.3.6.1.2.1.2.2.1.2.2",
            "s",
            "eth1",
            "1.3.6.1.2.1.2.2.1.8.2",
            "i",
            "2",
        ],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let down = wait_for(&server, "check=link_state").await;
    assert_eq!(down["resource"], "127.0.0.1");
    assert_eq!(down["severity"], "major", "{down}");
    assert_eq!(down["labels"]["trap"], "linkDown");
    assert_eq!(down["labels"]["ifDescr.2"], "eth1");
    assert_eq!(down["labels"]["interface"], "eth1");
    assert_eq!(down["source"], "snmp");

    // linkUp clears linkDown: same check, same interface.
    let out = net_snmp(
        "snmptrap",
        &[
            "-v",
            "2c",
            "-c",
            "public",
            &target,
            "",
            "1.3.6.1.6.3.1.1.5.4",
            "1.3.6.1.2.1.2.2.1.1.2",
            "i",
            "2",
            "1.3.6.1.2.1.2.2.1.2.2",
            "s",
            "eth1",
        ],
    )
    .await;
    assert!(out.status.success());
    let alert_id = down["alert_id"].as_str().expect("alert").to_owned();
    let mut resolved = false;
    for _ in 0..100 {
        let (_, alert) = server.get(&format!("/api/v1/alerts/{alert_id}")).await;
        if alert["status"] == "resolved" {
            resolved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(resolved, "linkUp resolved the linkDown alert");

    // An inform is answered: snmpinform exits 0 only when it got the response.
    let out = net_snmp(
        "snmpinform",
        &[
            "-v",
            "2c",
            "-c",
            "public",
            "-t",
            "3",
            "-r",
            "0",
            &target,
            "",
            "1.3.6.1.4.1.8072.2.3.0.1",
            "1.3.6.1.4.1.8072.2.3.2.1",
            "i",
            "60",
        ],
    )
    .await;
    assert!(
        out.status.success(),
        "snmpinform got no answer: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let custom = wait_for(&server, "check=netSnmpExampleHeartbeatNotification").await;
    assert_eq!(custom["severity"], "minor");
    assert_eq!(custom["labels"]["netSnmpExampleHeartbeatRate"], "60");
    assert_eq!(custom["details"]["inform"], true);

    // A wrong community is dropped and counted; garbage is counted as a parse error.
    let out = net_snmp(
        "snmptrap",
        &[
            "-v",
            "2c",
            "-c",
            "secret",
            &target,
            "",
            "1.3.6.1.6.3.1.1.5.1",
        ],
    )
    .await;
    assert!(out.status.success());
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    socket.send_to(b"not snmp", &target).expect("send");
    let mut counted = false;
    for _ in 0..100 {
        let (_, metrics) = server.get("/metrics").await;
        let text = metrics.as_str().unwrap_or_default();
        if text.contains("vakt_events_rejected_total{channel=\"snmp\",reason=\"bad_community\"} 1")
            && text.contains("vakt_parse_errors_total{channel=\"snmp\"} 1")
        {
            counted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(counted, "rejections counted");
    let (_, restarts) = server.get("/api/v1/events?check=restart").await;
    assert_eq!(
        restarts["items"],
        serde_json::json!([]),
        "the wrong community's coldStart was not taken"
    );
}

/// A trap for one interface of a host, from `snmptrap` (`up` selects linkUp, else linkDown).
async fn link_trap(target: &str, up: bool, index: &str, name: &str) {
    let trap = if up {
        "1.3.6.1.6.3.1.1.5.4"
    } else {
        "1.3.6.1.6.3.1.1.5.3"
    };
    let if_index = format!("1.3.6.1.2.1.2.2.1.1.{index}");
    let if_descr = format!("1.3.6.1.2.1.2.2.1.2.{index}");
    let out = net_snmp(
        "snmptrap",
        &[
            "-v", "2c", "-c", "public", target, "", trap, &if_index, "i", index, &if_descr, "s",
            name,
        ],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Issue 13: with the default fingerprint and no rule about interfaces, a linkUp on eth7
/// must not resolve the alert of eth8, which is still down: the built-in SNMP mapping makes
/// the interface part of the alert's identity.
#[tokio::test]
async fn each_interface_is_its_own_alert_with_the_default_fingerprint() {
    let server = TestServer::with_config(Some(
        "[sources.snmp]\nlisten = [\"127.0.0.1:0\"]\ncommunities = [\"public\"]\n",
    ))
    .await;
    let target = server.server.as_ref().expect("running").sources.snmp[0].to_string();
    link_trap(&target, false, "7", "eth7").await;
    link_trap(&target, false, "8", "eth8").await;
    let mut open = Vec::new();
    for _ in 0..100 {
        let (_, alerts) = server
            .get("/api/v1/alerts?check=link_state&status=open")
            .await;
        open = alerts["items"].as_array().cloned().unwrap_or_default();
        if open.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(open.len(), 2, "one alert per interface: {open:?}");
    link_trap(&target, true, "7", "eth7").await;
    let mut resolved = Vec::new();
    for _ in 0..100 {
        let (_, alerts) = server
            .get("/api/v1/alerts?check=link_state&status=resolved")
            .await;
        resolved = alerts["items"].as_array().cloned().unwrap_or_default();
        if !resolved.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(resolved.len(), 1, "{resolved:?}");
    assert_eq!(resolved[0]["labels"]["interface"], "eth7");
    let (_, still) = server
        .get("/api/v1/alerts?check=link_state&status=open")
        .await;
    let still = still["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(still.len(), 1, "{still:?}");
    assert_eq!(
        still[0]["labels"]["interface"], "eth8",
        "eth8 is still down"
    );
    // The trace says where the fingerprint came from.
    let (_, detail) = server
        .get(&format!(
            "/api/v1/alerts/{}",
            still[0]["id"].as_str().unwrap_or("?")
        ))
        .await;
    assert!(
        detail
            .to_string()
            .contains("labels.interface, which the channel makes part of the identity"),
        "{detail}"
    );
}
