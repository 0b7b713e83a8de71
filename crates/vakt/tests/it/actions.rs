//! The handling stage end to end: real SMTP (aiosmtpd), real HTTP receivers, real processes,
//! noise control, and a kill -9 between decision and delivery.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use serde_json::{Value, json};

use crate::harness::{TestServer, free_port, spawn_node_on};

/// One request a receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub body: Value,
    pub raw: Vec<u8>,
}

/// A local HTTP receiver that records every POST; it answers after `delay`.
pub struct Receiver {
    pub url: String,
    pub got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    pub async fn start(delay: Duration) -> Receiver {
        Receiver::on(
            tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind"),
            delay,
        )
    }

    pub fn on(listener: tokio::net::TcpListener, delay: Duration) -> Receiver {
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let app = axum::Router::new()
            .fallback(
                |State((got, delay)): State<(Arc<Mutex<Vec<Received>>>, Duration)>,
                 uri: axum::http::Uri,
                 headers: HeaderMap,
                 body: Bytes| async move {
                    let received = Received {
                        path: uri.path().to_owned(),
                        headers: headers
                            .iter()
                            .map(|(k, v)| {
                                (
                                    k.as_str().to_owned(),
                                    v.to_str().unwrap_or_default().to_owned(),
                                )
                            })
                            .collect(),
                        body: serde_json::from_slice(&body).unwrap_or_else(|_| {
                            Value::String(String::from_utf8_lossy(&body).into())
                        }),
                        raw: body.to_vec(),
                    };
                    // `/flaky` fails its first two requests (503), `/bad` always (400).
                    let status = {
                        let mut got = got.lock().expect("lock");
                        let path = received.path.clone();
                        got.push(received);
                        let seen = got.iter().filter(|r| r.path == path).count();
                        match path.as_str() {
                            "/flaky" if seen <= 2 => axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            "/bad" => axum::http::StatusCode::BAD_REQUEST,
                            _ => axum::http::StatusCode::OK,
                        }
                    };
                    tokio::time::sleep(delay).await;
                    (status, "ok")
                },
            )
            .with_state((Arc::clone(&got), delay));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { url, got }
    }

    pub fn all(&self) -> Vec<Received> {
        self.got.lock().expect("lock").clone()
    }

    pub fn on_path(&self, path: &str) -> Vec<Received> {
        self.all().into_iter().filter(|r| r.path == path).collect()
    }
}

/// Polls `check` every 100 ms until it returns `Some`, for up to `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn actions(server: &TestServer, query: &str) -> Vec<Value> {
    let (status, page) = server
        .get(&format!("/api/v1/actions?limit=1000&{query}"))
        .await;
    assert_eq!(status, 200, "{page}");
    page["items"].as_array().cloned().unwrap_or_default()
}

fn event(resource: &str, check: &str, severity: &str, extra: Value) -> Value {
    let mut event = json!({"resource": resource, "check": check, "severity": severity,
                           "summary": format!("{check} on {resource} is {severity}")});
    if let (Some(event), Some(extra)) = (event.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            event.insert(k.clone(), v.clone());
        }
    }
    event
}

/// `n` critical alerts of the `billing` service, one per host: one notification group.
fn billing_alerts(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            event(
                &format!("host{i}"),
                "http",
                "critical",
                json!({"service": "billing"}),
            )
        })
        .collect()
}

/// An inhibit rule: while a router's `ping` alert is open, the alerts of hosts behind it
/// (their `upstream` label names it) are inhibited.
const ROUTER_DOWN: &str = r#"[[inhibit_rules]]
name = "router-down"
source_matchers = ['check="ping"']
target_matchers = ['check!="ping"']
equal = ["upstream=resource"]
"#;
const POLL: &str = "[dispatch]\npoll_interval_ms = 100\nconsole_url = \"http://vakt.example\"\n";

