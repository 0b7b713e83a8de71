//! Access control as clients meet it: the role x route matrix over the whole API, tokens
//! that expire and are revoked, `by` taken from the identity, the audit log, the browser
//! checks (cross-origin writes, `text/plain`, DNS rebinding), basic auth for amtool, the
//! CLI's tokens, and the refusal to start open on a public address.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::harness::{TestServer, builtin_on_free_ports, decode};

const ADMIN_PASSWORD: &str = "correct horse battery staple";

/// The built-in configuration with auth required and an admin user `root` who signs in
/// with [`ADMIN_PASSWORD`].
pub fn locked_config() -> String {
    let hash = vakt::auth::hash_password(ADMIN_PASSWORD).expect("hash");
    builtin_on_free_ports().replace("[server]\n", "[server]\nauth = \"required\"\n")
        + &format!(
            "\n[[users]]\nid = \"root\"\nname = \"Root\"\nrole = \"admin\"\npassword_hash = \"{hash}\"\n"
        )
}

impl TestServer {
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("request");
        let headers = response.headers().clone();
        let (status, value) = decode(response).await;
        (status, value, headers)
    }

    /// A token for `scopes`, made through the API by `root` with basic auth.
    pub async fn token(&self, name: &str, scopes: &[&str], owner: Option<&str>) -> String {
        let response = self
            .client
            .post(self.url("/api/v1/tokens"))
            .basic_auth("root", Some(ADMIN_PASSWORD))
            .json(&json!({"name": name, "scopes": scopes, "owner": owner}))
            .send()
            .await
            .expect("create token");
        let (status, body) = decode(response).await;
        assert_eq!(status, 201, "{body}");
        body["token"].as_str().expect("token").to_owned()
    }
}

#[tokio::test]
async fn every_route_answers_each_role_as_the_table_says() {
    let server = TestServer::with_config(Some(&locked_config())).await;
    let roles = ["viewer", "responder", "engineer", "admin", "ingest"];
    let mut tokens = BTreeMap::new();
    for role in roles {
        tokens.insert(
            role,
            server.token(&format!("{role}-token"), &[role], None).await,
        );
    }
    let (_, doc) = server.get("/openapi.json").await;
    let paths = doc["paths"].as_object().expect("paths");
    let mut cells = 0;
    for (path, item) in paths {
        for (method, _) in item.as_object().expect("path item") {
            let method: reqwest::Method = method.to_uppercase().parse().expect("method");
            let need = vakt::auth::need(&method, path)
                .unwrap_or_else(|| panic!("{method} {path} is missing from auth::ROUTES"));
            let concrete = path
                .replace("{id}", "01J0000000000000000000000X")
                .replace("{name}", "nobody");
            let body = (method != reqwest::Method::GET && method != reqwest::Method::DELETE)
                .then(|| json!({}));
            // Without a credential.
            let (status, answer, _) = server
                .send(method.clone(), &concrete, None, body.as_ref())
                .await;
            match need {
                vakt::auth::Need::Scope(_) | vakt::auth::Need::SignedIn => {
                    assert_eq!(
                        status, 401,
                        "{method} {path} without a credential: {answer}"
                    );
                }
                _ => assert_ne!(status, 403, "{method} {path} is public: {answer}"),
            }
            for role in roles {
                let (status, answer, _) = server
                    .send(
                        method.clone(),
                        &concrete,
                        Some(&tokens[role]),
                        body.as_ref(),
                    )
                    .await;
                cells += 1;
                let scopes = vakt_core::access::role_scopes(role).expect("role");
                match need {
                    vakt::auth::Need::Scope(scope) if !scopes.contains(&scope) => assert_eq!(
                        status, 403,
                        "{method} {path} as {role} (lacks {scope}): {answer}"
                    ),
                    vakt::auth::Need::Own => {}
                    _ => assert!(
                        status != 401 && status != 403,
                        "{method} {path} as {role}: {status} {answer}"
                    ),
                }
            }
        }
    }
    assert!(cells > 250, "the matrix walked {cells} cells");
    // The document says what each route needs.
    let ack = &doc["paths"]["/api/v1/alerts/{id}/ack"]["post"]["security"];
    assert_eq!(ack[0]["bearer"], json!(["write:alerts"]), "{ack}");
}

