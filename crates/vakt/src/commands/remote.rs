//! `vakt silence ...` and `vakt actions ...`: operators' commands against a running server.

use std::time::Duration;

use anyhow::{Context, anyhow};
use serde_json::{Value, json};

use crate::cli::{
    ActionsCommand, Failure, IncidentCommand, MonitorsArgs, OncallArgs, Remote, SilenceCommand,
};

/// One request; 4xx is the user's to fix (exit 1), anything else is environmental (exit 2).
fn call(
    remote: &Remote,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value, Failure> {
    call_text(remote, method, path, body)
        .map(|text| serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// One request, answered with its text.
fn call_text(
    remote: &Remote,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Result<String, Failure> {
    let url = format!("{}{path}", remote.url.trim_end_matches('/'));
    let token = remote.credential.token().map_err(Failure::user)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .map_err(Failure::internal)?;
    runtime.block_on(async {
        let client = remote
            .credential
            .client()
            .map_err(Failure::user)?
            .timeout(Duration::from_secs(remote.timeout_secs))
            .build()
            .context("cannot build an HTTP client")
            .map_err(Failure::internal)?;
        let mut request = client.request(method, &url);
        if let Some(token) = &token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))
            .map_err(Failure::internal)?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if status.is_success() {
            Ok(text)
        } else {
            let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
            let message = value["error"]
                .as_str()
                .map_or_else(|| value.to_string(), str::to_owned);
            let error = anyhow!("{url} answered {status}: {message}");
            Err(if status.is_client_error() {
                Failure::user(error)
            } else {
                Failure::internal(error)
            })
        }
    })
}

/// Prints an answer: as JSON, or a line per item (`what` names the items when a list is
/// empty: "no incidents", never nothing at all).
fn print(value: &Value, json_out: bool, what: &str, line: impl Fn(&Value) -> String) {
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
        return;
    }
    match value["items"].as_array() {
        Some(items) if items.is_empty() => println!("no {what}"),
        Some(items) => {
            for item in items {
                println!("{}", line(item));
            }
        }
        None => println!("{}", line(value)),
    }
}

/// Rows under a header, each column as wide as its widest cell (the last left ragged).
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    (*c).to_owned()
                } else {
                    format!("{c:<width$}", width = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push('\n');
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// A number as people write it: `97.2`, `85`, `0.04`.
fn number(value: f64) -> String {
    let text = format!("{value:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn silence_line(s: &Value) -> String {
    let matchers: Vec<&str> = s["matchers"]
        .as_array()
        .map(|m| m.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    format!(
        "{}  {:<8} {} .. {}  {}  by {}: {}",
        s["id"].as_str().unwrap_or("?"),
        s["state"].as_str().unwrap_or("?"),
        s["starts_at"].as_str().unwrap_or("?"),
        s["ends_at"].as_str().unwrap_or("?"),
        matchers.join(","),
        s["created_by"].as_str().unwrap_or("?"),
        s["comment"].as_str().unwrap_or(""),
    )
}

fn action_line(a: &Value) -> String {
    format!(
        "{}  {:<10} {:<8} {:<9} alert {}  attempts {}  {}",
        a["id"].as_str().unwrap_or("?"),
        a["status"].as_str().unwrap_or("?"),
        a["kind"].as_str().unwrap_or("?"),
        a["purpose"].as_str().unwrap_or("?"),
        a["alert_id"].as_str().unwrap_or("?"),
        a["attempts"],
        a["suppressed_by"]
            .as_str()
            .map(|s| format!("suppressed by {s}"))
            .or_else(|| a["outcome"].as_str().map(str::to_owned))
            .unwrap_or_default(),
    )
}

pub fn silence(command: SilenceCommand) -> Result<(), Failure> {
    match command {
        SilenceCommand::Add {
            remote,
            matchers,
            duration,
            by,
            comment,
            json,
        } => {
            let secs = parse_duration(&duration).map_err(Failure::user)?;
            let created = call(
                &remote,
                reqwest::Method::POST,
                "/api/v1/silences",
                Some(
                    json!({"matchers": matchers, "duration_secs": secs, "created_by": by, "comment": comment}),
                ),
            )?;
            print(&created, json, "silences", silence_line);
        }
        SilenceCommand::List {
            remote,
            state,
            json,
        } => {
            let path = match state {
                Some(state) => format!("/api/v1/silences?state={state}"),
                None => "/api/v1/silences".to_owned(),
            };
            print(
                &call(&remote, reqwest::Method::GET, &path, None)?,
                json,
                "silences",
                silence_line,
            );
        }
        SilenceCommand::Expire { remote, id, json } => {
            let expired = call(
                &remote,
                reqwest::Method::DELETE,
                &format!("/api/v1/silences/{id}"),
                None,
            )?;
            print(&expired, json, "silences", silence_line);
        }
    }
    Ok(())
}

pub fn actions(command: ActionsCommand) -> Result<(), Failure> {
    match command {
        ActionsCommand::List {
            remote,
            status,
            alert,
            json,
        } => {
            let mut path = "/api/v1/actions?limit=1000".to_owned();
            if let Some(status) = status {
                path.push_str(&format!("&status={status}"));
            }
            if let Some(alert) = alert {
                path.push_str(&format!("&alert_id={alert}"));
            }
            print(
                &call(&remote, reqwest::Method::GET, &path, None)?,
                json,
                "actions",
                action_line,
            );
        }
        ActionsCommand::Show { remote, id } => {
            let detail = call(
                &remote,
                reqwest::Method::GET,
                &format!("/api/v1/actions/{id}"),
                None,
            )?;
            println!(
                "{}",
                serde_json::to_string_pretty(&detail).unwrap_or_default()
            );
        }
        ActionsCommand::Retry { remote, id, by } => {
            let record = call(
                &remote,
                reqwest::Method::POST,
                &format!("/api/v1/actions/{id}/retry"),
                Some(json!({"by": by})),
            )?;
            println!("{}", action_line(&record));
        }
    }
    Ok(())
}

fn incident_line(i: &Value) -> String {
    format!(
        "{}  P{} {:<11} {:<10} alerts {:<4} {}{}",
        i["number"].as_str().unwrap_or("?"),
        i["priority"],
        i["status"].as_str().unwrap_or("?"),
        i["assignee"].as_str().unwrap_or("-"),
        i["alert_count"],
        i["title"].as_str().unwrap_or(""),
        i["external_id"]
            .as_str()
            .map(|e| format!("  [{e}]"))
            .unwrap_or_default(),
    )
}

pub fn incident(command: IncidentCommand) -> Result<(), Failure> {
    match command {
        IncidentCommand::List {
            remote,
            status,
            json,
        } => {
            let mut path = "/api/v1/incidents?limit=1000".to_owned();
            if let Some(status) = status {
                path.push_str(&format!("&status={}", encode(&status)));
            }
            print(
                &call(&remote, reqwest::Method::GET, &path, None)?,
                json,
                "incidents",
                incident_line,
            );
        }
        IncidentCommand::Show { remote, id } => {
            let detail = call(
                &remote,
                reqwest::Method::GET,
                &format!("/api/v1/incidents/{}", encode(&id)),
                None,
            )?;
            println!("{}", incident_line(&detail["incident"]));
            for alert in detail["incident"]["alerts"]
                .as_array()
                .into_iter()
                .flatten()
            {
                println!("  alert {}", alert.as_str().unwrap_or("?"));
            }
            for entry in detail["timeline"].as_array().into_iter().flatten() {
                println!(
                    "  {}  {:<8} {}",
                    entry["at"].as_str().unwrap_or("?"),
                    entry["kind"].as_str().unwrap_or("?"),
                    entry["message"].as_str().unwrap_or("")
                );
            }
        }
        IncidentCommand::Open {
            remote,
            title,
            description,
            impact,
            urgency,
            assignee,
            alerts,
            by,
            json,
        } => {
            let created = call(
                &remote,
                reqwest::Method::POST,
                "/api/v1/incidents",
                Some(
                    json!({"title": title, "description": description, "impact": impact,
                            "urgency": urgency, "assignee": assignee, "alerts": alerts, "by": by}),
                ),
            )?;
            print(&created, json, "incidents", incident_line);
        }
        IncidentCommand::Update {
            remote,
            id,
            status,
            assignee,
            impact,
            urgency,
            resolution,
            note,
            alerts,
            by,
            json,
        } => {
            let mut body = json!({"by": by, "link": alerts});
            for (key, value) in [
                ("status", status.map(Value::from)),
                ("assignee", assignee.map(Value::from)),
                ("impact", impact.map(Value::from)),
                ("urgency", urgency.map(Value::from)),
                ("resolution", resolution.map(Value::from)),
                ("note", note.map(Value::from)),
            ] {
                if let Some(value) = value {
                    body[key] = value;
                }
            }
            let updated = call(
                &remote,
                reqwest::Method::PATCH,
                &format!("/api/v1/incidents/{}", encode(&id)),
                Some(body),
            )?;
            print(&updated, json, "incidents", incident_line);
        }
    }
    Ok(())
}

/// `vakt monitors`: the server's catalogue of what it watches.
pub fn monitors(args: MonitorsArgs) -> Result<(), Failure> {
    let page = call(&args.remote, reqwest::Method::GET, "/api/v1/monitors", None)?;
    if args.json {
        print(&page, true, "monitors", |_| String::new());
        return Ok(());
    }
    let items = page["items"].as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        println!("no monitors: configure [[probes]], run `vakt agent`, or add [[heartbeats]]");
        return Ok(());
    }
    let threshold = |m: &Value, which: &str| {
        let t = &m["thresholds"];
        match t[which].as_f64() {
            Some(v) if t["below"] == true => format!("<{}", number(v)),
            Some(v) => format!(">={}", number(v)),
            None => "-".to_owned(),
        }
    };
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|m| {
            vec![
                m["name"].as_str().unwrap_or("?").to_owned(),
                m["type"].as_str().unwrap_or("?").to_owned(),
                m["by"].as_str().unwrap_or("?").to_owned(),
                m["resource"].as_str().unwrap_or("?").to_owned(),
                m["status"].as_str().unwrap_or("pending").to_owned(),
                m["value"].as_f64().map_or_else(|| "-".to_owned(), number),
                threshold(m, "warning"),
                threshold(m, "critical"),
                m["last_seen"].as_str().unwrap_or("never").to_owned(),
                m["summary"].as_str().unwrap_or("").to_owned(),
            ]
        })
        .collect();
    println!(
        "{}",
        table(
            &[
                "NAME",
                "TYPE",
                "BY",
                "RESOURCE",
                "STATUS",
                "VALUE",
                "WARNING",
                "CRITICAL",
                "LAST SEEN",
                "SUMMARY",
            ],
            &rows
        )
    );
    Ok(())
}

fn encode(text: &str) -> String {
    serde_urlencoded::to_string([("v", text)])
        .map(|s| s.trim_start_matches("v=").to_owned())
        .unwrap_or_default()
}

pub fn oncall(args: OncallArgs) -> Result<(), Failure> {
    let remote = &args.remote;
    let who = |v: &Value| {
        let user = &v["user"];
        match user["id"].as_str() {
            Some(id) => format!(
                "{}{} ({})",
                id,
                user["name"]
                    .as_str()
                    .filter(|n| !n.is_empty())
                    .map(|n| format!(" {n}"))
                    .unwrap_or_default(),
                v["source"].as_str().unwrap_or("?")
            ),
            None => "nobody".to_owned(),
        }
    };
    match (&args.schedule, args.weeks) {
        (None, _) => {
            let list = call(remote, reqwest::Method::GET, "/api/v1/schedules", None)?;
            print(&list, args.json, "schedules", |s| {
                format!(
                    "{:<24} {}",
                    s["name"].as_str().unwrap_or("?"),
                    who(&s["on_call_now"])
                )
            });
        }
        (Some(name), None) => {
            let mut path = format!("/api/v1/schedules/{}/oncall", encode(name));
            if let Some(at) = &args.at {
                path.push_str(&format!("?at={}", encode(at)));
            }
            let now = call(remote, reqwest::Method::GET, &path, None)?;
            print(&now, args.json, "answers", |v| {
                format!(
                    "{} at {}: {}",
                    name,
                    v["at"].as_str().unwrap_or("?"),
                    who(v)
                )
            });
        }
        (Some(name), Some(weeks)) => {
            let mut query = format!("weeks={weeks}");
            if let Some(at) = &args.at {
                query.push_str(&format!("&from={}", encode(at)));
            }
            if args.ics {
                let ics = call_text(
                    remote,
                    reqwest::Method::GET,
                    &format!("/api/v1/schedules/{}/calendar.ics?{query}", encode(name)),
                    None,
                )?;
                print!("{ics}");
            } else {
                let shifts = call(
                    remote,
                    reqwest::Method::GET,
                    &format!("/api/v1/schedules/{}/shifts?{query}", encode(name)),
                    None,
                )?;
                print(&shifts, args.json, "shifts in this period", |s| {
                    format!(
                        "{} .. {}  {}",
                        s["start"].as_str().unwrap_or("?"),
                        s["end"].as_str().unwrap_or("?"),
                        s["user"].as_str().map_or_else(
                            || "nobody".to_owned(),
                            |u| format!("{u} ({})", s["source"].as_str().unwrap_or("?"))
                        )
                    )
                });
            }
        }
    }
    Ok(())
}

/// `90`, `90s`, `30m`, `2h`, `1d` -> seconds.
pub fn parse_duration(text: &str) -> anyhow::Result<u64> {
    vakt_core::suite::duration_secs(text).map_err(|e| anyhow!("--duration {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_duration_names_the_option() {
        assert_eq!(parse_duration("2h").ok(), Some(7200));
        let error = parse_duration("2w").err().map(|e| e.to_string());
        assert!(error.is_some_and(|e| e.starts_with("--duration \"2w\"")));
    }
}
