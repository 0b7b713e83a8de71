//! The storage story suite: every story runs against SQLite always and PostgreSQL when `VAKT_TEST_PG_URL` is set.

use std::sync::Arc;

use chrono::{Duration, Utc};
use serde_json::json;
use vakt_core::alert::{OperatorAction, OperatorRequest};
use vakt_core::{
    AlertStatus, EventInput, Pipeline, PipelineConfig, Severity, TimelineEntry, TimelineKind,
};
use vakt_store::{AlertQuery, EventQuery, Location, OperateError, Store};

const RULES: &str = r#"
[alerts]
reopen_window_secs = 600

[[rules]]
name = "drop-noise"
when = 'check == "noise"'
drop = true

[[rules]]
name = "disk-full"
when = 'check == "disk" && metrics.used_pct >= 95.0'
category = "exception"
severity = "critical"
actions = ["page"]

[actions.page]
type = "notify"
channel = "email"
"#;

/// A database for one story, removed when the story passes.
struct Backend {
    location: Location,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

impl Backend {
    async fn open(&self) -> Arc<dyn Store> {
        vakt_store::open(&self.location)
            .await
            .unwrap_or_else(|e| panic!("open {}: {e}", self.location.describe()))
    }

    async fn cleanup(self) {
        if let Some((admin, name)) = self.pg {
            let pool = sqlx::PgPool::connect(&admin)
                .await
                .expect("admin connection");
            let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            sqlx::query(sqlx::AssertSqlSafe(drop))
                .execute(&pool)
                .await
                .expect("drop database");
        }
    }
}

async fn backends() -> Vec<Backend> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut all = vec![Backend {
        location: Location::SqliteDir(dir.path().join("data")),
        _dir: Some(dir),
        pg: None,
    }];
    match std::env::var("VAKT_TEST_PG_URL") {
        Ok(admin) if !admin.is_empty() => {
            let name = format!(
                "vakt_story_{}",
                ulid::Ulid::new().to_string().to_lowercase()
            );
            let pool = sqlx::PgPool::connect(&admin)
                .await
                .unwrap_or_else(|e| panic!("VAKT_TEST_PG_URL is set but unreachable: {e}"));
            let create = format!("CREATE DATABASE {name}");
            sqlx::query(sqlx::AssertSqlSafe(create))
                .execute(&pool)
                .await
                .expect("create database");
            let url = match admin.rsplit_once('/') {
                Some((base, _)) => format!("{base}/{name}"),
                None => panic!("VAKT_TEST_PG_URL needs a database path"),
            };
            all.push(Backend {
                location: Location::Postgres(url),
                _dir: None,
                pg: Some((admin, name)),
            });
        }
        _ => eprintln!(
            "\n*** SKIPPED the PostgreSQL half of the storage stories: VAKT_TEST_PG_URL is not set ***\n"
        ),
    }
    all
}

/// Declares a story that runs on every backend.
macro_rules! story {
    ($name:ident, $body:ident) => {
        #[tokio::test]
        async fn $name() {
            for backend in backends().await {
                eprintln!(
                    "story {} on {}",
                    stringify!($name),
                    backend.location.describe()
                );
                $body(&backend).await;
                backend.cleanup().await;
            }
        }
    };
}

// The stories, a file each (declared after `story!`, which they use).
mod access;
mod cache;
mod dispatch;
mod escalation;
mod lifecycle;
mod lists;
mod reopen;
mod retention;
mod silences;
mod throttles;
mod writers;

fn pipeline() -> Pipeline {
    Pipeline::build(&PipelineConfig::from_toml(RULES).expect("parses")).expect("compiles")
}

fn event(value: serde_json::Value) -> EventInput {
    EventInput::from_json(0, value).expect("valid event")
}

async fn send(
    store: &dyn Store,
    pipeline: &Pipeline,
    events: Vec<serde_json::Value>,
) -> Vec<vakt_core::Correlated> {
    let now = Utc::now();
    let batch = events
        .into_iter()
        .map(|e| pipeline.prepare(event(e), "test", now))
        .collect();
    store
        .ingest(pipeline, &Default::default(), batch)
        .await
        .expect("ingest")
}

fn disk(pct: f64) -> serde_json::Value {
    json!({"resource": "db01", "check": "disk", "summary": format!("/var {pct}%"), "severity": "warning", "metrics": {"used_pct": pct}})
}
