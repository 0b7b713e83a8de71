//! `vakt send`: build one event from flags and post it to a server.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, anyhow};
use serde_json::{Value, json};
use vakt_core::EventInput;

use crate::cli::{Failure, SendArgs};

pub fn run(args: SendArgs) -> Result<(), Failure> {
    let event = build(&args).map_err(Failure::user)?;
    // Validate here too, so a typo is caught without a round trip and with the same words.
    if let Err(errors) = EventInput::from_json(0, event.clone()) {
        let lines: Vec<String> = errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect();
        return Err(Failure::user(anyhow!(
            "invalid event:\n  {}",
            lines.join("\n  ")
        )));
    }
    let url = format!("{}/api/v1/events", args.url.trim_end_matches('/'));
    let token = args.credential.token().map_err(Failure::user)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .map_err(Failure::internal)?;
    runtime.block_on(async {
        let client = args
            .credential
            .client()
            .map_err(Failure::user)?
            .timeout(Duration::from_secs(args.timeout_secs))
            .build()
            .context("cannot build an HTTP client")
            .map_err(Failure::internal)?;
        let mut request = client.post(&url).json(&event);
        if let Some(token) = &token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))
            .map_err(Failure::internal)?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if status.is_success() {
            println!("{body}");
            Ok(())
        } else if status.is_client_error() && status.as_u16() != 429 {
            Err(Failure::user(anyhow!(
                "{url} refused the event ({status}): {body}"
            )))
        } else {
            Err(Failure::internal(anyhow!(
                "{url} answered {status}: {body}"
            )))
        }
    })
}

fn build(args: &SendArgs) -> anyhow::Result<Value> {
    let labels = pairs(&args.labels, "--label")?;
    let mut metrics = BTreeMap::new();
    for (key, value) in pairs(&args.metrics, "--metric")? {
        let number: f64 = value
            .parse()
            .map_err(|_| anyhow!("--metric {key}={value}: {value:?} is not a number"))?;
        metrics.insert(key, number);
    }
    let mut event = json!({
        "resource": args.resource,
        "check": args.check,
        "severity": args.severity,
        "summary": args.summary,
        "labels": labels,
        "metrics": metrics,
    });
    for (field, value) in [
        ("source", &args.source),
        ("service", &args.service),
        ("environment", &args.environment),
    ] {
        if let Some(value) = value {
            event[field] = json!(value);
        }
    }
    Ok(event)
}

fn pairs(items: &[String], flag: &str) -> anyhow::Result<BTreeMap<String, String>> {
    items
        .iter()
        .map(|item| match item.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
            _ => Err(anyhow!("{flag} {item:?}: expected KEY=VALUE")),
        })
        .collect()
}