#[tokio::test]
async fn chat_formats_and_a_signed_webhook_reach_a_local_receiver() {
    let receiver = Receiver::start(Duration::ZERO).await;
    let url = &receiver.url;
    let config = format!(
        r#"{POLL}
[[rules]]
name = "page"
when = 'severity == "critical"'
actions = ["slack", "mattermost", "teams", "generic", "hook"]

[actions.slack]
type = "notify"
channel = "slack"
[actions.mattermost]
type = "notify"
channel = "mm"
[actions.teams]
type = "notify"
channel = "teams"
[actions.generic]
type = "notify"
channel = "generic"
[actions.hook]
type = "webhook"
url = "{url}/hook"
hmac_secret = "s3cret"
headers = {{ "X-Team" = "ops" }}
body = '{{"alert": "{{{{ alert.id }}}}", "resource": {{{{ alert.resource | tojson }}}}, "purpose": "{{{{ purpose }}}}"}}'

[channels.slack]
type = "slack"
url = "{url}/slack"
[channels.mm]
type = "mattermost"
url = "{url}/mattermost"
[channels.teams]
type = "teams"
url = "{url}/teams"
[channels.generic]
type = "webhook"
url = "{url}/generic"
"#
    );
    let server = TestServer::with_config(Some(&config)).await;
    let (status, _) = server
        .post(
            "/api/v1/events",
            &event(
                "db01",
                "disk_usage",
                "critical",
                json!({"service": "billing"}),
            ),
        )
        .await;
    assert_eq!(status, 202);
    eventually(15, "five deliveries", || async {
        (receiver.all().len() >= 5).then_some(())
    })
    .await;
    let alert_id = server.only_alert_id().await;

    // Slack: `text` as the notification fallback, Block Kit blocks of known types.
    let slack = &receiver.on_path("/slack")[0].body;
    assert!(
        slack["text"]
            .as_str()
            .is_some_and(|t| t.contains("[CRITICAL] disk_usage on db01")),
        "{slack}"
    );
    let blocks = slack["blocks"].as_array().expect("blocks");
    for block in blocks {
        assert!(
            ["header", "section", "actions"].contains(&block["type"].as_str().unwrap_or_default()),
            "{block}"
        );
    }
    assert_eq!(blocks[0]["text"]["type"], "plain_text");
    assert!(
        slack
            .to_string()
            .contains(&format!("http://vakt.example/alerts/{alert_id}"))
    );

    // Mattermost: text plus an attachment with fallback, color, title, fields.
    let mm = &receiver.on_path("/mattermost")[0].body;
    let attachment = &mm["attachments"][0];
    assert!(
        attachment["fallback"]
            .as_str()
            .is_some_and(|t| t.contains("disk_usage"))
    );
    assert!(
        attachment["color"]
            .as_str()
            .is_some_and(|c| c.starts_with('#'))
    );
    assert!(attachment["fields"].as_array().is_some_and(|f| {
        f.iter()
            .any(|f| f["title"] == "Service" && f["value"] == "billing")
    }));

    // Teams (Workflows): a message with one Adaptive Card attachment.
    let teams = &receiver.on_path("/teams")[0].body;
    assert_eq!(teams["type"], "message");
    let card = &teams["attachments"][0];
    assert_eq!(
        card["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(card["content"]["type"], "AdaptiveCard");
    assert_eq!(
        card["content"]["$schema"],
        "http://adaptivecards.io/schemas/adaptive-card.json"
    );
    assert!(card["content"]["version"].as_str().is_some());
    assert_eq!(card["content"]["actions"][0]["type"], "Action.OpenUrl");

    // Generic webhook: vakt's document with the alert and the idempotency key.
    let generic = &receiver.on_path("/generic")[0];
    assert_eq!(generic.body["version"], "1");
    assert_eq!(generic.body["purpose"], "trigger");
    assert_eq!(generic.body["alert"]["id"], alert_id.as_str());
    assert_eq!(
        generic.headers["idempotency-key"],
        generic.body["action_id"].as_str().unwrap_or("?")
    );

    // The webhook action: the templated body, the header, and an HMAC we can verify.
    let hook = &receiver.on_path("/hook")[0];
    assert_eq!(
        hook.body,
        json!({"alert": alert_id, "resource": "db01", "purpose": "trigger"})
    );
    assert_eq!(hook.headers["x-team"], "ops");
    assert_eq!(
        hook.headers["x-vakt-signature"],
        vakt::actions::transport::signature("s3cret", &hook.raw)
    );

    // Every action succeeded and says so on the alert's timeline.
    let done = eventually(10, "five succeeded actions", || async {
        let list = actions(&server, "status=succeeded").await;
        (list.len() == 5).then_some(list)
    })
    .await;
    assert!(done.iter().all(|a| a["attempts"] == 1), "{done:?}");
    let (_, alert) = server.get(&format!("/api/v1/alerts/{alert_id}")).await;
    let runs = alert["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter(|t| t["kind"] == "action_run")
        .count();
    assert_eq!(runs, 5, "{alert}");

    // Resolution is announced through the same actions.
    server
        .post(
            "/api/v1/events",
            &event("db01", "disk_usage", "ok", json!({"service": "billing"})),
        )
        .await;
    eventually(10, "resolved notices", || async {
        (receiver.on_path("/slack").len() == 2).then_some(())
    })
    .await;
    let resolved = &receiver.on_path("/slack")[1].body;
    assert!(
        resolved["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("[RESOLVED]")),
        "{resolved}"
    );
}

#[tokio::test]
async fn email_reaches_a_real_smtp_server() {
    let maildir = tempfile::tempdir().expect("maildir");
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe");
        probe.local_addr().expect("addr").port()
    };
    let mut smtpd = tokio::process::Command::new("python3")
        .args([
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            &format!("127.0.0.1:{port}"),
            "-c",
            "aiosmtpd.handlers.Mailbox",
        ])
        .arg(maildir.path().join("inbox"))
        .kill_on_drop(true)
        .spawn()
        .expect("python3 -m aiosmtpd (pip install aiosmtpd)");
    eventually(20, "aiosmtpd listening", || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    let config = format!(
        r#"{POLL}
[[rules]]
name = "page"
when = 'severity == "critical"'
actions = ["mail"]

[actions.mail]
type = "notify"
channel = "smtp"
to = ["oncall@example.com", "lead@example.com"]

[channels.smtp]
type = "email"
host = "127.0.0.1"
port = {port}
tls = "none"
from = "vakt <vakt@example.com>"
"#
    );
    let server = TestServer::with_config(Some(&config)).await;
    server
        .post(
            "/api/v1/events",
            &event(
                "db01",
                "disk_usage",
                "critical",
                json!({"summary": "/var is 99% full"}),
            ),
        )
        .await;
    let inbox = maildir.path().join("inbox").join("new");
    let message = eventually(20, "a message in the maildir", || async {
        let entry = std::fs::read_dir(&inbox).ok()?.flatten().next()?;
        std::fs::read_to_string(entry.path()).ok()
    })
    .await;
    assert!(
        message.contains("Subject: [CRITICAL] disk_usage on db01: /var is 99% full"),
        "{message}"
    );
    assert!(
        message.contains("From: vakt <vakt@example.com>"),
        "{message}"
    );
    assert!(
        message.contains("oncall@example.com") && message.contains("lead@example.com"),
        "{message}"
    );
    assert!(message.contains("X-Vakt-Action-Id:"), "{message}");
    assert!(
        message.contains("Acknowledge: http://vakt.example/alerts/") && message.contains("?do=ack"),
        "{message}"
    );
    let done = eventually(10, "the action recorded as succeeded", || async {
        let list = actions(&server, "status=succeeded").await;
        list.into_iter().next()
    })
    .await;
    assert!(
        done["outcome"]
            .as_str()
            .is_some_and(|o| o.contains("accepted")),
        "{done}"
    );
    // Issue 13: mails about one alert thread: the first has a Message-ID, the resolution
    // notice answers it (In-Reply-To, References).
    let header = |message: &str, name: &str| {
        message
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .map(str::trim)
            .map(str::to_owned)
    };
    let first_id = header(&message, "Message-ID").expect("a Message-ID");
    assert!(first_id.ends_with("@example.com>"), "{first_id}");
    assert_eq!(header(&message, "In-Reply-To"), None, "{message}");
    server
        .post(
            "/api/v1/events",
            &event("db01", "disk_usage", "ok", json!({"summary": "fine"})),
        )
        .await;
    let second = eventually(20, "the resolution notice in the maildir", || async {
        std::fs::read_dir(&inbox)
            .ok()?
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .find(|m| m.contains("Subject: [RESOLVED]"))
    })
    .await;
    let second_id = header(&second, "Message-ID").expect("a Message-ID");
    assert_ne!(second_id, first_id);
    assert_eq!(
        header(&second, "In-Reply-To"),
        Some(first_id.clone()),
        "{second}"
    );
    assert_eq!(header(&second, "References"), Some(first_id), "{second}");
    let _ = smtpd.kill().await;
}

#[tokio::test]
async fn exec_restarts_a_service_and_a_hanging_command_is_killed_with_its_children() {
    let work = tempfile::tempdir().expect("work dir");
    let dir = work.path().display().to_string();
    // The "service": a process that records its pid. The restart script kills it and starts a
    // new one, printing both pids.
    std::fs::write(
        work.path().join("restart.sh"),
        format!(
            "#!/bin/sh\nold=$(cat {dir}/service.pid)\nkill \"$old\"\nsetsid sleep 300 >/dev/null 2>&1 < /dev/null &\necho $! > {dir}/service.pid\necho \"restarted $1: $old -> $(cat {dir}/service.pid)\"\n"
        ),
    )
    .expect("script");
    let service = std::process::Command::new("sleep")
        .arg("300")
        .spawn()
        .expect("service");
    std::fs::write(work.path().join("service.pid"), service.id().to_string()).expect("pid");
    let config = format!(
        r#"{POLL}
[[rules]]
name = "restart"
when = 'check == "http"'
actions = ["restart"]
[[rules]]
name = "hang"
when = 'check == "hang"'
actions = ["hang"]

[actions.restart]
type = "exec"
command = ["/bin/sh", "{dir}/restart.sh", "{{{{ alert.resource }}}}"]
timeout_secs = 10

[actions.hang]
type = "exec"
command = ["/bin/sh", "-c", "sleep 300 & echo $! > {dir}/child.pid; wait"]
timeout_secs = 1
"#
    );
    let server = TestServer::with_config(Some(&config)).await;
    server
        .post(
            "/api/v1/events",
            &event("web01", "http", "critical", json!({})),
        )
        .await;
    let done = eventually(15, "the restart to succeed", || async {
        actions(&server, "action=restart&status=succeeded")
            .await
            .into_iter()
            .next()
    })
    .await;
    let new_pid: u32 = std::fs::read_to_string(work.path().join("service.pid"))
        .expect("pid")
        .trim()
        .parse()
        .expect("a pid");
    assert_ne!(new_pid, service.id());
    // The old service is gone, the new one runs.
    let mut service = service;
    assert!(service.wait().is_ok());
    assert!(std::path::Path::new(&format!("/proc/{new_pid}")).exists());
    let (_, alert) = server
        .get(&format!(
            "/api/v1/alerts/{}",
            done["alert_id"].as_str().expect("id")
        ))
        .await;
    let run = alert["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .find(|t| t["kind"] == "action_run")
        .expect("an action_run entry")
        .clone();
    assert!(
        run["message"]
            .as_str()
            .is_some_and(|m| m.contains("exited with status 0")),
        "{run}"
    );
    let (_, detail) = server
        .get(&format!(
            "/api/v1/actions/{}",
            done["id"].as_str().expect("id")
        ))
        .await;
    let stdout = detail["attempts"][0]["output"]["stdout"]
        .as_str()
        .unwrap_or_default();
    assert!(
        stdout.contains(&format!("restarted web01: {} -> {new_pid}", service.id())),
        "{detail}"
    );
    // Issue 13: the command's first lines are on the alert's timeline too.
    assert!(
        run["message"].as_str().is_some_and(|m| m.contains(&format!(
            "stdout:\nrestarted web01: {} -> {new_pid}",
            service.id()
        ))),
        "{run}"
    );
    let _ = std::process::Command::new("kill")
        .arg(new_pid.to_string())
        .status();

    // The hanging command: killed at the timeout, its child too.
    server
        .post(
            "/api/v1/events",
            &event("web01", "hang", "critical", json!({})),
        )
        .await;
    let failed = eventually(15, "the hanging command to fail", || async {
        actions(&server, "action=hang&status=failed")
            .await
            .into_iter()
            .next()
    })
    .await;
    assert!(
        failed["outcome"]
            .as_str()
            .is_some_and(|o| o.contains("timed out")),
        "{failed}"
    );
    let child: u32 = std::fs::read_to_string(work.path().join("child.pid"))
        .expect("child pid")
        .trim()
        .parse()
        .expect("a pid");
    eventually(5, "the child to be gone", || async {
        // Gone, or a zombie waiting for init to reap it.
        let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
        (stat.is_empty() || stat.contains(") Z ")).then_some(())
    })
    .await;
}

#[tokio::test]
async fn silences_and_maintenance_windows_suppress_exactly_what_they_cover() {
    let receiver = Receiver::start(Duration::ZERO).await;
    let now = chrono::Utc::now();
    let config = format!(
        r#"{POLL}
[[rules]]
name = "page"
when = 'severity == "critical"'
actions = ["chat"]

[actions.chat]
type = "notify"
channel = "chat"

[channels.chat]
type = "webhook"
url = "{}/chat"

[[maintenance]]
name = "staging-patching"
starts_at = "{}"
ends_at = "{}"
matchers = ['environment="staging"']
"#,
        receiver.url,
        (now - chrono::Duration::hours(1)).to_rfc3339(),
        (now + chrono::Duration::hours(1)).to_rfc3339(),
    );
    let server = TestServer::with_config(Some(&config)).await;
    let (status, silence) = server
        .post(
            "/api/v1/silences",
            &json!({"matchers": ["service=\"billing\""], "duration_secs": 3600, "created_by": "alice", "comment": "migrating billing"}),
        )
        .await;
    assert_eq!(status, 201, "{silence}");
    let silence_id = silence["id"].as_str().expect("id").to_owned();
    assert_eq!(silence["state"], "active");

    for (resource, extra) in [
        (
            "billing-db",
            json!({"service": "billing", "environment": "production"}),
        ),
        (
            "stage-web",
            json!({"service": "web", "environment": "staging"}),
        ),
        (
            "prod-web",
            json!({"service": "web", "environment": "production"}),
        ),
    ] {
        let (status, _) = server
            .post(
                "/api/v1/events",
                &event(resource, "http", "critical", extra),
            )
            .await;
        assert_eq!(status, 202);
    }
    eventually(10, "one delivery", || async {
        (!receiver.all().is_empty()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let delivered: Vec<String> = receiver
        .all()
        .iter()
        .map(|r| {
            r.body["alert"]["resource"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(delivered, ["prod-web"], "only the uncovered alert notifies");

    let suppressed = actions(&server, "status=suppressed").await;
    let by: BTreeSet<String> = suppressed
        .iter()
        .map(|a| a["suppressed_by"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        by,
        BTreeSet::from([
            format!("silence {silence_id}"),
            "maintenance window \"staging-patching\"".to_owned()
        ])
    );
    // The events are recorded and categorised as always, and the trace says why.
    let (_, events) = server.get("/api/v1/events?resource=billing-db").await;
    let trace = &events["items"][0]["trace"];
    let decide = trace
        .as_array()
        .expect("trace")
        .iter()
        .find(|t| t["stage"] == "decide")
        .expect("decide");
    assert_eq!(decide["decision"], "suppressed");
    assert!(
        decide["reason"]
            .as_str()
            .is_some_and(|r| r.contains(&silence_id)),
        "{decide}"
    );
    assert_eq!(events["items"][0]["category"], "exception");

    // Expired, the silence covers nothing new: the next billing alert notifies.
    let response = server
        .client
        .delete(server.url(&format!("/api/v1/silences/{silence_id}")))
        .send()
        .await
        .expect("DELETE");
    let (status, expired) = crate::harness::decode(response).await;
    assert_eq!(status, 200);
    assert_eq!(expired["state"], "expired");
    server
        .post(
            "/api/v1/events",
            &event(
                "billing-api",
                "http",
                "critical",
                json!({"service": "billing", "environment": "production"}),
            ),
        )
        .await;
    eventually(10, "the billing-api notification", || async {
        receiver
            .all()
            .iter()
            .any(|r| r.body["alert"]["resource"] == "billing-api")
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_storm_of_ten_thousand_events_for_five_hundred_alerts_becomes_a_few_messages() {
    let receiver = Receiver::start(Duration::ZERO).await;
    let config = format!(
        r#"{POLL}
[[rules]]
name = "page"
when = 'severity == "critical"'
actions = ["chat"]

[actions.chat]
type = "notify"
channel = "chat"
group_by = ["service"]
group_wait_secs = 2
group_interval_secs = 3

[channels.chat]
type = "slack"
url = "{}/slack"
"#,
        receiver.url
    );
    let server = TestServer::with_config(Some(&config)).await;
    // 10,000 events: 500 alerts (100 hosts x 5 services), each repeated 20 times.
    let events: Vec<Value> = (0..10_000)
        .map(|i| {
            let alert = i % 500;
            event(
                &format!("host{:03}", alert / 5),
                "http",
                "critical",
                json!({"service": format!("svc{}", alert % 5)}),
            )
        })
        .collect();
    for chunk in events.chunks(1000) {
        let (status, _) = server
            .post("/api/v1/events", &Value::Array(chunk.to_vec()))
            .await;
        assert_eq!(status, 202);
    }
    let decided = actions(&server, "action=chat").await;
    assert_eq!(
        decided.len(),
        500,
        "one decision per alert, none per repeat"
    );
    // Sent and recorded: none pending, none running.
    eventually(60, "every grouped action sent", || async {
        (actions(&server, "action=chat&status=succeeded").await.len() == 500).then_some(())
    })
    .await;
    let messages = receiver.all();
    assert!(
        (5..=15).contains(&messages.len()),
        "5 services, so 5 groups, each sending once per interval: got {} messages",
        messages.len()
    );
    let succeeded = actions(&server, "action=chat&status=succeeded").await;
    assert_eq!(succeeded.len(), 500);
    // Each message names its group and how many alerts it carries.
    let total: usize = messages
        .iter()
        .map(|m| {
            let text = m.body["text"].as_str().unwrap_or_default().to_owned();
            assert!(text.contains("for service=svc"), "{text}");
            text.trim_start_matches("[vakt] ")
                .split(' ')
                .next()
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(total, 500, "every alert announced exactly once");
}

#[tokio::test]
async fn a_group_message_s_answer_is_kept_once_on_the_message_s_own_action() {
    let receiver = Receiver::start(Duration::ZERO).await;
    let config = format!(
        r#"{POLL}
[[rules]]
name = "page"
when = 'severity == "critical"'
actions = ["chat"]

[actions.chat]
type = "notify"
channel = "chat"
group_by = ["service"]
group_wait_secs = 1

[channels.chat]
type = "webhook"
url = "{}/chat"
"#,
        receiver.url
    );
    let server = TestServer::with_config(Some(&config)).await;
    let events = billing_alerts(5);
    let (status, _) = server.post("/api/v1/events", &Value::Array(events)).await;
    assert_eq!(status, 202);
    let done = eventually(20, "the group's five members sent", || async {
        let done = actions(&server, "action=chat&status=succeeded").await;
        (done.len() == 5).then_some(done)
    })
    .await;
    assert_eq!(receiver.all().len(), 1, "one message for the group");
    let mut named = Vec::new();
    let mut kept = Vec::new();
    for action in &done {
        let id = action["id"].as_str().expect("id");
        let (_, detail) = server.get(&format!("/api/v1/actions/{id}")).await;
        let attempt = &detail["attempts"][0];
        let text = attempt["detail"].as_str().unwrap_or_default();
        // "sent in group message ID with 5 action(s): POST ... answered 200 OK"
        let message = text
            .strip_prefix("sent in group message ")
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or_else(|| panic!("a member's attempt names its message: {text}"));
        assert!(text.contains("with 5 action(s)"), "{text}");
        named.push(message.to_owned());
        if !attempt["output"].is_null() {
            assert_eq!(attempt["output"]["status"], 200, "{attempt}");
            kept.push(id.to_owned());
        }
    }
    named.dedup();
    assert_eq!(
        named.len(),
        1,
        "every member names the one message: {named:?}"
    );
    assert_eq!(
        kept, named,
        "the receiver's answer is on the message's own action, once"
    );
}

/// When the message's own action (its first member) is inhibited and left out, the
/// receiver's answer goes on the first member the message covered, so it is kept once.
#[tokio::test]
async fn a_group_message_s_answer_is_kept_when_its_first_member_is_inhibited() {
    let receiver = Receiver::start(Duration::ZERO).await;
    let config = format!(
        r#"{POLL}
[[rules]]
name = "page"
when = 'severity == "critical"'
actions = ["chat"]

[actions.chat]
type = "notify"
channel = "chat"
group_by = ["service"]
group_wait_secs = 1

[channels.chat]
type = "webhook"
url = "{}/chat"

{ROUTER_DOWN}"#,
        receiver.url
    );
    let server = TestServer::with_config(Some(&config)).await;
    let (status, _) = server
        .post(
            "/api/v1/events",
            &event("router1", "ping", "critical", json!({})),
        )
        .await;
    assert_eq!(status, 202);
    eventually(10, "the router's message", || async {
        (receiver.all().len() == 1).then_some(())
    })
    .await;
    // web1, behind the router, is decided first: its action names the billing message.
    let events: Vec<Value> = [("web1", "router1"), ("web2", "none"), ("web3", "none")]
        .iter()
        .map(|(host, upstream)| {
            event(
                host,
                "http",
                "critical",
                json!({"service": "billing", "labels": {"upstream": upstream}}),
            )
        })
        .collect();
    let (status, _) = server.post("/api/v1/events", &Value::Array(events)).await;
    assert_eq!(status, 202);
    let done = eventually(20, "the billing group recorded", || async {
        let done: Vec<Value> = actions(&server, "action=chat")
            .await
            .into_iter()
            .filter(|a| {
                a["group_key"]
                    .as_str()
                    .is_some_and(|k| k.contains("billing"))
            })
            .collect();
        (done.len() == 3 && done.iter().all(|a| a["status"] != "pending")).then_some(done)
    })
    .await;
    assert_eq!(
        receiver.all().len(),
        2,
        "the router's message and billing's"
    );
    // Oldest first: web1, web2, web3.
    let mut ids: Vec<&str> = done.iter().filter_map(|a| a["id"].as_str()).collect();
    ids.sort_unstable();
    let mut outputs = Vec::new();
    for id in &ids {
        let (_, detail) = server.get(&format!("/api/v1/actions/{id}")).await;
        let attempt = &detail["attempts"][0];
        outputs.push((
            detail["status"].as_str().unwrap_or_default().to_owned(),
            attempt["output"]["status"].as_u64(),
        ));
    }
    assert_eq!(
        outputs,
        [
            ("skipped".to_owned(), None),
            ("succeeded".to_owned(), Some(200)),
            ("succeeded".to_owned(), None),
        ],
        "web1 inhibited; the answer on web2, the first member the message covered"
    );
}

#[tokio::test]
async fn a_flapping_alert_notifies_that_it_flaps_and_again_when_it_settles() {
    let receiver = Receiver::start(Duration::ZERO).await;
    let config = format!(
        r#"{POLL}
[alerts]
reopen_window_secs = 5
flap_threshold = 3
flap_window_secs = 5

[[rules]]
name = "page"
when = 'check == "ping"'
actions = ["chat"]

[actions.chat]
type = "notify"
channel = "chat"

[channels.chat]
type = "webhook"
url = "{}/chat"
"#,
        receiver.url
    );
    let server = TestServer::with_config(Some(&config)).await;
    for severity in [
        "critical", "ok", "critical", "ok", "critical", "ok", "critical",
    ] {
        server
            .post(
                "/api/v1/events",
                &event("router1", "ping", severity, json!({})),
            )
            .await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Quiet for longer than the window, then a repeat: it settled (still critical).
    tokio::time::sleep(Duration::from_millis(5200)).await;
    server
        .post(
            "/api/v1/events",
            &event("router1", "ping", "critical", json!({})),
        )
        .await;
    let mut purposes = eventually(10, "the settled notice", || async {
        let purposes: Vec<String> = receiver
            .all()
            .iter()
            .map(|r| r.body["purpose"].as_str().unwrap_or_default().to_owned())
            .collect();
        purposes.contains(&"settled".to_owned()).then_some(purposes)
    })
    .await;
    // open, resolve, reopen notify; the fourth change (a resolve) starts flapping: one
    // notice; the rest are suppressed until it settles. The decisions are in that order
    // (deliveries run concurrently, so the receiver may see them in another under load).
    let decided: Vec<String> = {
        let mut list = actions(&server, "action=chat").await;
        list.reverse(); // the API lists newest first
        list.iter()
            .filter(|a| a["status"] != "suppressed")
            .map(|a| a["purpose"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(
        decided,
        ["trigger", "resolved", "trigger", "flapping", "settled"]
    );
    purposes.sort();
    assert_eq!(
        purposes,
        ["flapping", "resolved", "settled", "trigger", "trigger"]
    );
    let suppressed = actions(&server, "status=suppressed").await;
    assert!(!suppressed.is_empty());
    assert!(
        suppressed
            .iter()
            .all(|a| a["suppressed_by"] == "the alert is flapping"),
        "{suppressed:?}"
    );
}

/// Issue 13: an alert that ends resolved and stays quiet gets its `settled` notice too,
/// although no event comes to notice the quiet.
#[tokio::test]
async fn a_flapping_alert_that_ends_resolved_and_stays_quiet_settles() {
    let receiver = Receiver::start(Duration::ZERO).await;
    let config = format!(
        r#"{POLL}
[alerts]
reopen_window_secs = 5
flap_threshold = 3
flap_window_secs = 3

[[rules]]
name = "page"
when = 'check == "ping"'
actions = ["chat"]

[actions.chat]
type = "notify"
channel = "chat"

[channels.chat]
type = "webhook"
url = "{}/chat"
"#,
        receiver.url
    );
    let server = TestServer::with_config(Some(&config)).await;
    for severity in ["critical", "ok", "critical", "ok", "critical", "ok"] {
        server
            .post(
                "/api/v1/events",
                &event("router2", "ping", severity, json!({})),
            )
            .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let settled = eventually(15, "the settled notice without another event", || async {
        receiver
            .all()
            .iter()
            .find(|r| r.body["purpose"] == "settled")
            .cloned()
    })
    .await;
    assert_eq!(
        settled.body["alert"]["status"], "resolved",
        "{:?}",
        settled.body
    );
    let alert_id = server.only_alert_id().await;
    let (_, alert) = server.get(&format!("/api/v1/alerts/{alert_id}")).await;
    let timeline = alert["timeline"].as_array().cloned().unwrap_or_default();
    assert!(
        timeline.iter().any(|t| t["kind"] == "settled"
            && t["message"]
                .as_str()
                .is_some_and(|m| m.contains("it is resolved"))),
        "{alert}"
    );
    assert_eq!(alert["handling"]["flapping"], false, "{alert}");
    // Settled once: the sweep does not settle it again.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let count = receiver
        .all()
        .iter()
        .filter(|r| r.body["purpose"] == "settled")
        .count();
    assert_eq!(count, 1);
}

/// A `vakt serve` process on a fixed port with its configuration file
/// (`harness::spawn_node_on`), so a test can kill it (-9) and start it again on the same data
/// directory while clients keep its address.
struct Restartable {
    path: std::path::PathBuf,
    port: u16,
    base: String,
    client: reqwest::Client,
}

impl Restartable {
    /// A server on a data directory in `work`, configured with `config` after `[storage]`.
    fn new(work: &std::path::Path, config: &str) -> Restartable {
        let path = work.join("vakt.toml");
        let storage = format!("[storage]\ndata_dir = {:?}\n", work.join("data"));
        std::fs::write(&path, storage + config).expect("config");
        let port = free_port();
        Restartable {
            path,
            port,
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
        }
    }

    /// Starts the server and waits until it is ready.
    async fn start(&self) -> tokio::process::Child {
        spawn_node_on(&self.path, None, self.port).await.child
    }

    async fn post_events(&self, events: &[Value]) -> u16 {
        self.client
            .post(format!("{}/api/v1/events", self.base))
            .json(events)
            .send()
            .await
            .expect("POST")
            .status()
            .as_u16()
    }

    /// `GET path`: the answer's JSON (`harness::decode`).
    async fn get(&self, path: &str) -> Value {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("GET");
        crate::harness::decode(response).await.1
    }

    /// `GET /api/v1/actions` with these filters (up to 1,000).
    async fn actions(&self, filters: &str) -> Vec<Value> {
        let page = self
            .get(&format!("/api/v1/actions?limit=1000&{filters}"))
            .await;
        page["items"].as_array().cloned().unwrap_or_default()
    }
}

/// Kills a `Restartable` server with SIGKILL once `receiver` got its first request
/// (something is in flight), and reaps it.
async fn kill_nine_in_flight(vakt: &mut tokio::process::Child, receiver: &Receiver) {
    eventually(10, "the first delivery in flight", || async {
        (!receiver.all().is_empty()).then_some(())
    })
    .await;
    vakt.start_kill().expect("kill -9");
    let _ = vakt.wait().await;
}

#[tokio::test]
async fn kill_nine_between_decision_and_delivery_loses_nothing_and_repeats_nothing() {
    let work = tempfile::tempdir().expect("dir");
    // The receiver takes 2 s per request: the kill lands while deliveries are in flight
    // and most decided actions have not been tried at all.
    let receiver = Receiver::start(Duration::from_secs(2)).await;
    let config = format!(
        r#"
[dispatch]
poll_interval_ms = 100
concurrency = 4

[[rules]]
name = "page"
when = 'severity == "critical"'
actions = ["hook"]

[actions.hook]
type = "webhook"
url = "{}/hook"
timeout_secs = 10
"#,
        receiver.url
    );
    let server = Restartable::new(work.path(), &config);
    let mut vakt = server.start().await;
    let events: Vec<Value> = (0..20)
        .map(|i| event(&format!("host{i}"), "http", "critical", json!({})))
        .collect();
    assert_eq!(server.post_events(&events).await, 202);
    kill_nine_in_flight(&mut vakt, &receiver).await;
    let before = receiver.all().len();
    assert!(
        before < 20,
        "the kill must land before everything was delivered ({before})"
    );

    let mut vakt = server.start().await;
    let succeeded = eventually(60, "all 20 actions succeeded", || async {
        let done = server.actions("status=succeeded").await;
        (done.len() == 20).then_some(done)
    })
    .await;
    // Every decided action reached the receiver; each idempotency key stands for one action.
    let ids: BTreeSet<String> = succeeded
        .iter()
        .map(|a| a["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    let keys: BTreeSet<String> = receiver
        .all()
        .iter()
        .map(|r| r.headers["idempotency-key"].clone())
        .collect();
    assert_eq!(ids, keys);
    // Only what was in flight at the kill was sent twice, with the same key, and vakt
    // recorded the interruption; nothing else repeated.
    let mut per_key: BTreeMap<String, usize> = BTreeMap::new();
    for r in receiver.all() {
        *per_key
            .entry(r.headers["idempotency-key"].clone())
            .or_default() += 1;
    }
    let repeated: Vec<&String> = per_key
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(k, _)| k)
        .collect();
    assert!(
        repeated.len() <= 4,
        "at most the 4 in flight repeat: {per_key:?}"
    );
    assert!(per_key.values().all(|n| *n <= 2), "{per_key:?}");
    for key in &repeated {
        let detail = server.get(&format!("/api/v1/actions/{key}")).await;
        let outcomes: Vec<&str> = detail["attempts"]
            .as_array()
            .expect("attempts")
            .iter()
            .map(|a| a["outcome"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(outcomes, ["interrupted", "succeeded"], "{detail}");
    }
    let _ = vakt.start_kill();
    let _ = vakt.wait().await;
}

/// A group message in flight when vakt is killed: on SQLite its members' claim lives only
/// in memory (their rows stay `pending`), so after the restart the same members go out
/// again in one message, with the same idempotency key, and end succeeded, each with one
/// attempt; nothing was marked sent before it was.
#[tokio::test]
async fn kill_nine_during_a_group_message_sends_the_group_again() {
    let work = tempfile::tempdir().expect("dir");
    // The receiver takes 2 s per message: the kill lands while the first is in flight.
    let receiver = Receiver::start(Duration::from_secs(2)).await;
    let config = format!(
        r#"
[dispatch]
poll_interval_ms = 100

[[rules]]
name = "page"
when = 'severity == "critical"'
actions = ["chat"]

[actions.chat]
type = "notify"
channel = "chat"
group_by = ["service"]
group_wait_secs = 0
group_interval_secs = 1

[channels.chat]
type = "slack"
url = "{}/slack"
"#,
        receiver.url
    );
    let server = Restartable::new(work.path(), &config);
    let mut vakt = server.start().await;
    let events = billing_alerts(12);
    assert_eq!(server.post_events(&events).await, 202);
    kill_nine_in_flight(&mut vakt, &receiver).await;
    let first = receiver.all();
    assert_eq!(first.len(), 1, "one message for the group");

    let mut vakt = server.start().await;
    let succeeded = eventually(30, "all 12 members succeeded", || async {
        let done = server.actions("action=chat&status=succeeded").await;
        (done.len() == 12).then_some(done)
    })
    .await;
    assert!(
        succeeded.iter().all(|a| a["attempts"] == 1),
        "{succeeded:?}"
    );
    let messages = receiver.all();
    assert_eq!(
        messages.len(),
        2,
        "the interrupted message, sent again once"
    );
    for m in &messages {
        let text = m.body["text"].as_str().unwrap_or_default();
        assert!(
            text.starts_with("[vakt] 12 "),
            "every member in each: {text}"
        );
    }
    assert_eq!(
        messages[0].headers.get("idempotency-key"),
        messages[1].headers.get("idempotency-key"),
        "the same message, the same key"
    );
    let _ = vakt.start_kill();
    let _ = vakt.wait().await;
}

/// On SQLite an action a stopped process left `running` is taken back before the next
/// process can ingest: the start takes back every `running` action whatever its lease says,
/// and an action the writer hands to the dispatcher in the first instant is `running` too
/// (taken back as well, it would be sent twice).
#[tokio::test]
async fn actions_left_running_are_taken_back_before_the_next_start_serves() {
    // Nothing listens there: the first attempt fails, the retry waits an hour.
    let config = format!(
        r#"{POLL}
[[rules]]
name = "page"
when = 'severity == "critical"'
actions = ["hook"]

[actions.hook]
type = "webhook"
url = "http://127.0.0.1:{}/hook"
retry = {{ attempts = 5, backoff_secs = 3600, backoff_max_secs = 3600 }}
"#,
        free_port()
    );
    let mut server = TestServer::with_config(Some(&config)).await;
    let (status, _) = server
        .post(
            "/api/v1/events",
            &event("db01", "http", "critical", json!({})),
        )
        .await;
    assert_eq!(status, 202);
    let id = eventually(20, "the first attempt to fail", || async {
        actions(&server, "action=hook")
            .await
            .into_iter()
            .find(|a| a["attempts"] == 1 && a["status"] == "pending")
            .and_then(|a| a["id"].as_str().map(str::to_owned))
    })
    .await;
    server.stop().await;
    // What a process that died mid-attempt leaves: the action claimed, its lease hours on.
    let overrides = vakt::config::Overrides {
        listen: None,
        data_dir: Some(server.data_dir()),
        database_url: None,
    };
    let location = vakt::config::Config::load(Some(&server.config_path()), &overrides)
        .expect("config")
        .location;
    let store = vakt_store::open(&location).await.expect("store");
    let now = chrono::Utc::now();
    let claimed = store
        .claim_actions(
            now + chrono::Duration::hours(2),
            now + chrono::Duration::hours(3),
            10,
        )
        .await
        .expect("claim");
    assert_eq!(
        claimed
            .iter()
            .map(|r| r.decided.id.as_str())
            .collect::<Vec<_>>(),
        [id.as_str()]
    );
    store.close().await;
    drop(store);

    server.boot(true, None).await;
    // Read at once, before any request: the start took it back before it returned.
    let store = &server.server.as_ref().expect("server").state.store;
    let (record, attempts) = store.action(&id).await.expect("read").expect("exists");
    assert_eq!(
        record.status,
        vakt_store::ActionStatus::Pending,
        "{record:?}"
    );
    assert_eq!(
        attempts.last().map(|a| a.outcome.as_str()),
        Some("interrupted"),
        "{attempts:?}"
    );
    server.stop().await;
}

async fn vakt_cli(args: &[&str]) -> (i32, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args(args)
        .output()
        .await
        .expect("vakt runs");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test]
async fn the_silence_and_actions_commands_work_against_a_server() {
    let server = TestServer::start().await;
    let url = server.base.clone();
    let (code, out) = vakt_cli(&[
        "silence",
        "add",
        "service=\"billing\"",
        "--duration",
        "2h",
        "--by",
        "alice",
        "--comment",
        "migration",
        "--url",
        &url,
        "--json",
    ])
    .await;
    assert_eq!(code, 0, "{out}");
    let created: Value = serde_json::from_str(&out).expect("json");
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(created["matchers"], json!(["service=\"billing\""]));
    let (code, out) = vakt_cli(&["silence", "list", "--state", "active", "--url", &url]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&id) && out.contains("by alice: migration"),
        "{out}"
    );
    let (code, out) = vakt_cli(&["silence", "expire", &id, "--url", &url]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("expired"), "{out}");
    // A bad matcher is the user's error (exit 1), named by the server.
    let (code, out) = vakt_cli(&[
        "silence",
        "add",
        "not a matcher",
        "--by",
        "x",
        "--url",
        &url,
    ])
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("matchers[0]"), "{out}");
    // Retrying an action that did not fail is refused with the reason.
    server
        .post(
            "/api/v1/events",
            &event(
                "db01",
                "disk_usage",
                "warning",
                json!({"metrics": {"used_pct": 97.0}}),
            ),
        )
        .await;
    let id = eventually(10, "an action", || async {
        actions(&server, "")
            .await
            .into_iter()
            .next()
            .and_then(|a| a["id"].as_str().map(str::to_owned))
    })
    .await;
    let (code, out) = vakt_cli(&["actions", "list", "--url", &url]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&id), "{out}");
    let (code, out) = vakt_cli(&["actions", "show", &id, "--url", &url]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\"attempts\""), "{out}");
    let (code, out) = vakt_cli(&["actions", "retry", &id, "--by", "bob", "--url", &url]).await;
    assert!(
        code == 1 && out.contains("only failed or skipped actions can be retried"),
        "{code} {out}"
    );
}

#[tokio::test]
async fn transient_failures_are_retried_with_backoff_and_permanent_ones_are_not() {
    let receiver = Receiver::start(Duration::ZERO).await;
    let config = format!(
        r#"{POLL}
[[rules]]
name = "page"
when = 'severity == "critical"'
actions = ["flaky", "bad"]

[actions.flaky]
type = "webhook"
url = "{url}/flaky"
retry = {{ attempts = 4, backoff_secs = 1, backoff_max_secs = 1 }}

[actions.bad]
type = "webhook"
url = "{url}/bad"
"#,
        url = receiver.url
    );
    let server = TestServer::with_config(Some(&config)).await;
    server
        .post(
            "/api/v1/events",
            &event("db01", "http", "critical", json!({})),
        )
        .await;
    let flaky = eventually(20, "the flaky webhook to succeed", || async {
        actions(&server, "action=flaky&status=succeeded")
            .await
            .into_iter()
            .next()
    })
    .await;
    assert_eq!(flaky["attempts"], 3);
    let (_, detail) = server
        .get(&format!(
            "/api/v1/actions/{}",
            flaky["id"].as_str().expect("id")
        ))
        .await;
    let outcomes: Vec<&str> = detail["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| a["outcome"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(outcomes, ["failed", "failed", "succeeded"]);
    assert_eq!(detail["attempts"][0]["output"]["status"], 503);
    // One second of backoff between attempts.
    let started: Vec<chrono::DateTime<chrono::Utc>> = detail["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .filter_map(|a| a["started_at"].as_str().and_then(|t| t.parse().ok()))
        .collect();
    assert!(
        started
            .windows(2)
            .all(|w| (w[1] - w[0]).num_milliseconds() >= 900),
        "{started:?}"
    );
    let bad = eventually(10, "the bad webhook to fail", || async {
        actions(&server, "action=bad&status=failed")
            .await
            .into_iter()
            .next()
    })
    .await;
    assert_eq!(bad["attempts"], 1, "a 400 is not retried");
    assert!(
        bad["outcome"]
            .as_str()
            .is_some_and(|o| o.contains("400") && o.contains("not retried")),
        "{bad}"
    );
    // A person can retry it: it runs once more (and fails again, recorded).
    let (status, _) = server
        .post(
            &format!("/api/v1/actions/{}/retry", bad["id"].as_str().expect("id")),
            &json!({"by": "alice"}),
        )
        .await;
    assert_eq!(status, 200);
    eventually(10, "the second attempt", || async {
        (receiver.on_path("/bad").len() == 2).then_some(())
    })
    .await;
}

/// Issue 13: inhibition read only the first 1,000 active alerts, so an upstream alert
/// further down the list muted nothing. With 5,000 other alerts open it still holds.
#[tokio::test]
async fn inhibition_is_exact_with_five_thousand_open_alerts() {
    let receiver = Receiver::start(Duration::ZERO).await;
    let config = format!(
        r#"{POLL}
[[rules]]
name = "page"
when = 'severity == "critical"'
actions = ["chat"]

[actions.chat]
type = "notify"
channel = "chat"

[channels.chat]
type = "webhook"
url = "{}/chat"

{ROUTER_DOWN}"#,
        receiver.url
    );
    let server = TestServer::with_config(Some(&config)).await;
    // The upstream alert first: the oldest, so the last in a newest-first listing.
    let (status, _) = server
        .post(
            "/api/v1/events",
            &event("router9", "ping", "critical", json!({})),
        )
        .await;
    assert_eq!(status, 202);
    let filler: Vec<Value> = (0..5_000)
        .map(|n| event(&format!("host{n}"), "disk", "warning", json!({})))
        .collect();
    let (status, body) = server.post("/api/v1/events", &Value::Array(filler)).await;
    assert_eq!(status, 202, "{body}");
    let (status, _) = server
        .post(
            "/api/v1/events",
            &event(
                "web9",
                "http",
                "critical",
                json!({"labels": {"upstream": "router9"}}),
            ),
        )
        .await;
    assert_eq!(status, 202);
    let skipped = eventually(20, "web9's notification inhibited", || async {
        let list = actions(&server, "status=skipped").await;
        (!list.is_empty()).then_some(list)
    })
    .await;
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert!(
        skipped[0]["outcome"]
            .as_str()
            .is_some_and(|o| o.contains("inhibited by rule router-down")),
        "{skipped:?}"
    );
    // Only the router's own notification went out.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent: Vec<String> = receiver
        .all()
        .iter()
        .map(|r| {
            r.body["alert"]["resource"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(sent, ["router9"]);
}

#[tokio::test]
async fn an_open_upstream_alert_inhibits_what_depends_on_it() {
    let receiver = Receiver::start(Duration::ZERO).await;
    let config = format!(
        r#"{POLL}
[[rules]]
name = "page"
when = 'severity == "critical"'
actions = ["chat"]

[actions.chat]
type = "notify"
channel = "chat"

[channels.chat]
type = "webhook"
url = "{}/chat"

{ROUTER_DOWN}"#,
        receiver.url
    );
    let server = TestServer::with_config(Some(&config)).await;
    server
        .post(
            "/api/v1/events",
            &event("router1", "ping", "critical", json!({})),
        )
        .await;
    eventually(10, "the router's notification", || async {
        (receiver.all().len() == 1).then_some(())
    })
    .await;
    for (host, upstream) in [
        ("web1", "router1"),
        ("web2", "router1"),
        ("web3", "router2"),
    ] {
        server
            .post(
                "/api/v1/events",
                &event(
                    host,
                    "http",
                    "critical",
                    json!({"labels": {"upstream": upstream}}),
                ),
            )
            .await;
    }
    let skipped = eventually(10, "two inhibited actions", || async {
        let list = actions(&server, "status=skipped").await;
        (list.len() == 2).then_some(list)
    })
    .await;
    assert!(
        skipped.iter().all(|a| a["outcome"]
            .as_str()
            .is_some_and(|o| o.contains("inhibited by rule router-down"))),
        "{skipped:?}"
    );
    eventually(10, "web3's notification", || async {
        receiver
            .all()
            .iter()
            .any(|r| r.body["alert"]["resource"] == "web3")
            .then_some(())
    })
    .await;
    let resources: BTreeSet<String> = receiver
        .all()
        .iter()
        .map(|r| {
            r.body["alert"]["resource"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(
        resources,
        BTreeSet::from(["router1".to_owned(), "web3".to_owned()])
    );
    // The Alertmanager API shows the same: web1 and web2 suppressed, inhibited by the router.
    let (_, listed) = server.get("/api/v2/alerts").await;
    let router_fp = listed
        .as_array()
        .and_then(|l| l.iter().find(|a| a["labels"]["instance"] == "router1"))
        .map(|a| a["fingerprint"].clone())
        .expect("router1 listed");
    for alert in listed.as_array().expect("list") {
        let inhibited =
            ["web1", "web2"].contains(&alert["labels"]["instance"].as_str().unwrap_or_default());
        assert_eq!(
            alert["status"]["state"],
            if inhibited { "suppressed" } else { "active" },
            "{alert}"
        );
        assert_eq!(
            alert["status"]["inhibitedBy"],
            if inhibited {
                json!([router_fp])
            } else {
                json!([])
            }
        );
    }
    let (_, shown) = server.get("/api/v2/alerts?inhibited=false").await;
    assert_eq!(shown.as_array().map(Vec::len), Some(2), "{shown}");
}

#[tokio::test]
async fn a_throttled_channel_holds_back_the_rest_and_summarises_them() {
    let receiver = Receiver::start(Duration::ZERO).await;
    let config = format!(
        r#"{POLL}
[[rules]]
name = "page"
when = 'severity == "critical"'
actions = ["chat"]

[actions.chat]
type = "notify"
channel = "chat"

[channels.chat]
type = "mattermost"
url = "{}/mm"
throttle_max = 2
throttle_window_secs = 2
"#,
        receiver.url
    );
    let server = TestServer::with_config(Some(&config)).await;
    let events: Vec<Value> = (0..5)
        .map(|i| event(&format!("host{i}"), "http", "critical", json!({})))
        .collect();
    server.post("/api/v1/events", &Value::Array(events)).await;
    let skipped = eventually(10, "three throttled", || async {
        let list = actions(&server, "status=skipped").await;
        (list.len() == 3).then_some(list)
    })
    .await;
    assert!(skipped.iter().all(|a| {
        a["outcome"]
            .as_str()
            .is_some_and(|o| o.starts_with("throttled"))
    }));
    // Two messages at once, then one summary of the three when the window allows.
    let summary = eventually(10, "the summary", || async {
        receiver.all().get(2).map(|r| r.body.clone())
    })
    .await;
    assert_eq!(receiver.all().len(), 3);
    let text = summary["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("3 notification(s) held back by throttling"),
        "{summary}"
    );
    assert_eq!(text.matches("[CRITICAL] http on host").count(), 3, "{text}");
}

/// Issue 13: throttle windows survive a restart: after two messages in the window, a
/// restarted vakt still holds the third back, and its summary still comes.
#[tokio::test]
async fn a_restart_keeps_the_throttle_window() {
    let receiver = Receiver::start(Duration::ZERO).await;
    let config = format!(
        r#"{POLL}
[[rules]]
name = "page"
when = 'severity == "critical"'
actions = ["chat"]

[actions.chat]
type = "notify"
channel = "chat"

[channels.chat]
type = "mattermost"
url = "{}/mm"
throttle_max = 2
throttle_window_secs = 4
"#,
        receiver.url
    );
    let mut server = TestServer::with_config(Some(&config)).await;
    let events: Vec<Value> = (0..2)
        .map(|i| event(&format!("host{i}"), "http", "critical", json!({})))
        .collect();
    server.post("/api/v1/events", &Value::Array(events)).await;
    eventually(10, "two messages", || async {
        (receiver.all().len() == 2).then_some(())
    })
    .await;
    server.stop().await;
    server.boot(true, None).await;
    server
        .post(
            "/api/v1/events",
            &event("host9", "http", "critical", json!({})),
        )
        .await;
    let skipped = eventually(10, "the third throttled after the restart", || async {
        let list = actions(&server, "status=skipped").await;
        (!list.is_empty()).then_some(list)
    })
    .await;
    assert!(
        skipped[0]["outcome"]
            .as_str()
            .is_some_and(|o| o.starts_with("throttled")),
        "{skipped:?}"
    );
    assert_eq!(receiver.all().len(), 2, "nothing more went out at once");
    let summary = eventually(15, "the summary after the window", || async {
        receiver.all().get(2).map(|r| r.body.clone())
    })
    .await;
    assert!(
        summary["text"]
            .as_str()
            .is_some_and(|t| t.contains("1 notification(s) held back by throttling")),
        "{summary}"
    );
}

/// An exec action's command sees only what the action gives it: vakt's own environment (a
/// cloud credential, say) is not passed on (issue 17's attack list).
#[tokio::test]
async fn commands_do_not_inherit_vakts_environment() {
    let work = tempfile::tempdir().expect("dir");
    let port = crate::harness::free_port();
    let config = work.path().join("vakt.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[storage]
data_dir = "{}"
[dispatch]
poll_interval_ms = 100

[[rules]]
name = "env"
when = 'check == "env"'
actions = ["show-env"]

[actions.show-env]
type = "exec"
command = ["env"]
env = {{ TARGET = "{{{{ alert.resource }}}}" }}
"#,
            work.path().join("data").display()
        ),
    )
    .expect("config");
    let node = crate::harness::spawn_node_with_env(
        &config,
        None,
        port,
        &[("AWS_SECRET_ACCESS_KEY", "hunter2-secret")],
    )
    .await;
    let client = reqwest::Client::new();
    let status = client
        .post(format!("{}/api/v1/events", node.base))
        .json(&event("db7", "env", "critical", json!({})))
        .send()
        .await
        .expect("POST")
        .status();
    assert_eq!(status, 202);
    let output = eventually(20, "the env action ran", || async {
        let page: Value = client
            .get(format!("{}/api/v1/actions?status=succeeded", node.base))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let id = page["items"][0]["id"].as_str()?.to_owned();
        let detail: Value = client
            .get(format!("{}/api/v1/actions/{id}", node.base))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        detail["attempts"][0]["output"]["stdout"]
            .as_str()
            .map(str::to_owned)
    })
    .await;
    assert!(
        !output.contains("hunter2"),
        "vakt's environment leaked: {output}"
    );
    assert!(output.contains("TARGET=db7"), "{output}");
    assert!(output.contains("VAKT_ACTION_ID="), "{output}");
    assert!(output.contains("PATH=/usr/local/sbin"), "{output}");
}

/// A webhook URL carries its credential (Slack's path, a gateway's query): attempts,
/// outcomes and the alert's timeline show only where it points, and `/api/v1/users` hides a
/// phone gateway's key (issue 17's attack list).
#[tokio::test]
async fn webhook_credentials_stay_out_of_answers() {
    let receiver = Receiver::start(Duration::ZERO).await;
    let config = format!(
        r#"{POLL}
[[rules]]
name = "page"
when = 'severity == "critical"'
actions = ["chat"]

[actions.chat]
type = "notify"
channel = "chat"

[channels.chat]
type = "slack"
url = "{url}/services/T000/B000/SECRET-TOKEN-123"

[[users]]
id = "alice"
phone_webhook = "https://sms.example.com/send?key=PHONE-KEY-456"
"#,
        url = receiver.url
    );
    let server = TestServer::with_config(Some(&config)).await;
    server
        .post(
            "/api/v1/events",
            &event("web1", "http", "critical", json!({})),
        )
        .await;
    let done = eventually(10, "the notification sent", || async {
        actions(&server, "status=succeeded")
            .await
            .into_iter()
            .next()
    })
    .await;
    let id = done["id"].as_str().expect("id");
    let (_, detail) = server.get(&format!("/api/v1/actions/{id}")).await;
    let (_, alert) = server
        .get(&format!(
            "/api/v1/alerts/{}",
            done["alert_id"].as_str().expect("alert")
        ))
        .await;
    let (_, users) = server.get("/api/v1/users").await;
    for shown in [detail.to_string(), alert.to_string(), done.to_string()] {
        assert!(!shown.contains("SECRET-TOKEN-123"), "{shown}");
        assert!(shown.contains("answered 200"), "{shown}");
    }
    assert!(!users.to_string().contains("PHONE-KEY-456"), "{users}");
    assert!(
        users.to_string().contains("https://sms.example.com/"),
        "{users}"
    );
}

/// `shell = true`: every value interpolated into the script is quoted, so an event whose
/// resource is `$(touch FILE)` prints that text and creates nothing (issue 17's attack
/// list: it ran the command).
#[tokio::test]
async fn event_text_cannot_become_shell_code() {
    let work = tempfile::tempdir().expect("dir");
    let marker = work.path().join("pwned");
    let config = format!(
        r#"{POLL}
[[rules]]
name = "shell"
when = 'check == "shell"'
actions = ["echo"]

[actions.echo]
type = "exec"
shell = true
command = ["echo", "resource:", "{{{{ alert.resource }}}}"]
"#
    );
    let server = TestServer::with_config(Some(&config)).await;
    let resource = format!(
        "$(touch {}); `touch {}`",
        marker.display(),
        marker.display()
    );
    let (status, body) = server
        .post(
            "/api/v1/events",
            &json!({"resource": resource, "check": "shell", "summary": "s", "severity": "critical"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let done = eventually(15, "the echo ran", || async {
        actions(&server, "status=succeeded")
            .await
            .into_iter()
            .next()
    })
    .await;
    let (_, detail) = server
        .get(&format!(
            "/api/v1/actions/{}",
            done["id"].as_str().expect("id")
        ))
        .await;
    let stdout = detail["attempts"][0]["output"]["stdout"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!marker.exists(), "event text ran as shell code: {stdout}");
    assert_eq!(stdout.trim(), format!("resource: {resource}"), "{detail}");
}

/// Event text is no markup in chat: `<!channel>`, `@all` and links in a summary reach
/// Slack and Mattermost escaped (issue 17's attack list: they went out verbatim).
#[tokio::test]
async fn event_text_cannot_mention_everyone_in_chat() {
    let receiver = Receiver::start(Duration::ZERO).await;
    let config = format!(
        r#"{POLL}
[[rules]]
name = "page"
when = 'severity == "critical"'
actions = ["slack", "mattermost"]

[actions.slack]
type = "notify"
channel = "slack"
[actions.mattermost]
type = "notify"
channel = "mattermost"

[channels.slack]
type = "slack"
url = "{url}/slack"
[channels.mattermost]
type = "mattermost"
url = "{url}/mattermost"
"#,
        url = receiver.url
    );
    let server = TestServer::with_config(Some(&config)).await;
    let summary =
        "<!channel> @all see <https://evil.example|your bank> [click](https://evil.example)";
    server
        .post(
            "/api/v1/events",
            &json!({"resource": "web1", "check": "http", "severity": "critical", "summary": summary}),
        )
        .await;
    eventually(10, "both messages", || async {
        (receiver.all().len() >= 2).then_some(())
    })
    .await;
    let slack = receiver.on_path("/slack")[0].body.to_string();
    assert!(!slack.contains("<!channel>"), "{slack}");
    assert!(!slack.contains("<https://evil.example|"), "{slack}");
    assert!(slack.contains("&lt;!channel&gt;"), "{slack}");
    let mattermost = &receiver.on_path("/mattermost")[0].body;
    let text = format!(
        "{}{}",
        mattermost["text"], mattermost["attachments"][0]["text"]
    );
    assert!(!text.contains("@all"), "{text}");
    assert!(!text.contains("[click](https"), "{text}");
}

/// A webhook body template that puts event text in a JSON string without `tojson` cannot be
/// made to carry extra keys: the text is escaped as a JSON string (issue 17's attack list).
#[tokio::test]
async fn event_text_cannot_add_keys_to_a_webhook_body() {
    let receiver = Receiver::start(Duration::ZERO).await;
    let config = format!(
        r#"{POLL}
[[rules]]
name = "hook"
when = 'severity == "critical"'
actions = ["hook"]

[actions.hook]
type = "webhook"
url = "{url}/hook"
body = '{{"resource": "{{{{ alert.resource }}}}", "admin": false}}'
"#,
        url = receiver.url
    );
    let server = TestServer::with_config(Some(&config)).await;
    let resource = "x\", \"admin\": true, \"y\": \"";
    server
        .post(
            "/api/v1/events",
            &json!({"resource": resource, "check": "http", "severity": "critical", "summary": "s"}),
        )
        .await;
    let hook = eventually(10, "the webhook", || async {
        receiver.on_path("/hook").first().map(|r| r.body.clone())
    })
    .await;
    assert_eq!(hook["resource"], resource, "{hook}");
    assert_eq!(hook["admin"], false, "{hook}");
}