#[tokio::test]
async fn tokens_expire_and_revoked_ones_stop_at_once() {
    let server = TestServer::with_config(Some(&locked_config())).await;
    let viewer = server.token("reader", &["viewer"], None).await;
    let (status, _, _) = server
        .send(reqwest::Method::GET, "/api/v1/alerts", Some(&viewer), None)
        .await;
    assert_eq!(status, 200);

    // Revoked through the API: the next request is refused.
    let response = server
        .client
        .delete(server.url("/api/v1/tokens/reader"))
        .basic_auth("root", Some(ADMIN_PASSWORD))
        .send()
        .await
        .expect("revoke");
    assert_eq!(response.status(), 200);
    let (status, answer, headers) = server
        .send(reqwest::Method::GET, "/api/v1/alerts", Some(&viewer), None)
        .await;
    assert_eq!(status, 401, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or_default()
            .contains("revoked"),
        "{answer}"
    );
    assert!(headers.contains_key("www-authenticate"));

    // One that expires in a second works, then does not.
    let soon = (chrono::Utc::now() + chrono::Duration::seconds(1)).to_rfc3339();
    let response = server
        .client
        .post(server.url("/api/v1/tokens"))
        .basic_auth("root", Some(ADMIN_PASSWORD))
        .json(&json!({"name": "brief", "scopes": ["viewer"], "expires_at": soon}))
        .send()
        .await
        .expect("create");
    let (status, created) = decode(response).await;
    assert_eq!(status, 201, "{created}");
    let brief = created["token"].as_str().expect("token").to_owned();
    assert!(
        created.get("hash").is_none(),
        "the hash is never shown: {created}"
    );
    let (status, _, _) = server
        .send(reqwest::Method::GET, "/api/v1/alerts", Some(&brief), None)
        .await;
    assert_eq!(status, 200);
    tokio::time::sleep(std::time::Duration::from_millis(1_300)).await;
    let (status, answer, _) = server
        .send(reqwest::Method::GET, "/api/v1/alerts", Some(&brief), None)
        .await;
    assert_eq!(status, 401);
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or_default()
            .contains("expired"),
        "{answer}"
    );

    // A wrong password and an unknown token are refused; a responder cannot mint an admin.
    let response = server
        .client
        .get(server.url("/api/v1/alerts"))
        .basic_auth("root", Some("guess"))
        .send()
        .await
        .expect("guess");
    assert_eq!(response.status(), 401);
    let response = server
        .client
        .get(server.url("/api/v1/alerts"))
        .basic_auth("nobody", Some(ADMIN_PASSWORD))
        .send()
        .await
        .expect("unknown user");
    assert_eq!(response.status(), 401);
    let (status, _, _) = server
        .send(
            reqwest::Method::GET,
            "/api/v1/alerts",
            Some("vakt_0000"),
            None,
        )
        .await;
    assert_eq!(status, 401);
    let responder = server.token("ops", &["responder"], Some("alice")).await;
    let (status, answer, _) = server
        .send(
            reqwest::Method::POST,
            "/api/v1/tokens",
            Some(&responder),
            Some(&json!({"name": "escalate", "scopes": ["admin"]})),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or_default()
            .contains("more rights than its creator"),
        "{answer}"
    );
}

