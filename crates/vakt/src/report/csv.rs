//! A report as CSV: one long table, `section,name,key,value,previous`, that a spreadsheet
//! pivots; every field quoted where it needs to be (RFC 4180).

use std::fmt::Write;

use super::{Report, ResponseRow, Times};

/// RFC 4180: quoted when it holds a comma, quote or line break; a leading `=`, `+`, `-` or
/// `@` is prefixed with `'` so a spreadsheet does not run it as a formula (event fields
/// are the sender's text).
fn field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

fn num(value: Option<f64>) -> String {
    value.map(|v| format!("{v:.3}")).unwrap_or_default()
}

pub fn csv(report: &Report) -> String {
    let mut out = String::from("section,name,key,value,previous\n");
    let mut row = |section: &str, name: &str, key: &str, value: String, previous: String| {
        let _ = writeln!(
            out,
            "{},{},{},{},{}",
            field(section),
            field(name),
            field(key),
            field(&value),
            field(&previous)
        );
    };
    let (h, p) = (&report.headline, &report.previous);
    for (name, value, previous) in [
        ("events", h.events, p.events),
        ("dropped", h.dropped, p.dropped),
        ("alerts", h.alerts, p.alerts),
        ("actions", h.actions, p.actions),
        ("notifications", h.notifications, p.notifications),
        ("pages", h.pages, p.pages),
        ("incidents", h.incidents, p.incidents),
    ] {
        row(
            "headline",
            name,
            "",
            value.to_string(),
            previous.to_string(),
        );
    }
    row(
        "headline",
        "mtta_median_secs",
        "",
        num(h.mtta_median),
        num(p.mtta_median),
    );
    row(
        "headline",
        "mttr_median_secs",
        "",
        num(h.mttr_median),
        num(p.mttr_median),
    );
    for b in &report.volume.buckets {
        row(
            "volume",
            report.volume.bucket,
            &b.start,
            b.events.to_string(),
            String::new(),
        );
        row(
            "volume_dropped",
            report.volume.bucket,
            &b.start,
            b.dropped.to_string(),
            String::new(),
        );
        for (severity, n) in &b.by_severity {
            row(
                "volume_severity",
                severity,
                &b.start,
                n.to_string(),
                String::new(),
            );
        }
    }
    for (k, v) in &report.volume.by_category {
        row("volume", "category", k, v.to_string(), String::new());
    }
    for (k, v) in &report.volume.by_severity {
        row("volume", "severity", k, v.to_string(), String::new());
    }
    for (hour, v) in report.volume.hour_of_day.iter().enumerate() {
        row(
            "volume",
            "hour_of_day",
            &hour.to_string(),
            v.to_string(),
            String::new(),
        );
    }
    for (day, v) in report.volume.day_of_week.iter().enumerate() {
        row(
            "volume",
            "day_of_week",
            &(day + 1).to_string(),
            v.to_string(),
            String::new(),
        );
    }
    let f = &report.funnel;
    for (name, value) in [
        ("events", f.events),
        ("kept", f.kept),
        ("alerts", f.alerts),
        ("actions", f.actions),
        ("suppressed", f.suppressed),
        ("notifications", f.notifications),
        ("pages", f.pages),
        ("incidents", f.incidents),
    ] {
        row("funnel", name, "", value.to_string(), String::new());
    }
    row("funnel", "dedup_pct", "", num(f.dedup_pct), String::new());
    row(
        "funnel",
        "dropped_pct",
        "",
        num(f.dropped_pct),
        String::new(),
    );
    row(
        "funnel",
        "suppressed_pct",
        "",
        num(f.suppressed_pct),
        String::new(),
    );
    row(
        "funnel",
        "events_per_alert",
        "",
        num(f.events_per_alert),
        String::new(),
    );
    let mut response = |by: &str, r: &ResponseRow| {
        let mut times = |what: &str, t: &Times| {
            row(
                "response",
                &format!("{by}_{what}_mean_secs"),
                &r.key,
                num(t.mean),
                String::new(),
            );
            row(
                "response",
                &format!("{by}_{what}_median_secs"),
                &r.key,
                num(t.median),
                String::new(),
            );
            row(
                "response",
                &format!("{by}_{what}_p90_secs"),
                &r.key,
                num(t.p90),
                String::new(),
            );
        };
        times("mtta", &r.mtta);
        times("mttr", &r.mttr);
    };
    let r = &report.response;
    response("all", &r.overall);
    for (by, rows) in [
        ("service", &r.by_service),
        ("team", &r.by_team),
        ("category", &r.by_category),
        ("severity", &r.by_severity),
    ] {
        for one in rows {
            response(by, one);
        }
    }
    row(
        "response",
        "acked_within_target_pct",
        &r.ack_target_secs.to_string(),
        num(r.acked_within_target_pct),
        String::new(),
    );
    let e = &r.escalations;
    for (name, value) in [
        ("paged_alerts", e.alerts),
        ("pages", e.pages),
        ("never_acked", e.never_acked),
    ] {
        row("escalations", name, "", value.to_string(), String::new());
    }
    for (step, n) in &e.acked_at_step {
        row(
            "escalations",
            "acked_at_step",
            &step.to_string(),
            n.to_string(),
            String::new(),
        );
    }
    for p in &r.interruptions {
        for (name, value) in [
            ("pages", p.pages),
            ("business_hours", p.business),
            ("off_hours", p.off),
            ("sleep_hours", p.sleep),
        ] {
            row(
                "interruptions",
                name,
                &p.user,
                value.to_string(),
                String::new(),
            );
        }
    }
    for a in &report.automation.actions {
        row(
            "actions",
            "decided",
            &a.action,
            a.decided.to_string(),
            String::new(),
        );
        row(
            "actions",
            "succeeded",
            &a.action,
            a.succeeded.to_string(),
            String::new(),
        );
        row(
            "actions",
            "failed",
            &a.action,
            a.failed.to_string(),
            String::new(),
        );
        row(
            "actions",
            "success_pct",
            &a.action,
            num(a.success_pct),
            String::new(),
        );
    }
    let a = &report.automation;
    row(
        "automation",
        "resolved",
        "",
        a.resolved.to_string(),
        String::new(),
    );
    row(
        "automation",
        "resolved_by_automation",
        "",
        a.resolved_by_automation.to_string(),
        String::new(),
    );
    row(
        "automation",
        "resolved_before_ack",
        "",
        a.resolved_before_ack.to_string(),
        String::new(),
    );
    for (k, v) in &report.quality.noisy_sources {
        row("quality", "noisy_source", k, v.to_string(), String::new());
    }
    for (k, v) in &report.quality.noisy_checks {
        row("quality", "noisy_check", k, v.to_string(), String::new());
    }
    let q = &report.quality;
    row(
        "quality",
        "reopens",
        "",
        q.reopens.to_string(),
        String::new(),
    );
    row(
        "quality",
        "reopened_alerts",
        "",
        q.reopened_alerts.to_string(),
        String::new(),
    );
    for (a, n) in &q.reopened {
        row("quality", "reopened", &a.id, n.to_string(), String::new());
    }
    for (source, before) in &q.silent_sources {
        row(
            "quality",
            "silent_source",
            source,
            "0".into(),
            before.to_string(),
        );
    }
    for h in &q.heartbeats_missing {
        row(
            "quality",
            "heartbeat_missing",
            &h.name,
            h.last_seen.to_rfc3339(),
            String::new(),
        );
    }
    for i in &report.incidents {
        let p = i.priority.to_string();
        row("incidents", "count", &p, i.count.to_string(), String::new());
        row(
            "incidents",
            "resolved",
            &p,
            i.resolved.to_string(),
            String::new(),
        );
        row(
            "incidents",
            "ttr_median_secs",
            &p,
            num(i.time_to_resolve.median),
            String::new(),
        );
    }
    for s in report.suggestions.iter().flatten() {
        row(
            "suggestion",
            s.kind,
            &s.subject,
            s.evidence.clone(),
            String::new(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::field;

    #[test]
    fn fields_are_quoted_and_formulas_defused() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("=cmd|' /C calc'!A0"), "'=cmd|' /C calc'!A0");
        assert_eq!(field("-1,2"), "\"'-1,2\"");
    }
}
