//! The console in a real browser (Debian's Chromium driven through chromedriver), as an
//! operator uses it: sign in, watch an alert arrive live from `vakt send`, filter with the
//! view in the URL, acknowledge on the alert's page and see a second session's board follow,
//! silence from an alert with the live preview, resolve a hundred alerts at once, work by
//! keyboard alone, switch to Swedish and find no English word of the console's own, pass an
//! axe-core accessibility check, and use the alert page at phone width. Screenshots of the
//! main pages (light, dark, Swedish, phone) are written to `VAKT_SCREENSHOTS_DIR`
//! (default `target/screenshots`).
//!
//! Needs `chromium` and `chromedriver` (test.sh installs them) and axe-core from npm
//! (`VAKT_AXE_JS`, default `target/npm/node_modules/axe-core/axe.min.js`); without them
//! the test says SKIPPED loudly.

#[allow(dead_code)]
#[path = "it/harness.rs"]
mod harness;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

const PASSWORD: &str = "a browser's password";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// chromedriver on a free port in a process group of its own: the group (chromedriver and
/// every Chromium it started) is killed when the test ends, passed or failed, so no
/// headless browser outlives a test that panicked before closing its sessions.
struct Driver {
    _child: tokio::process::Child,
    group: i32,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        if self.group > 0 {
            // SAFETY: kill(2) with a negative pid signals that process group; no memory
            // is touched.
            unsafe {
                libc::kill(-self.group, libc::SIGKILL);
            }
        }
    }
}