#[tokio::test]
async fn who_acted_comes_from_the_identity_and_the_audit_log_keeps_it() {
    let server = TestServer::with_config(Some(&locked_config())).await;
    let agent = server.token("agent", &["ingest"], Some("db-agent")).await;
    let alice = server
        .token("alice-laptop", &["responder"], Some("alice"))
        .await;
    let (status, answer, _) = server
        .send(
            reqwest::Method::POST,
            "/api/v1/events",
            Some(&agent),
            Some(&json!({"resource": "db01", "check": "disk", "severity": "major", "summary": "full"})),
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    // The event records who sent it, in its trace.
    let event_id = answer["ids"][0].as_str().expect("id").to_owned();
    let (status, event, _) = server
        .send(
            reqwest::Method::GET,
            &format!("/api/v1/events/{event_id}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, 200, "{event}");
    assert!(
        event.to_string().contains("sent by db-agent (token agent)"),
        "{event}"
    );
    let mut alert_id = None;
    for _ in 0..100 {
        let (_, alerts, _) = server
            .send(reqwest::Method::GET, "/api/v1/alerts", Some(&alice), None)
            .await;
        if let Some(id) = alerts["items"][0]["id"].as_str() {
            alert_id = Some(id.to_owned());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let alert_id = alert_id.expect("the alert opened");
    // The body claims someone else: the identity wins.
    let (status, alert, _) = server
        .send(
            reqwest::Method::POST,
            &format!("/api/v1/alerts/{alert_id}/ack"),
            Some(&alice),
            Some(&json!({"by": "mallory", "comment": "on it"})),
        )
        .await;
    assert_eq!(status, 200, "{alert}");
    assert_eq!(alert["acknowledged_by"], "alice", "{alert}");
    // Without a credential: refused, logged, not stored (anyone could make the database
    // write at their rate).
    let (status, _, _) = server
        .send(
            reqwest::Method::POST,
            &format!("/api/v1/alerts/{alert_id}/unack"),
            None,
            Some(&json!({})),
        )
        .await;
    assert_eq!(status, 401);
    // The ingest token cannot ack.
    let (status, _, _) = server
        .send(
            reqwest::Method::POST,
            &format!("/api/v1/alerts/{alert_id}/resolve"),
            Some(&agent),
            Some(&json!({})),
        )
        .await;
    assert_eq!(status, 403);

    let response = server
        .client
        .get(server.url("/api/v1/audit"))
        .basic_auth("root", Some(ADMIN_PASSWORD))
        .send()
        .await
        .expect("audit");
    let (status, audit) = decode(response).await;
    assert_eq!(status, 200, "{audit}");
    let items = audit["items"].as_array().expect("items");
    let ack = items
        .iter()
        .find(|e| e["path"] == "/api/v1/alerts/{id}/ack")
        .unwrap_or_else(|| panic!("the ack is in the audit log: {audit}"));
    assert_eq!(ack["actor"], "alice (token alice-laptop)");
    assert_eq!(ack["status"], 200);
    assert_eq!(ack["remote"], "127.0.0.1");
    let refused = items
        .iter()
        .find(|e| e["path"] == "/api/v1/alerts/{id}/resolve")
        .unwrap_or_else(|| panic!("the refused resolve is in the audit log: {audit}"));
    assert_eq!(refused["status"], 403);
    assert!(
        items.iter().all(|e| e["path"] != "/api/v1/events"),
        "ingest is not audited: {audit}"
    );
    assert!(
        items.iter().all(|e| e["actor"] != "anonymous"),
        "refusals without a credential are not stored: {audit}"
    );
    // A viewer may not read the audit log.
    let viewer = server.token("viewer", &["viewer"], None).await;
    let (status, _, _) = server
        .send(reqwest::Method::GET, "/api/v1/audit", Some(&viewer), None)
        .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn browsers_cannot_write_across_origins_or_rebind_names() {
    // Even the open first-run server checks these.
    let server = TestServer::start().await;
    let (status, _, headers) = server
        .send(reqwest::Method::GET, "/api/v1/alerts", None, None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        headers.get("x-vakt-auth").map(|v| v.as_bytes()),
        Some(&b"off"[..])
    );

    let silence =
        json!({"matchers": ["service=\"billing\""], "duration_secs": 3600, "created_by": "x"});
    // A cross-site form or fetch: text/plain is refused before anything runs.
    let (status, answer) = server
        .post_raw(
            "/api/v1/silences",
            "text/plain",
            silence.to_string().into_bytes(),
        )
        .await;
    assert_eq!(status, 415, "{answer}");
    let response = server
        .client
        .post(server.url("/api/v1/silences"))
        .header("origin", "http://evil.example")
        .json(&silence)
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 403);
    let response = server
        .client
        .post(server.url("/-/reload"))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 403);
    // DNS rebinding: a name vakt does not know.
    let response = server
        .client
        .get(server.url("/api/v1/alerts"))
        .header("host", "evil.example:8470")
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 421);
    // None of it made a silence; a same-origin JSON write does.
    let (_, silences) = server.get("/api/v1/silences").await;
    assert_eq!(
        silences["items"].as_array().map(Vec::len),
        Some(0),
        "{silences}"
    );
    let origin = server.base.clone();
    let response = server
        .client
        .post(server.url("/api/v1/silences"))
        .header("origin", origin)
        .json(&silence)
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 201);
    // A wrong credential is refused even where auth is off.
    let (status, _, _) = server
        .send(
            reqwest::Method::GET,
            "/api/v1/alerts",
            Some("vakt_nope"),
            None,
        )
        .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn a_public_address_without_credentials_does_not_start() {
    let dir = tempfile::tempdir().expect("dir");
    let overrides = vakt::config::Overrides {
        listen: None,
        data_dir: Some(dir.path().join("data")),
        database_url: None,
    };
    let path = dir.path().join("vakt.toml");
    std::fs::write(&path, builtin_on_free_ports()).expect("write");
    let config = vakt::config::Config::load(Some(&path), &overrides).expect("config");
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0")
        .await
        .expect("bind");
    let refused = vakt::server::launch_with_listener(listener, config, overrides.clone())
        .await
        .err()
        .expect("refused");
    let message = format!("{refused:#}");
    assert!(message.contains("nobody can sign in"), "{message}");
    assert!(message.contains("vakt token create"), "{message}");

    // With auth = "none" written, it starts (and warns).
    std::fs::write(
        &path,
        builtin_on_free_ports().replace("[server]\n", "[server]\nauth = \"none\"\n"),
    )
    .expect("write");
    let config = vakt::config::Config::load(Some(&path), &overrides).expect("config");
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0")
        .await
        .expect("bind");
    let server = vakt::server::launch_with_listener(listener, config, overrides)
        .await
        .expect("starts with auth none");
    server.shutdown();
    server.wait().await.expect("stops");
}

/// amtool with an http config file (basic auth, a token as the password) queries and
/// silences an authenticated vakt; without it, it is refused. The CLI's own token works.
#[tokio::test]
async fn amtool_and_the_cli_sign_in() {
    let server = TestServer::with_config(Some(&locked_config())).await;
    let dir = tempfile::tempdir().expect("dir");
    // The token is made with the real binary, on the database, as an operator would.
    let bin = env!("CARGO_BIN_EXE_vakt");
    let made = std::process::Command::new(bin)
        .args([
            "token",
            "create",
            "--name",
            "amtool",
            "--role",
            "responder",
            "--owner",
            "carol",
        ])
        .arg("--data-dir")
        .arg(server.data_dir())
        .arg("--config")
        .arg(server.config_path())
        .output()
        .expect("vakt token create");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let token = String::from_utf8_lossy(&made.stdout).trim().to_owned();
    assert!(token.starts_with("vakt_"), "{token}");

    let http_config = dir.path().join("http.yml");
    std::fs::write(
        &http_config,
        format!("basic_auth:\n  username: carol\n  password: {token}\n"),
    )
    .expect("write");
    // The server runs in this test's runtime: clients run as child processes awaited
    // without blocking it.
    let amtool = async |with_auth: bool, args: &[&str]| {
        let mut command = tokio::process::Command::new("amtool");
        command.arg(format!("--alertmanager.url={}", server.base));
        if with_auth {
            command.arg(format!("--http.config.file={}", http_config.display()));
        }
        command.args(args).output().await.expect("amtool runs")
    };
    let refused = amtool(false, &["silence", "query"]).await;
    assert!(
        !refused.status.success(),
        "amtool without credentials is refused"
    );
    let added = amtool(
        true,
        &[
            "silence",
            "add",
            "service=billing",
            "--duration=1h",
            "--comment=maintenance",
            "--author=someone-else",
        ],
    )
    .await;
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let listed = amtool(true, &["silence", "query", "-o", "extended"]).await;
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        text.contains("carol"),
        "the silence's author is the token's owner: {text}"
    );

    // vakt's own commands take --token.
    let out = tokio::process::Command::new(bin)
        .args(["silence", "list", "--url", &server.base, "--token", &token])
        .output()
        .await
        .expect("vakt silence list");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = tokio::process::Command::new(bin)
        .args(["silence", "list", "--url", &server.base])
        .env_remove("VAKT_TOKEN")
        .output()
        .await
        .expect("vakt silence list");
    assert_eq!(out.status.code(), Some(1), "refused without a token");

    // Revoked with the CLI: amtool stops at once.
    let revoked = std::process::Command::new(bin)
        .args(["token", "revoke", "amtool", "--data-dir"])
        .arg(server.data_dir())
        .arg("--config")
        .arg(server.config_path())
        .output()
        .expect("vakt token revoke");
    assert!(
        revoked.status.success(),
        "{}",
        String::from_utf8_lossy(&revoked.stderr)
    );
    assert!(!amtool(true, &["silence", "query"]).await.status.success());
}

/// Runs a command to completion without blocking the server in this test's runtime.
async fn run(program: &str, args: &[&str], dir: &std::path::Path) -> std::process::Output {
    tokio::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .await
        .unwrap_or_else(|e| panic!("{program} runs: {e}"))
}

/// A CA, a server certificate for 127.0.0.1 with common name `cn`, and a client
/// certificate for `edge-router`, made with openssl in `dir`.
pub async fn certificates(dir: &std::path::Path, cn: &str) {
    let ok = |out: std::process::Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    if !dir.join("ca.pem").exists() {
        ok(run(
            "openssl",
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=vakt-test-ca",
            ],
            dir,
        )
        .await);
        std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").expect("ext");
        ok(run(
            "openssl",
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "client.key",
                "-out",
                "client.csr",
                "-subj",
                "/CN=edge-router",
            ],
            dir,
        )
        .await);
        ok(run(
            "openssl",
            &[
                "x509",
                "-req",
                "-in",
                "client.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "client.pem",
                "-days",
                "2",
                "-extfile",
                "client.ext",
            ],
            dir,
        )
        .await);
    }
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext");
    ok(run(
        "openssl",
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key.new",
            "-out",
            "server.csr",
            "-subj",
            &format!("/CN={cn}"),
        ],
        dir,
    )
    .await);
    ok(run(
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem.new",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
        dir,
    )
    .await);
    // Key first, then the certificate, each replaced in one step.
    std::fs::rename(dir.join("server.key.new"), dir.join("server.key")).expect("key");
    std::fs::rename(dir.join("server.pem.new"), dir.join("server.pem")).expect("cert");
}

