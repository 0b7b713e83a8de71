//! The console over HTTP as a browser without JavaScript uses it: plain links and forms,
//! a session cookie, the CSRF field, redirects. (The browser test, `tests/browser.rs`,
//! drives the same pages in Chromium with JavaScript on.)

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::access::locked_config;
use crate::harness::TestServer;

const VIEWER_PASSWORD: &str = "viewer password 1";

/// A browser without JavaScript: keeps its cookie, follows nothing by itself.
struct Browser {
    client: reqwest::Client,
    base: String,
    cookie: String,
    lang: Option<&'static str>,
}

impl Browser {
    fn new(server: &TestServer) -> Browser {
        Browser {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            base: server.base.clone(),
            cookie: String::new(),
            lang: None,
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("cookie", &self.cookie);
        if let Some(lang) = self.lang {
            request = request.header("accept-language", lang);
        }
        request
    }

    /// (status, Location, body)
    async fn get(&self, path: &str) -> (u16, String, String) {
        let response = self
            .request(reqwest::Method::GET, path)
            .send()
            .await
            .expect("GET");
        answer(response).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> (u16, String, String) {
        let response = self
            .request(reqwest::Method::POST, path)
            .header("origin", &self.base)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(form).expect("form"))
            .send()
            .await
            .expect("POST");
        if let Some(set) = response
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
        {
            self.cookie = set.split(';').next().unwrap_or_default().to_owned();
        }
        answer(response).await
    }

    async fn sign_in(&mut self, user: &str, password: &str) {
        let (status, location, body) = self
            .post(
                "/login",
                &[("user", user), ("password", password), ("next", "/")],
            )
            .await;
        assert_eq!((status, location.as_str()), (303, "/"), "{body}");
    }

    /// The CSRF token the page put in its forms.
    async fn csrf(&self) -> String {
        let (_, _, page) = self.get("/").await;
        attribute(&page, "data-csrf").unwrap_or_default()
    }
}

async fn answer(response: reqwest::Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, location, response.text().await.unwrap_or_default())
}

fn attribute(page: &str, name: &str) -> Option<String> {
    let start = page.find(&format!("{name}=\""))? + name.len() + 2;
    let end = page[start..].find('"')? + start;
    Some(page[start..end].to_owned())
}

fn rows(page: &str) -> usize {
    page.matches("<tr class=\"alert ").count()
}

async fn post_events(server: &TestServer, events: &Value) {
    let response = server
        .client
        .post(server.url("/api/v1/events"))
        .basic_auth("root", Some("correct horse battery staple"))
        .json(events)
        .send()
        .await
        .expect("events");
    assert_eq!(response.status(), 202);
}

