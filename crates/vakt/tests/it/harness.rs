//! Test harness: a real server on 127.0.0.1:0 with its own data directory, and an HTTP client.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tokio::net::TcpListener;
use vakt::config::{Config, Overrides};
use vakt::server::{Server, launch_with_listener};

pub struct TestServer {
    pub server: Option<Server>,
    pub base: String,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    /// A server with the built-in configuration (its syslog and SNMP listeners moved to
    /// free ports, so tests can run side by side) and a fresh SQLite data directory.
    pub async fn start() -> TestServer {
        TestServer::with_config(Some(&builtin_on_free_ports())).await
    }

    /// A server with the given configuration text (written to `vakt.toml` in its directory).
    pub async fn with_config(config: Option<&str>) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        if let Some(text) = config {
            std::fs::write(dir.path().join("vakt.toml"), text).expect("write config");
        }
        let mut server = TestServer {
            server: None,
            base: String::new(),
            client: reqwest::Client::new(),
            dir,
        };
        server.boot(config.is_some(), None).await;
        server
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("vakt.toml")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// (Re)starts on the same data directory; `database_url` selects PostgreSQL.
    pub async fn boot(&mut self, with_file: bool, database_url: Option<String>) {
        let overrides = Overrides {
            listen: None,
            data_dir: Some(self.data_dir()),
            database_url,
        };
        let path = with_file.then(|| self.config_path());
        let config = Config::load(path.as_deref(), &overrides).expect("config loads");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let server = launch_with_listener(listener, config, overrides)
            .await
            .expect("server starts");
        self.base = format!("http://{}", server.addr);
        self.server = Some(server);
    }

    /// Stops gracefully and waits until storage is closed.
    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown();
            server.wait().await.expect("clean shutdown");
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.client.get(self.url(path)).send().await.expect("GET");
        decode(response).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("POST");
        decode(response).await
    }

    pub async fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
        let response = self
            .client
            .post(self.url(path))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("POST");
        decode(response).await
    }

    /// The single alert's id, after exactly one alert exists.
    pub async fn only_alert_id(&self) -> String {
        let (_, alerts) = self.get("/api/v1/alerts").await;
        let items = alerts["items"].as_array().expect("items");
        assert_eq!(items.len(), 1, "{alerts}");
        items[0]["id"].as_str().expect("id").to_owned()
    }
}

pub async fn decode(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// The repository root, for example files.
/// Runs the vakt binary with `args` as a user would, without the caller's `VAKT_*`
/// configuration, storage and server variables, standard input closed.
pub fn vakt_cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_vakt"))
        .args(args)
        .env_remove("VAKT_CONFIG")
        .env_remove("VAKT_DATA_DIR")
        .env_remove("VAKT_DATABASE_URL")
        .env_remove("VAKT_URL")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run vakt")
}

pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .expect("crates/vakt is two levels below the root")
}

/// The built-in configuration with its fixed listener ports replaced by port 0.
pub fn builtin_on_free_ports() -> String {
    vakt::config::BUILTIN
        .replace("127.0.0.1:5514", "127.0.0.1:0")
        .replace("127.0.0.1:1162", "127.0.0.1:0")
}

pub fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe");
    probe.local_addr().expect("addr").port()
}

/// A `vakt serve` process on a free port.
pub struct Node {
    pub child: tokio::process::Child,
    pub base: String,
}

/// Starts `vakt serve` with a configuration file (and PostgreSQL when a URL is given) and
/// waits until it is ready.
pub async fn spawn_node(config: &std::path::Path, database_url: Option<&str>) -> Node {
    spawn_node_on(config, database_url, free_port()).await
}

/// As `spawn_node`, on a given port (a test that restarts a server clients know).
pub async fn spawn_node_on(
    config: &std::path::Path,
    database_url: Option<&str>,
    port: u16,
) -> Node {
    spawn_node_with_env(config, database_url, port, &[]).await
}

/// `spawn_node_on` with extra environment variables for the server process.
pub async fn spawn_node_with_env(
    config: &std::path::Path,
    database_url: Option<&str>,
    port: u16,
    envs: &[(&str, &str)],
) -> Node {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_vakt"));
    command
        .args(["serve", "--config"])
        .arg(config)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("VAKT_LOG", "warn")
        .envs(envs.iter().copied())
        .kill_on_drop(true);
    if let Some(url) = database_url {
        command.env("VAKT_DATABASE_URL", url);
    }
    let mut child = command.spawn().expect("vakt starts");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("vakt exited before it was ready: {status}");
        }
        let ready = client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            return Node { child, base };
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "vakt not ready after 60 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A fresh PostgreSQL database for one test, made on `VAKT_TEST_PG_URL`'s server.
pub struct PgDatabase {
    pub url: String,
    name: String,
    admin: sqlx::PgConnection,
}

impl PgDatabase {
    /// Creates one named `{prefix}_{ulid}`; `None`, saying loudly that `test` skipped, when
    /// `VAKT_TEST_PG_URL` is not set.
    pub async fn create(test: &str, prefix: &str) -> Option<PgDatabase> {
        use sqlx::Connection;
        let Some(admin_url) = std::env::var("VAKT_TEST_PG_URL")
            .ok()
            .filter(|u| !u.is_empty())
        else {
            eprintln!("\n*** SKIPPED {test}: VAKT_TEST_PG_URL is not set ***\n");
            return None;
        };
        let name = format!("{prefix}_{}", ulid::Ulid::new().to_string().to_lowercase());
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .expect("VAKT_TEST_PG_URL reachable");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create db");
        let url = format!(
            "{}/{name}",
            admin_url
                .rsplit_once('/')
                .map(|(base, _)| base)
                .expect("url with a database")
        );
        Some(PgDatabase { url, name, admin })
    }

    /// Drops the database, ending whatever connections are still open on it.
    pub async fn drop_database(mut self) {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE {} WITH (FORCE)",
            self.name
        )))
        .execute(&mut self.admin)
        .await
        .expect("drop db");
    }
}

/// The value of one series on a server's `/metrics` (`name` or `name{labels}` as printed),
/// and the whole text for a failure message.
pub async fn metric(base: &str, series: &str) -> (Option<f64>, String) {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok());
    (value, text)
}