impl Driver {
    async fn start() -> Option<Driver> {
        if !std::path::Path::new(CHROMEDRIVER).exists() || !std::path::Path::new(CHROMIUM).exists()
        {
            return None;
        }
        let port = harness::free_port();
        let child = tokio::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .ok()?;
        let group = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .unwrap_or(0);
        let url = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            if reqwest::get(format!("{url}/status"))
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Some(Driver {
                    _child: child,
                    group,
                    url,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    /// A new headless browser window of `width` x `height` with extra Chromium flags; a
    /// width under 500 px is a phone (mobile emulation: desktop windows are never that narrow).
    async fn browser(&self, width: u32, height: u32, flags: &[&str]) -> Client {
        let mut args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            format!("--window-size={width},{height}"),
            "--lang=en-US".to_owned(),
        ];
        args.extend(flags.iter().map(|f| (*f).to_owned()));
        let mut options = json!({"binary": CHROMIUM, "args": args,
                                 "prefs": {"intl.accept_languages": "en-US,en"}});
        if width < 500 {
            options["mobileEmulation"] =
                json!({"deviceMetrics": {"width": width, "height": height, "pixelRatio": 2}});
        }
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("goog:chromeOptions".into(), options);
        ClientBuilder::rustls()
            .expect("rustls")
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("a browser session")
    }
}

async fn css(client: &Client, selector: &str) -> fantoccini::elements::Element {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client
            .wait()
            .at_most(deadline.saturating_duration_since(Instant::now()))
            .for_element(Locator::Css(selector))
            .await
        {
            Ok(element) => return element,
            // A page still loading when the lookup starts aborts it (chromedriver: "aborted
            // by navigation"): look again on the page that loaded.
            Err(e)
                if e.to_string().contains("aborted by navigation") && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{selector}: {e}"),
        }
    }
}

/// Waits until the page's text contains `text`, or fails after `secs`.
async fn until_text(client: &Client, text: &str, secs: u64) -> Duration {
    let started = Instant::now();
    loop {
        // Between two pages there may be no body for a moment: look again.
        let body = match client.find(Locator::Css("body")).await {
            Ok(body) => body.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if body.contains(text) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(secs),
            "{text:?} did not appear within {secs} s; the page says: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn sign_in(client: &Client, base: &str) {
    client.goto(&format!("{base}/")).await.expect("goto");
    let url = client.current_url().await.expect("url");
    assert_eq!(url.path(), "/login", "the board sends to sign-in first");
    css(client, "#user")
        .await
        .send_keys("root")
        .await
        .expect("user");
    css(client, "#password")
        .await
        .send_keys(PASSWORD)
        .await
        .expect("password");
    css(client, "#login button")
        .await
        .click()
        .await
        .expect("sign in");
    css(client, "#board").await;
}

async fn screenshot(client: &Client, name: &str) {
    let dir = std::env::var("VAKT_SCREENSHOTS_DIR").map_or_else(
        |_| harness::repo_root().join("target/screenshots"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    let png = client.screenshot().await.expect("screenshot");
    std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
}

/// axe-core's serious and critical findings on the current page.
async fn accessibility_problems(client: &Client, axe: &str) -> Vec<Value> {
    client.execute(axe, vec![]).await.expect("load axe-core");
    let found = client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations
               .filter(v => v.impact === 'serious' || v.impact === 'critical')
               .map(v => ({id: v.id, impact: v.impact, help: v.help,
                           nodes: v.nodes.slice(0, 3).map(n => n.html)}))));",
            vec![],
        )
        .await
        .expect("axe.run");
    found.as_array().cloned().unwrap_or_default()
}

async fn post_events(api: &reqwest::Client, base: &str, events: Value) {
    let response = api
        .post(format!("{base}/api/v1/events"))
        .basic_auth("root", Some(PASSWORD))
        .json(&events)
        .send()
        .await
        .expect("events");
    assert_eq!(response.status(), 202);
}

async fn alert_status(api: &reqwest::Client, base: &str, resource: &str) -> String {
    let alerts: Value = api
        .get(format!("{base}/api/v1/alerts?resource={resource}"))
        .basic_auth("root", Some(PASSWORD))
        .send()
        .await
        .expect("alerts")
        .json()
        .await
        .expect("json");
    alerts["items"][0]["status"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_works_the_console_in_chromium() {
    let Some(driver) = Driver::start().await else {
        eprintln!(
            "\n*** SKIPPED an_operator_works_the_console_in_chromium: {CHROMIUM} or {CHROMEDRIVER} is missing (apt-get install chromium chromium-driver) ***\n"
        );
        return;
    };
    let axe_path = std::env::var("VAKT_AXE_JS").map_or_else(
        |_| harness::repo_root().join("target/npm/node_modules/axe-core/axe.min.js"),
        PathBuf::from,
    );
    let Ok(axe) = std::fs::read_to_string(&axe_path) else {
        eprintln!(
            "\n*** SKIPPED an_operator_works_the_console_in_chromium: no axe-core at {} (npm install --prefix target/npm axe-core) ***\n",
            axe_path.display()
        );
        return;
    };
    let work = tempfile::tempdir().expect("temp dir");
    let hash = vakt::auth::hash_password(PASSWORD).expect("hash");
    // No syslog or SNMP listeners: their ports are the kernel's choice, and another test's
    // client that still knew a port just freed (a browser's, say) would send its HTTP there,
    // raising a syslog parse error alert that every count of open alerts below would see.
    let config = harness::builtin_on_free_ports()
        .replace(
            "udp = [\"127.0.0.1:0\"]\ntcp = [\"127.0.0.1:0\"]",
            "udp = []\ntcp = []",
        )
        .replace("listen = [\"127.0.0.1:0\"]", "listen = []")
        .replace(
            "data_dir = \"./vakt-data\"",
            &format!("data_dir = \"{}\"", work.path().join("data").display()),
        )
        .replace("[server]\n", "[server]\nauth = \"required\"\n")
        + &format!(
            "\n[[users]]\nid = \"root\"\nname = \"Root\"\nrole = \"admin\"\npassword_hash = \"{hash}\"\n"
        );
    assert!(
        !config.contains("\"127.0.0.1:0\""),
        "the syslog and SNMP listeners are off: {config}"
    );
    let config_path = work.path().join("vakt.toml");
    std::fs::write(&config_path, config).expect("config");
    let node = harness::spawn_node(&config_path, None).await;
    let base = node.base.clone();
    let api = reqwest::Client::new();
    let token: Value = api
        .post(format!("{base}/api/v1/tokens"))
        .basic_auth("root", Some(PASSWORD))
        .json(&json!({"name": "browser-test", "scopes": ["ingest:events"]}))
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    let token = token["token"].as_str().expect("token").to_owned();

    // Sign in; an alert sent with `vakt send` appears on the open board by itself.
    let a = driver.browser(1280, 900, &[]).await;
    sign_in(&a, &base).await;
    let sent = tokio::process::Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args(["send", "--url", &base, "--token", &token])
        .args([
            "--resource",
            "pay01",
            "--check",
            "api",
            "--severity",
            "critical",
        ])
        .args(["--summary", "payments answer 503", "--service", "payments"])
        .status()
        .await
        .expect("vakt send");
    assert!(sent.success());
    let live = until_text(&a, "pay01", 5).await;
    eprintln!("an alert from vakt send appeared on the open board after {live:?}");

    // Filter by label: the URL carries the view.
    let q = css(&a, "#q").await;
    q.send_keys("service=\"payments\"").await.expect("type");
    css(&a, "#filter button")
        .await
        .click()
        .await
        .expect("filter");
    let started = Instant::now();
    let url = loop {
        let url = a.current_url().await.expect("url");
        if url.query().is_some_and(|q| q.contains("payments")) {
            break url;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no filtered URL: {url}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    css(&a, "#board").await;
    let pairs: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(
        pairs.get("q").map(String::as_str),
        Some("service=\"payments\"")
    );
    let rows = a.find_all(Locator::Css("tr.alert")).await.expect("rows");
    assert_eq!(rows.len(), 1);
    // Saved under a name, the view comes back from its chip.
    a.find(Locator::XPath("//nav[@id='saved-views']/button[last()]"))
        .await
        .expect("save button")
        .click()
        .await
        .expect("save");
    a.send_alert_text("payments only").await.expect("name");
    a.accept_alert().await.expect("accept");
    a.goto(&format!("{base}/")).await.expect("goto");
    a.find(Locator::LinkText("payments only"))
        .await
        .expect("saved view")
        .click()
        .await
        .expect("open saved view");
    css(&a, "#board").await;
    let url = a.current_url().await.expect("url");
    assert!(url.as_str().contains("payments"), "{url}");

    // A second session watches the board while the first acknowledges on the alert page.
    let b = driver.browser(1280, 900, &[]).await;
    sign_in(&b, &base).await;
    b.goto(&format!("{base}/?view=table")).await.expect("goto");
    css(&a, "tr.alert td.wide a")
        .await
        .click()
        .await
        .expect("open alert");
    css(&a, "#ack").await;
    screenshot(&a, "alert-light").await;
    let problems = accessibility_problems(&a, &axe).await;
    assert!(problems.is_empty(), "alert page: {problems:#?}");
    css(&a, "#ack").await.click().await.expect("ack");
    until_text(&a, "Acknowledged.", 5).await;
    let started = Instant::now();
    loop {
        let row = b
            .find(Locator::XPath("//tr[contains(., 'pay01')]"))
            .await
            .expect("row")
            .text()
            .await
            .unwrap_or_default();
        if row.contains("Acknowledged") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the second board did not follow: {row}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "an ack showed on a second session's board after {:?}",
        started.elapsed()
    );

    // Silence from the alert: the form is filled in, the preview follows typing (htmx).
    css(&a, "#silence").await.click().await.expect("silence");
    until_text(&a, "Would cover 1 of 1 open alerts.", 5).await;
    let matchers = css(&a, "#matchers").await;
    matchers.clear().await.expect("clear");
    matchers.send_keys("severity=~\".*\"").await.expect("type");
    until_text(&a, "more than half", 5).await;
    matchers.clear().await.expect("clear");
    matchers
        .send_keys("resource=\"pay01\"")
        .await
        .expect("type");
    until_text(&a, "Would cover 1 of 1", 5).await;
    css(&a, "#silence-comment")
        .await
        .send_keys("payments deploy")
        .await
        .expect("comment");
    screenshot(&a, "silence-new").await;
    css(&a, "#create-silence")
        .await
        .click()
        .await
        .expect("create");
    until_text(&a, "Silenced by", 5).await;

    // A hundred alerts resolved in one request, with a reason.
    let batch: Vec<Value> = (0..100)
        .map(|i| {
            json!({"resource": format!("batch{i:03}"), "check": "cron", "severity": "minor",
                        "summary": "job late", "service": "batch"})
        })
        .collect();
    post_events(&api, &base, json!(batch)).await;
    a.goto(&format!("{base}/?q=service%3D%22batch%22&view=table"))
        .await
        .expect("goto");
    css(&a, "#bulk-all").await.click().await.expect("all");
    css(&a, "#bulk-action option[value=resolve]")
        .await
        .click()
        .await
        .expect("resolve");
    css(&a, "#bulk-reason")
        .await
        .send_keys("batch window over")
        .await
        .expect("reason");
    css(&a, "fieldset.bulk button")
        .await
        .click()
        .await
        .expect("apply");
    until_text(&a, "100 alerts changed.", 10).await;
    assert_eq!(alert_status(&api, &base, "batch042").await, "resolved");

    // Keyboard alone: j to the first row, a to acknowledge.
    post_events(
        &api,
        &base,
        json!({"resource": "kb01", "check": "ping", "severity": "major", "summary": "no answer"}),
    )
    .await;
    a.goto(&format!("{base}/?q=kb01&view=table"))
        .await
        .expect("goto");
    css(&a, "tr.alert").await;
    let body = css(&a, "body").await;
    body.send_keys("j").await.expect("j");
    body.send_keys("a").await.expect("a");
    until_text(&a, "Acknowledged.", 5).await;
    assert_eq!(alert_status(&api, &base, "kb01").await, "acknowledged");

    // The board passes axe-core, then in Swedish shows none of its English texts.
    a.goto(&format!("{base}/")).await.expect("goto");
    css(&a, "#board").await;
    let problems = accessibility_problems(&a, &axe).await;
    assert!(problems.is_empty(), "board: {problems:#?}");
    css(&a, "button[name=to][value=sv]")
        .await
        .click()
        .await
        .expect("svenska");
    until_text(&a, "Larm", 5).await;
    let text = css(&a, "body").await.text().await.expect("text");
    let catalogue = |lang: &str| -> BTreeMap<String, String> {
        let path = harness::repo_root().join(format!("crates/vakt/console/i18n/{lang}.toml"));
        toml::from_str(&std::fs::read_to_string(path).expect("catalogue")).expect("toml")
    };
    let (english, swedish) = (catalogue("en"), catalogue("sv"));
    let words: Vec<&str> = text.split(['\n', '·']).map(str::trim).collect();
    for (key, english_text) in &english {
        if swedish.get(key) == Some(english_text) || english_text.contains('{') {
            continue;
        }
        assert!(
            !words.contains(&english_text.as_str()),
            "the Swedish board shows the English {key} = {english_text:?}"
        );
    }
    let problems = accessibility_problems(&a, &axe).await;
    assert!(problems.is_empty(), "Swedish board: {problems:#?}");

    // The reports page, still in Swedish: its chart drawn, no serious accessibility problem.
    a.goto(&format!("{base}/reports?since=1d"))
        .await
        .expect("goto");
    css(&a, "figure.report-chart svg").await;
    until_text(&a, "Händelser över tid", 5).await;
    let problems = accessibility_problems(&a, &axe).await;
    assert!(problems.is_empty(), "reports: {problems:#?}");
    screenshot(&a, "reports-sv").await;

    // From there, replay a rule change: a configuration that drops the api checks, posted
    // with the form; the result names the payments event that would have been dropped.
    css(&a, "a[href='/reports/replay']")
        .await
        .click()
        .await
        .expect("to the replay page");
    let field = css(&a, "#r-config").await;
    field
        .send_keys("[[rules]]\nname = \"quiet-api\"\nwhen = 'check == \"api\"'\ndrop = true\n")
        .await
        .expect("type the configuration");
    css(&a, "#run-replay").await.click().await.expect("replay");
    let verdict = css(&a, "#replay-verdict").await.text().await.expect("text");
    assert!(
        verdict.starts_with("Händelser som hanteras annorlunda"),
        "{verdict}"
    );
    let listed = css(&a, "#replay-differences")
        .await
        .text()
        .await
        .expect("text");
    assert!(
        listed.contains("pay01") && listed.contains("dropped"),
        "{listed}"
    );
    let problems = accessibility_problems(&a, &axe).await;
    assert!(problems.is_empty(), "replay: {problems:#?}");
    screenshot(&a, "replay-sv").await;
    a.goto(&format!("{base}/reports/tune?since=1d"))
        .await
        .expect("goto");
    until_text(&a, "Förslag på justeringar", 5).await;
    let problems = accessibility_problems(&a, &axe).await;
    assert!(problems.is_empty(), "tune: {problems:#?}");

    // Dark mode follows the system.
    let dark = driver.browser(1280, 900, &["--force-dark-mode"]).await;
    sign_in(&dark, &base).await;
    let is_dark = dark
        .execute(
            "return matchMedia('(prefers-color-scheme: dark)').matches",
            vec![],
        )
        .await
        .expect("media");
    assert_eq!(is_dark, json!(true), "the browser prefers dark");
    let background = dark
        .execute(
            "return getComputedStyle(document.body).backgroundColor",
            vec![],
        )
        .await
        .expect("style");
    assert_eq!(background, json!("rgb(17, 19, 24)"), "the console is dark");

    // A phone: the alert's page fits 360 px and its buttons work.
    let phone = driver.browser(360, 800, &[]).await;
    sign_in(&phone, &base).await;
    phone
        .goto(&format!("{base}/?q=pay01&view=table"))
        .await
        .expect("goto");
    css(&phone, "tr.alert td.wide a")
        .await
        .click()
        .await
        .expect("open");
    let width = phone
        .execute("return document.documentElement.scrollWidth", vec![])
        .await
        .expect("width");
    assert!(
        width.as_u64().is_some_and(|w| w <= 360),
        "the alert page is {width} px wide on a 360 px phone"
    );
    screenshot(&phone, "alert-phone").await;
    css(&phone, "#unack").await.click().await.expect("unack");
    until_text(&phone, "Acknowledgement taken back.", 5).await;
    css(&phone, "#resolve")
        .await
        .click()
        .await
        .expect("resolve");
    until_text(&phone, "Resolved.", 5).await;
    assert_eq!(alert_status(&api, &base, "pay01").await, "resolved");

    // The pictures for the documentation: a board with a realistic mix.
    let mix: Vec<Value> = [
        (
            "db01",
            "disk_usage",
            "critical",
            "/var is 97% full",
            "billing",
        ),
        (
            "db02",
            "replication_lag",
            "major",
            "replica 42 s behind",
            "billing",
        ),
        (
            "api03",
            "http_5xx",
            "critical",
            "5xx rate 12% over 5 min",
            "checkout",
        ),
        ("api04", "latency_p99", "warning", "p99 1.8 s", "checkout"),
        (
            "mq01",
            "queue_depth",
            "minor",
            "orders queue at 18,400",
            "checkout",
        ),
        (
            "web07",
            "tls_expiry",
            "warning",
            "certificate expires in 9 days",
            "web",
        ),
        (
            "web08",
            "http_check",
            "major",
            "login page answers 502",
            "web",
        ),
        (
            "nas02",
            "raid_degraded",
            "major",
            "disk 3 of 6 failed",
            "storage",
        ),
        (
            "sw-core1",
            "if_errors",
            "minor",
            "CRC errors on xe-0/0/12",
            "network",
        ),
        (
            "backup01",
            "job_late",
            "info",
            "nightly backup 40 min late",
            "storage",
        ),
    ]
    .iter()
    .map(|(resource, check, severity, summary, service)| {
        json!({"resource": resource, "check": check, "severity": severity,
               "summary": summary, "service": service, "environment": "production"})
    })
    .collect();
    post_events(&api, &base, json!(mix)).await;
    for (client, name) in [
        (&b, "board-light"),
        (&a, "board-swedish"),
        (&dark, "board-dark"),
    ] {
        client.goto(&format!("{base}/")).await.expect("goto");
        until_text(client, "db02", 5).await;
        screenshot(client, name).await;
    }
    phone.goto(&format!("{base}/")).await.expect("goto");
    until_text(&phone, "db02", 5).await;
    screenshot(&phone, "board-phone").await;

    for client in [a, b, dark, phone] {
        let _ = client.close().await;
    }
}

/// The HTML report as a manager opens it: a file from `vakt report`, in Chromium with no
/// server behind it: headings, the charts drawn, nothing fetched or run, no serious
/// accessibility problem, hostile event text shown as text; screenshotted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_html_report_opens_as_one_file_in_chromium() {
    let Some(driver) = Driver::start().await else {
        eprintln!(
            "\n*** SKIPPED the_html_report_opens_as_one_file_in_chromium: {CHROMIUM} or {CHROMEDRIVER} is missing ***\n"
        );
        return;
    };
    let axe_path = std::env::var("VAKT_AXE_JS").map_or_else(
        |_| harness::repo_root().join("target/npm/node_modules/axe-core/axe.min.js"),
        PathBuf::from,
    );
    let Ok(axe) = std::fs::read_to_string(&axe_path) else {
        eprintln!(
            "\n*** SKIPPED the_html_report_opens_as_one_file_in_chromium: no axe-core at {} ***\n",
            axe_path.display()
        );
        return;
    };
    let mut server = harness::TestServer::with_config(Some(
        "[server]\nwrite_rate_per_client = 0\n[dispatch]\nenabled = false\n",
    ))
    .await;
    let events: Vec<Value> = (0..300)
        .map(|i| json!({"resource": format!("web{}", i % 40), "check": if i % 3 == 0 { "disk" } else { "<img src=x onerror=alert(1)>" }, "summary": "s", "severity": if i % 5 == 0 { "ok" } else { "major" }, "service": "shop"}))
        .collect();
    let (status, _) = server.post("/api/v1/events", &json!(events)).await;
    assert_eq!(status, 202);
    server.stop().await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args(["report", "--since", "2d", "--format", "html", "--out"])
        .arg(server.dir.path().join("report.html"))
        .arg("--data-dir")
        .arg(server.data_dir())
        .env_remove("VAKT_CONFIG")
        .output()
        .expect("vakt report");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let client = driver.browser(1200, 900, &[]).await;
    let url = format!("file://{}", server.dir.path().join("report.html").display());
    client.goto(&url).await.expect("open the file");
    let h1 = css(&client, "h1").await.text().await.expect("text");
    assert_eq!(h1, "Event management report");
    let charts = client
        .find_all(Locator::Css("svg.chart rect"))
        .await
        .expect("bars");
    assert!(charts.len() >= 3, "bars drawn: {}", charts.len());
    let scripts = client
        .find_all(Locator::Css("script, img, link"))
        .await
        .expect("query");
    assert!(
        scripts.is_empty(),
        "nothing to run or fetch, hostile text included"
    );
    let body = css(&client, "body").await.text().await.expect("text");
    assert!(
        body.contains("<img src=x onerror=alert(1)>"),
        "shown as text"
    );
    assert!(body.contains("Noise reduction") && body.contains("Response"));
    let problems = accessibility_problems(&client, &axe).await;
    assert!(problems.is_empty(), "{problems:#?}");
    screenshot(&client, "report").await;
    client.close().await.expect("close");
}