/// Sign-in with the plain form, pages behind it, forms that need the session's CSRF field,
/// a viewer who sees no controls and whose forged form is refused, sign-out.
#[tokio::test]
async fn the_console_signs_in_with_a_form_and_refuses_forged_and_unscoped_forms() {
    let hash = vakt::auth::hash_password(VIEWER_PASSWORD).expect("hash");
    let config = locked_config()
        + &format!(
            "\n[[users]]\nid = \"vera\"\nname = \"Vera\"\nrole = \"viewer\"\npassword_hash = \"{hash}\"\n"
        );
    let server = TestServer::with_config(Some(&config)).await;
    post_events(
        &server,
        &json!({"resource": "db01", "check": "disk", "severity": "critical",
                "summary": "disk <script>alert(1)</script> full", "service": "billing"}),
    )
    .await;
    let id = {
        let (_, alerts, _) = server
            .send(reqwest::Method::GET, "/api/v1/alerts", None, None)
            .await;
        assert!(alerts.get("items").is_none(), "auth is required: {alerts}");
        let response = server
            .client
            .get(server.url("/api/v1/alerts"))
            .basic_auth("root", Some("correct horse battery staple"))
            .send()
            .await
            .expect("alerts");
        let alerts: Value = response.json().await.expect("json");
        alerts["items"][0]["id"].as_str().expect("id").to_owned()
    };

    let mut browser = Browser::new(&server);
    let (status, location, _) = browser.get(&format!("/alerts/{id}")).await;
    assert_eq!(status, 303, "a page without a session goes to sign-in");
    assert_eq!(location, format!("/login?next=%2Falerts%2F{id}"));
    let (status, _, page) = browser.get(&location).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("name=\"next\" value=\"&#x2f;alerts&#x2f;"),
        "{page}"
    );
    let (status, _, page) = browser
        .post(
            "/login",
            &[("user", "root"), ("password", "wrong"), ("next", "/")],
        )
        .await;
    assert_eq!(status, 401);
    assert!(page.contains("Wrong user or password."), "{page}");
    let (status, location, _) = browser
        .post(
            "/login",
            &[
                ("user", "root"),
                ("password", "correct horse battery staple"),
                ("next", "//evil.example/"),
            ],
        )
        .await;
    assert_eq!((status, location.as_str()), (303, "/"), "never off-site");

    let (status, _, page) = browser.get("/").await;
    assert_eq!(status, 200);
    assert!(page.contains("db01"), "{page}");
    assert!(
        !page.contains("<script>alert(1)"),
        "event text is escaped: {page}"
    );
    let csrf = attribute(&page, "data-csrf").expect("csrf");
    assert_eq!(csrf.len(), 64);

    // Without the CSRF field, or from another site, the form is refused.
    let (status, _, _) = browser.post(&format!("/alerts/{id}/ack"), &[]).await;
    assert_eq!(status, 403);
    let forged = browser
        .request(reqwest::Method::POST, &format!("/alerts/{id}/ack"))
        .header("origin", "https://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}"))
        .send()
        .await
        .expect("post");
    assert_eq!(forged.status(), 403);
    let (status, location, _) = browser
        .post(&format!("/alerts/{id}/ack"), &[("csrf", &csrf)])
        .await;
    assert_eq!(status, 303);
    assert_eq!(location, format!("/alerts/{id}?done=ack"));
    let (_, _, page) = browser.get(&location).await;
    assert!(page.contains("Acknowledged."), "the flash says so");
    assert!(page.contains("status-acknowledged"), "{page}");
    assert!(
        page.contains("<b>root</b>"),
        "the timeline names who: {page}"
    );

    // A viewer sees the alert but no controls, and a form it forges is refused.
    let mut viewer = Browser::new(&server);
    viewer.sign_in("vera", VIEWER_PASSWORD).await;
    let (status, _, page) = viewer.get(&format!("/alerts/{id}")).await;
    assert_eq!(status, 200);
    assert!(!page.contains("id=\"resolve\""), "no resolve button");
    assert!(!page.contains("id=\"ack\"") && !page.contains("id=\"silence\""));
    let (_, _, board) = viewer.get("/").await;
    assert!(
        board.contains("db01") && !board.contains("id=\"bulk-action\""),
        "{board}"
    );
    let viewer_csrf = viewer.csrf().await;
    let (status, _, _) = viewer
        .post(&format!("/alerts/{id}/resolve"), &[("csrf", &viewer_csrf)])
        .await;
    assert_eq!(
        status, 403,
        "the server refuses what the page does not show"
    );

    // The signed-in user's tokens: made with the form, shown once, revoked with a button.
    let (status, _, page) = browser
        .post(
            "/tokens",
            &[
                ("csrf", &csrf),
                ("name", "wallboard"),
                ("scopes", "viewer"),
                ("days", "30"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{page}");
    let token = page
        .split("<code id=\"new-token\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .expect("the new token is shown")
        .to_owned();
    assert!(token.starts_with("vakt_"), "{token}");
    let use_token = |token: String| {
        let client = server.client.clone();
        let url = server.url("/api/v1/alerts");
        async move {
            client
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    };
    assert_eq!(use_token(token.clone()).await, 200);
    let (_, _, page) = browser.get("/tokens").await;
    assert!(
        page.contains("wallboard") && !page.contains(&token),
        "shown only once"
    );
    let token_id = page
        .split("action=\"/tokens/")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("a revoke button")
        .to_owned();
    let (status, location, _) = browser
        .post(&format!("/tokens/{token_id}/revoke"), &[("csrf", &csrf)])
        .await;
    assert_eq!((status, location.as_str()), (303, "/tokens?done=revoke"));
    assert_eq!(use_token(token).await, 401, "revoked at once");

    // Sign-out needs the token too, then the pages send to sign-in again.
    let (status, location, _) = browser.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!((status, location.as_str()), (303, "/login"));
    let (status, _, _) = browser.get("/").await;
    assert_eq!(status, 303);
}

/// The board filters by matchers and words with the view in the URL, groups, counts per
/// value, refuses a bad filter politely, resolves everything matching a filter in one
/// request, speaks Swedish without an English word of its own, and tells a listening
/// board about a change within a second.
#[tokio::test]
async fn the_board_filters_groups_changes_in_bulk_and_speaks_swedish() {
    let server = TestServer::start().await;
    let mut events: Vec<Value> = (0..100)
        .map(|i| {
            json!({"resource": format!("node{i:03}"), "check": "load", "severity": "warning",
                   "summary": "load high", "service": "billing"})
        })
        .collect();
    events.extend((0..20).map(|i| {
        json!({"resource": format!("web{i:02}"), "check": "http", "severity": "critical",
               "summary": "answers 503", "service": "web", "labels": {"team": "edge"}})
    }));
    let (status, _) = server.post("/api/v1/events", &json!(events)).await;
    assert_eq!(status, 202);
    let mut browser = Browser::new(&server);

    let (_, _, page) = browser
        .get("/?q=service%3D%22web%22&view=table&status=open")
        .await;
    assert_eq!(rows(&page), 20, "{page}");
    assert!(page.contains("20 of 120 alerts"), "{page}");
    let (_, _, page) = browser.get("/?q=web0+team%3D~%22ed.*%22&view=table").await;
    assert_eq!(rows(&page), 10, "words and regular expressions");

    // Grouped by service: the critical group first, with its count; chips count values.
    let (_, _, page) = browser.get("/?group=service").await;
    let web = page
        .find("<span class=\"val\">web</span>")
        .expect("web group");
    let billing = page
        .find("<span class=\"val\">billing</span>")
        .expect("billing group");
    assert!(web < billing, "the worst group first");
    assert!(page.contains("Warning <b>100</b>"), "a chip counts: {page}");

    let (status, _, page) = browser.get("/?q=service%3D~%22(%22").await;
    assert_eq!(status, 200);
    assert!(page.contains("role=\"alert\""), "{page}");
    assert!(page.contains("service=~"), "the error names the matcher");

    // Everything matching a filter, resolved in one request.
    let (status, location, _) = browser
        .post(
            "/bulk",
            &[
                ("all", "1"),
                ("q", "service=\"billing\""),
                ("status", "open"),
                ("action", "resolve"),
                ("reason", "deploy finished"),
                ("back", "/?view=table"),
            ],
        )
        .await;
    assert_eq!(status, 303);
    assert_eq!(location, "/?view=table&done=resolve&n=100");
    let (_, resolved) = server
        .get("/api/v1/alerts?status=resolved&limit=1000")
        .await;
    assert_eq!(resolved["items"].as_array().map(Vec::len), Some(100));
    let (_, _, page) = browser.get(&location).await;
    assert_eq!(rows(&page), 20, "only the web alerts are left");
    assert!(page.contains("100 alerts changed."), "{page}");

    // Swedish: every text of the board's own from the Swedish catalogue.
    let catalogue = |lang: &str| -> BTreeMap<String, String> {
        let path =
            crate::harness::repo_root().join(format!("crates/vakt/console/i18n/{lang}.toml"));
        toml::from_str(&std::fs::read_to_string(path).expect("catalogue")).expect("toml")
    };
    let (english, swedish) = (catalogue("en"), catalogue("sv"));
    browser.lang = Some("sv-SE,sv;q=0.9,en;q=0.5");
    for path in [
        "/",
        "/?view=table",
        "/silences",
        "/silences/new",
        "/incidents",
        "/oncall",
        "/monitors",
        "/rules",
        "/reports",
        "/reports/replay",
        "/reports/tune",
    ] {
        let (_, _, page) = browser.get(path).await;
        assert!(page.contains("<html lang=\"sv\">"), "{path}");
        let visible = page.replace("&#x27;", "'").replace("&quot;", "\"");
        for (key, text) in &english {
            if swedish.get(key) == Some(text) || text.contains('{') || text.len() < 4 {
                continue;
            }
            assert!(
                !visible.contains(&format!(">{text}<"))
                    && !visible.contains(&format!("\"{text}\"")),
                "{path} shows the English {key:?} = {text:?} in Swedish"
            );
        }
    }
    let (_, _, page) = browser.get("/").await;
    assert!(page.contains(">Larm<"), "{page}");

    // A listening board hears about a change within a second.
    let mut stream = server
        .client
        .get(server.url("/console/stream"))
        .send()
        .await
        .expect("stream");
    assert_eq!(
        stream
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    let started = std::time::Instant::now();
    let (status, _) = server
        .post(
            "/api/v1/events",
            &json!({"resource": "db9", "check": "disk", "summary": "s"}),
        )
        .await;
    assert_eq!(status, 202);
    let mut seen = String::new();
    while !seen.contains("event: change") {
        let chunk = tokio::time::timeout(Duration::from_secs(2), stream.chunk())
            .await
            .expect("a change within 2 s")
            .expect("chunk")
            .expect("open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "heard after {:?}",
        started.elapsed()
    );
}

/// A silence made from an alert: the form is filled in from it, the preview counts what it
/// would cover (and warns when that is nearly everything), the list shows it with what it
/// covers, and it can be expired.
#[tokio::test]
async fn a_silence_from_an_alert_with_its_preview() {
    let server = TestServer::start().await;
    let events: Vec<Value> = (0..4)
        .map(|i| json!({"resource": format!("db{i}"), "check": "disk", "summary": "full", "service": "billing"}))
        .collect();
    server.post("/api/v1/events", &json!(events)).await;
    let (_, alerts) = server.get("/api/v1/alerts").await;
    let id = alerts["items"][0]["id"].as_str().expect("id").to_owned();
    let resource = alerts["items"][0]["resource"]
        .as_str()
        .expect("resource")
        .to_owned();
    let mut browser = Browser::new(&server);

    let (_, _, page) = browser.get(&format!("/silences/new?alert={id}")).await;
    assert!(
        page.contains(&format!("resource=&quot;{resource}&quot;")),
        "{page}"
    );
    assert!(page.contains("Would cover 1 of 4 open alerts."), "{page}");
    let (_, _, preview) = browser
        .get("/silences/preview?matchers=service%3D%22billing%22")
        .await;
    assert!(preview.contains("Would cover 4 of 4"), "{preview}");
    assert!(
        preview.contains("class=\"warn\""),
        "a broad silence is warned about"
    );
    let (_, _, preview) = browser
        .get("/silences/preview?matchers=service%3D%22(%22x")
        .await;
    assert!(preview.contains("line 1"), "{preview}");

    let matchers = format!("resource=\"{resource}\"\ncheck=\"disk\"");
    let (status, location, body) = browser
        .post(
            "/silences",
            &[
                ("matchers", matchers.as_str()),
                ("duration", "2h"),
                ("comment", "replacing the disk"),
                ("back", &format!("/alerts/{id}")),
            ],
        )
        .await;
    assert_eq!(status, 303, "{body}");
    assert_eq!(location, format!("/alerts/{id}?done=silence"));
    let (_, _, page) = browser.get(&location).await;
    assert!(page.contains("Silenced by"), "{page}");
    let (_, _, list) = browser.get("/silences").await;
    assert!(list.contains("replacing the disk"), "{list}");
    let silence_id = list
        .split("<tr id=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("silence row")
        .to_owned();
    let (status, _, _) = browser
        .post(&format!("/silences/{silence_id}/expire"), &[])
        .await;
    assert_eq!(status, 303);
    let (_, _, list) = browser.get("/silences").await;
    assert!(!list.contains("replacing the disk"), "expired: {list}");
    let (_, _, list) = browser.get("/silences?state=expired").await;
    assert!(list.contains("replacing the disk"), "{list}");
    // A silence the form cannot make says why.
    let (status, _, page) = browser
        .post(
            "/silences",
            &[
                ("matchers", "x=~\".*\""),
                ("duration", "2h"),
                ("comment", "c"),
            ],
        )
        .await;
    assert_eq!(status, 400);
    assert!(page.contains("every alert"), "{page}");
}

/// The other pages: an incident opened from an alert and moved through its statuses by
/// its buttons, an on-call override made with the form, a heartbeat among the monitors,
/// the rules in order and an event tried against them without anything stored.
#[tokio::test]
async fn incidents_on_call_monitors_and_rules_pages() {
    let server = TestServer::start().await;
    server
        .post(
            "/api/v1/events",
            &json!({"resource": "db01", "check": "disk_usage", "severity": "critical",
                    "summary": "disk full", "metrics": {"used_pct": 97}}),
        )
        .await;
    let id = server.only_alert_id().await;
    let mut browser = Browser::new(&server);

    let (status, location, body) = browser.post(&format!("/alerts/{id}/incident"), &[]).await;
    assert_eq!(status, 303, "{body}");
    let incident = location
        .strip_prefix("/incidents/")
        .and_then(|rest| rest.split('?').next())
        .expect("incident page")
        .to_owned();
    let (_, _, page) = browser.get(&location).await;
    assert!(page.contains("disk full") && page.contains(&id), "{page}");
    assert!(page.contains("id=\"move-resolved\"") && !page.contains("id=\"move-closed\""));
    let (status, _, page) = browser
        .post(&format!("/incidents/{incident}"), &[("status", "resolved")])
        .await;
    assert_eq!(status, 400, "resolving needs a resolution");
    assert!(page.contains("resolution"), "{page}");
    let (status, _, _) = browser
        .post(
            &format!("/incidents/{incident}"),
            &[("status", "resolved"), ("resolution", "disk replaced")],
        )
        .await;
    assert_eq!(status, 303);
    let (_, _, page) = browser.get(&format!("/incidents/{incident}")).await;
    assert!(page.contains("id=\"incident-status\">Resolved"), "{page}");
    assert!(
        page.contains("id=\"move-closed\""),
        "closing is allowed now"
    );
    let (_, _, list) = browser.get("/incidents?status=resolved").await;
    assert!(list.contains("INC-"), "{list}");

    // An override from the form shows among the shifts.
    let start = (chrono::Utc::now() + chrono::Duration::hours(2))
        .format("%Y-%m-%dT%H:00")
        .to_string();
    let (status, location, body) = browser
        .post(
            "/oncall/ops-primary/overrides",
            &[("user", "ops2"), ("start", &start), ("hours", "3")],
        )
        .await;
    assert_eq!(
        (status, location.as_str()),
        (303, "/oncall?done=override"),
        "{body}"
    );
    let (_, _, page) = browser.get("/oncall").await;
    assert!(page.contains("<td>override</td>"), "{page}");
    let (status, _, _) = browser
        .post(
            "/oncall/ops-primary/overrides",
            &[("user", "nobody-here"), ("start", &start), ("hours", "3")],
        )
        .await;
    assert_eq!(status, 400, "an unknown user is refused");

    // Monitors: a heartbeat is listed with its state.
    let (status, _) = server
        .post(
            "/api/v1/heartbeats",
            &json!({"name": "nightly-backup", "resource": "backup01", "interval_secs": 3600}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, _, page) = browser.get("/monitors").await;
    assert!(
        page.contains("nightly-backup") && page.contains("heartbeat"),
        "{page}"
    );

    // Reports: the period's numbers beside the period before, the chart drawn here, the
    // whole report a link away.
    let (status, _, page) = browser.get("/reports?since=1d").await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("<svg") && page.contains("class=\"chart\""),
        "{page}"
    );
    assert!(
        page.contains("/api/v1/reports/summary?since=1d&amp;format=html"),
        "{page}"
    );
    assert!(page.contains("aria-current=\"page\">Last day<"), "{page}");

    // Rules: in order, and an event tried against them.
    let (_, _, page) = browser.get("/rules").await;
    let row = page
        .split("<tr")
        .find(|row| row.contains("<td>disk-nearly-full"))
        .expect("the rule's row");
    assert!(
        row.contains("<td class=\"num\">1</td><td class=\"num\">1</td>"),
        "matched once in the last hour and day: {row}"
    );
    let tried = serde_urlencoded::to_string([(
        "event",
        r#"{"resource": "db02", "check": "disk_usage", "summary": "s", "metrics": {"used_pct": 99}}"#,
    )])
    .expect("query");
    let (_, _, page) = browser.get(&format!("/rules?{tried}")).await;
    assert!(
        page.contains("id=\"outcome\">kept: category exception, severity critical, new_alert"),
        "{page}"
    );
    let (_, events) = server.get("/api/v1/events?resource=db02").await;
    assert_eq!(events["items"], json!([]), "trying stores nothing");
    let (_, _, page) = browser.get("/rules?event=%7B%22check%22%3A1%7D").await;
    assert!(page.contains("check: expected a string"), "{page}");

    // Replay: the stored disk event through a configuration that drops disk checks.
    let (status, _, page) = browser.get("/reports/replay").await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("<textarea id=\"r-config\" name=\"config\""),
        "{page}"
    );
    let quiet =
        "[[rules]]\nname = \"quiet-disks\"\nwhen = 'check == \"disk_usage\"'\ndrop = true\n";
    let (status, _, page) = browser
        .post(
            "/reports/replay",
            &[("config", quiet), ("base", "current"), ("since", "1d")],
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("Events handled differently: <b>1</b> / 1"),
        "{page}"
    );
    let listed = page
        .split("id=\"replay-differences\"")
        .nth(1)
        .expect("the differences");
    assert!(
        listed.contains("<td rowspan=\"")
            && listed.contains(">db01</td>")
            && listed.contains("<td>dropped</td>"),
        "{listed}"
    );
    assert!(
        page.contains("quiet-disks"),
        "the form keeps what was tried"
    );
    // Both runs' traces of each differing event, side by side, a click away.
    let traces = page
        .split("<details class=\"replay-trace\">")
        .nth(1)
        .expect("the event's traces");
    assert!(
        traces.contains("<caption>In force</caption>")
            && traces.contains("<caption>Tried</caption>")
            && traces.contains("quiet-disks"),
        "{traces}"
    );
    // Against the record, the stored trace stands beside the tried one.
    let (status, _, page) = browser
        .post(
            "/reports/replay",
            &[("config", quiet), ("base", "record"), ("since", "1d")],
        )
        .await;
    assert_eq!(status, 200, "{page}");
    let traces = page
        .split("<details class=\"replay-trace\">")
        .nth(1)
        .expect("the event's traces");
    let stored = traces
        .split("<caption>As stored</caption>")
        .nth(1)
        .and_then(|rest| rest.split("</table>").next())
        .expect("the stored trace");
    assert!(
        stored.contains("disk-nearly-full") && !stored.contains("<td colspan=\"4\">"),
        "{stored}"
    );
    let (status, _, page) = browser
        .post(
            "/reports/replay",
            &[
                (
                    "config",
                    "[channels.mail]\ntype = \"email\"\npassword = { env = \"SMTP_PASSWORD\" }\n",
                ),
                ("since", "1d"),
            ],
        )
        .await;
    assert_eq!(status, 400, "{page}");
    assert!(
        page.contains("role=\"alert\"") && page.contains("env or file reference"),
        "{page}"
    );
    let (status, _, page) = browser
        .post(
            "/reports/replay",
            &[("config", "[[rules]\n"), ("since", "1d")],
        )
        .await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("config"), "the parse error is shown: {page}");

    // Tune: the advisor's suggestions for the last day (rules of the built-in
    // configuration that matched nothing).
    let (status, _, page) = browser.get("/reports/tune?since=1d").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("<td>never-matched</td>"), "{page}");
    assert!(page.contains("aria-current=\"page\">Last day<"), "{page}");
    let (status, body) = server.get("/api/v1/reports/tune?since=1d").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["suggestions"]
            .as_array()
            .is_some_and(|s| !s.is_empty()),
        "{body}"
    );
    let (status, body) = server.get("/api/v1/reports/tune?since=90d").await;
    assert_eq!(status, 400, "{body}");
}