/// HTTPS with HTTP/2, a client certificate that signs in as its common name with the
/// ingest role, a client without one refused, and a rotated certificate served without a
/// restart.
#[tokio::test]
async fn https_with_client_certificates_and_rotation() {
    let certs = tempfile::tempdir().expect("dir");
    let dir = certs.path();
    certificates(dir, "first").await;
    let config = locked_config().replace(
        "[server]\n",
        &format!(
            "[server]\ntls_cert = \"{}\"\ntls_key = \"{}\"\ntls_client_ca = \"{}\"\n",
            dir.join("server.pem").display(),
            dir.join("server.key").display(),
            dir.join("ca.pem").display()
        ),
    );
    let server = TestServer::with_config(Some(&config)).await;
    let addr = server.server.as_ref().expect("running").addr;
    let base = format!("https://127.0.0.1:{}", addr.port());
    let event =
        r#"{"resource": "edge1", "check": "bgp", "severity": "major", "summary": "peer down"}"#;

    // A certificate: ingest as edge-router, over HTTP/2.
    let whoami = format!("{base}/api/v1/whoami");
    let out = run(
        "curl",
        &[
            "-sS",
            "--http2",
            "--cacert",
            "ca.pem",
            "--cert",
            "client.pem",
            "--key",
            "client.key",
            "-w",
            "\n%{http_version}",
            &whoami,
        ],
        dir,
    )
    .await;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (body, version) = text.rsplit_once('\n').expect("two lines");
    assert_eq!(version, "2", "HTTP/2 by ALPN");
    let who: Value = serde_json::from_str(body).expect("json");
    assert_eq!(who["identity"]["name"], "edge-router", "{who}");
    assert_eq!(who["identity"]["via"], "certificate", "{who}");
    assert_eq!(who["identity"]["scopes"], json!(["ingest:events"]), "{who}");

    let events = format!("{base}/api/v1/events");
    let post = |cert: bool| {
        let mut args = vec![
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cacert",
            "ca.pem",
        ];
        if cert {
            args.extend(["--cert", "client.pem", "--key", "client.key"]);
        }
        args.extend([
            "-H",
            "content-type: application/json",
            "-d",
            event,
            events.as_str(),
        ]);
        args.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let status = |out: std::process::Output| {
        let code = String::from_utf8_lossy(&out.stdout).into_owned();
        if code == "000" {
            eprintln!("curl: {}", String::from_utf8_lossy(&out.stderr));
        }
        code
    };
    let with: Vec<String> = post(true);
    let with: Vec<&str> = with.iter().map(String::as_str).collect();
    assert_eq!(status(run("curl", &with, dir).await), "202");
    let without: Vec<String> = post(false);
    let without: Vec<&str> = without.iter().map(String::as_str).collect();
    assert_eq!(status(run("curl", &without, dir).await), "401");
    // A browser write over HTTP/2 (no Host header: the authority names the host) from
    // vakt's own origin is let through; from another origin it is not.
    for (origin, expected) in [(base.as_str(), "202"), ("https://evil.example", "403")] {
        let origin_header = format!("origin: {origin}");
        let out = run(
            "curl",
            &[
                "-sS",
                "--http2",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--cacert",
                "ca.pem",
                "--cert",
                "client.pem",
                "--key",
                "client.key",
                "-H",
                &origin_header,
                "-H",
                "content-type: application/json",
                "-d",
                event,
                &events,
            ],
            dir,
        )
        .await;
        assert_eq!(status(out), expected, "origin {origin}");
    }
    // The certificate gives ingest only.
    let alerts = format!("{base}/api/v1/alerts");
    let out = run(
        "curl",
        &[
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cacert",
            "ca.pem",
            "--cert",
            "client.pem",
            "--key",
            "client.key",
            &alerts,
        ],
        dir,
    )
    .await;
    assert_eq!(status(out), "403");
    // Plain HTTP on the TLS port gets nowhere.
    let plain = format!("http://127.0.0.1:{}/healthz", addr.port());
    assert!(
        !run("curl", &["-sS", "-m", "5", "-f", &plain], dir)
            .await
            .status
            .success()
    );

    // Rotation: new files, no restart; the next connections get the new certificate.
    certificates(dir, "rotated").await;
    tokio::time::sleep(vakt::http::tls::RELOAD_CHECK_EVERY + std::time::Duration::from_millis(500))
        .await;
    let healthz = format!("{base}/healthz");
    let mut subject = String::new();
    for _ in 0..2 {
        // The first connection after the interval notices the change.
        let out = run("curl", &["-sS", "-v", "--cacert", "ca.pem", &healthz], dir).await;
        subject = String::from_utf8_lossy(&out.stderr)
            .lines()
            .find(|l| l.contains("subject:"))
            .unwrap_or_default()
            .to_owned();
    }
    assert!(subject.contains("CN=rotated"), "{subject}");
}

/// Signs in through `/api/v1/session`; returns the status, the cookie pair
/// (`vakt_session=...`), the whole Set-Cookie line and the answer.
async fn sign_in(
    server: &TestServer,
    password: &str,
    cookie: Option<&str>,
) -> (u16, String, String, Value) {
    let mut request = server
        .client
        .post(server.url("/api/v1/session"))
        .json(&json!({"user": "root", "password": password}));
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    let response = request.send().await.expect("sign in");
    let set = response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let pair = set.split(';').next().unwrap_or_default().to_owned();
    let (status, body) = decode(response).await;
    (status, pair, set, body)
}

/// The console's sessions: a password gives a cookie (HttpOnly, SameSite=Lax), writes with
/// it need the CSRF token, signing in again rotates it, sign-out and idleness end it, and
/// guessing is rate limited. The sign-in page is served.
#[tokio::test]
async fn console_sessions_sign_in_rotate_expire_and_refuse_forged_writes() {
    let config = locked_config().replace("[server]\n", "[server]\nsession_idle_secs = 2\n");
    let server = TestServer::with_config(Some(&config)).await;
    let (status, cookie, set, session) = sign_in(&server, ADMIN_PASSWORD, None).await;
    assert_eq!(status, 201, "{session}");
    assert!(cookie.starts_with("vakt_session="), "{set}");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(set.contains(attribute), "{attribute} in {set}");
    }
    assert!(!set.contains("Secure"), "not over plain HTTP: {set}");
    let csrf = session["csrf_token"].as_str().expect("csrf").to_owned();

    let with_cookie = |method: reqwest::Method, path: &str, csrf: Option<&str>| {
        let mut request = server
            .client
            .request(method, server.url(path))
            .header("cookie", cookie.clone());
        if let Some(csrf) = csrf {
            request = request.header("x-csrf-token", csrf);
        }
        request
    };
    let response = with_cookie(reqwest::Method::GET, "/api/v1/whoami", None)
        .send()
        .await
        .expect("whoami");
    let (_, who) = decode(response).await;
    assert_eq!(who["identity"]["name"], "root");
    assert_eq!(who["identity"]["via"], "session");
    // A write without the CSRF token is refused; with it, it runs.
    let silence = json!({"matchers": ["service=\"billing\""], "duration_secs": 600});
    let response = with_cookie(reqwest::Method::POST, "/api/v1/silences", None)
        .json(&silence)
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 403);
    let response = with_cookie(reqwest::Method::POST, "/api/v1/silences", Some(&csrf))
        .json(&silence)
        .send()
        .await
        .expect("post");
    let (status, made) = decode(response).await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["created_by"], "root");

    // Signing in again with the old cookie rotates: the old one no longer works.
    let (status, rotated, _, _) = sign_in(&server, ADMIN_PASSWORD, Some(&cookie)).await;
    assert_eq!(status, 201);
    assert_ne!(rotated, cookie);
    let response = with_cookie(reqwest::Method::GET, "/api/v1/alerts", None)
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 401);
    // Sign-out ends the new one.
    let response = server
        .client
        .delete(server.url("/api/v1/session"))
        .header("cookie", rotated.clone())
        .send()
        .await
        .expect("sign out");
    assert_eq!(response.status(), 204);
    let response = server
        .client
        .get(server.url("/api/v1/alerts"))
        .header("cookie", rotated)
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 401);

    // Idle for longer than session_idle_secs: over.
    let (_, idle, _, _) = sign_in(&server, ADMIN_PASSWORD, None).await;
    let get = |cookie: String| {
        server
            .client
            .get(server.url("/api/v1/alerts"))
            .header("cookie", cookie)
            .send()
    };
    assert_eq!(get(idle.clone()).await.expect("get").status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(2_600)).await;
    assert_eq!(get(idle).await.expect("get").status(), 401);

    // Guessing: after 10 wrong passwords the next attempt waits, even the right one.
    for _ in 0..10 {
        let (status, _, _, _) = sign_in(&server, "wrong", None).await;
        assert_eq!(status, 401);
    }
    let (status, _, _, answer) = sign_in(&server, ADMIN_PASSWORD, None).await;
    assert_eq!(status, 429, "{answer}");

    // The page people sign in on.
    let response = server
        .client
        .get(server.url("/login"))
        .send()
        .await
        .expect("login");
    assert_eq!(response.status(), 200);
    let csp = response
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let page = response.text().await.expect("page");
    assert!(
        page.contains("autocomplete=\"current-password\"") && page.contains("action=\"/login\""),
        "{page}"
    );
}

/// `vakt user passwd` sets a password in the database: the first one turns auth on for an
/// open first-run server, and the user signs in with it.
#[tokio::test]
async fn a_password_set_with_the_cli_turns_auth_on_and_signs_in() {
    use tokio::io::AsyncWriteExt;
    let server = TestServer::start().await;
    let (status, _, headers) = server
        .send(reqwest::Method::GET, "/api/v1/alerts", None, None)
        .await;
    assert_eq!(status, 200);
    assert!(headers.contains_key("x-vakt-auth"));
    let passwd = async |user: &str| {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_vakt"))
            .args(["user", "passwd", user, "--data-dir"])
            .arg(server.data_dir())
            .arg("--config")
            .arg(server.config_path())
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("vakt user passwd");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(b"s3cret-pass\n").await.expect("write");
        drop(stdin);
        child.wait_with_output().await.expect("waits")
    };
    let unknown = passwd("nobody").await;
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no [[users]] entry"));
    let set = passwd("ops1").await;
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );

    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    let (status, _, headers) = server
        .send(reqwest::Method::GET, "/api/v1/alerts", None, None)
        .await;
    assert_eq!(status, 401, "the first password turns auth on");
    assert!(!headers.contains_key("x-vakt-auth"));
    let basic = async |password: &str| {
        server
            .client
            .get(server.url("/api/v1/whoami"))
            .basic_auth("ops1", Some(password))
            .send()
            .await
            .expect("get")
    };
    let (status, who) = decode(basic("s3cret-pass").await).await;
    assert_eq!(status, 200);
    assert_eq!(who["identity"]["name"], "ops1");
    assert!(
        who["identity"]["scopes"].as_array().is_some_and(
            |s| s.contains(&json!("write:alerts")) && !s.contains(&json!("admin:tokens"))
        ),
        "a responder by default: {who}"
    );
    assert_eq!(basic("wrong").await.status(), 401);
}
