//! A report as one self-contained HTML file: inline CSS, server-drawn SVG charts, no
//! JavaScript and nothing fetched, so it opens from a mail attachment. Every text that came
//! from an event (sources, checks, resources, services) is escaped.

use std::fmt::Write;

use super::{AlertLine, Report, ResponseRow, Times};

/// `&`, `<`, `>`, `"` and `'` as entities.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Seconds as `2h 05m`, `4m 12s`, `38s`.
pub fn duration(secs: Option<f64>) -> String {
    let Some(secs) = secs else {
        return "-".into();
    };
    let s = secs.round() as i64;
    match s {
        s if s >= 86_400 => format!("{}d {:02}h", s / 86_400, (s % 86_400) / 3600),
        s if s >= 3600 => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
        s if s >= 60 => format!("{}m {:02}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

fn pct(value: Option<f64>) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.1}%"))
}

fn change(now: i64, before: i64) -> String {
    match now - before {
        0 => "=".into(),
        d if before > 0 => format!("{d:+} ({:+.0}%)", d as f64 * 100.0 / before as f64),
        d => format!("{d:+}"),
    }
}

/// Vertical bars with labels under every `label_every`th; `series` are stacked from the
/// bottom, each `(class, values)`.
fn bars(labels: &[String], series: &[(&str, Vec<i64>)], label_every: usize, title: &str) -> String {
    let (width, height, bottom) = (760.0_f64, 180.0_f64, 30.0_f64);
    let n = labels.len().max(1);
    let totals: Vec<i64> = (0..labels.len())
        .map(|i| {
            series
                .iter()
                .map(|(_, v)| v.get(i).copied().unwrap_or(0))
                .sum()
        })
        .collect();
    let max = totals.iter().copied().max().unwrap_or(0).max(1) as f64;
    let slot = width / n as f64;
    // Without a title the chart is decoration of a figure that names it.
    let named = if title.is_empty() {
        "aria-hidden=\"true\"".to_owned()
    } else {
        format!("role=\"img\" aria-label=\"{}\"", esc(title))
    };
    let mut svg = format!(
        "<svg viewBox=\"0 0 {width} {}\" {named} class=\"chart\">",
        height + bottom
    );
    for (i, label) in labels.iter().enumerate() {
        let mut y = height;
        for (class, values) in series {
            let v = values.get(i).copied().unwrap_or(0);
            if v == 0 {
                continue;
            }
            let h = v as f64 / max * (height - 10.0);
            y -= h;
            let _ = write!(
                svg,
                "<rect class=\"{class}\" x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{h:.1}\"><title>{}: {v}</title></rect>",
                i as f64 * slot + 1.0,
                (slot - 2.0).max(1.0),
                esc(label)
            );
        }
        if i % label_every.max(1) == 0 {
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\" class=\"axis\">{}</text>",
                i as f64 * slot + 1.0,
                height + 16.0,
                esc(label)
            );
        }
    }
    // The scale: a dotted line at the tallest bar's top with its value, no words (the
    // console shows the chart in the viewer's language).
    let _ = write!(
        svg,
        "<line x1=\"0\" x2=\"{width}\" y1=\"10\" y2=\"10\" class=\"grid\"/><text x=\"{width}\" y=\"8\" text-anchor=\"end\" class=\"axis\">{}</text></svg>",
        totals.iter().copied().max().unwrap_or(0)
    );
    svg
}

/// The events-over-time chart alone (kept dark, dropped light), for the console's page,
/// which names it (`title` empty) or not.
pub fn volume_chart(report: &Report, title: &str) -> String {
    let v = &report.volume;
    let labels: Vec<String> = v.buckets.iter().map(|b| b.start.clone()).collect();
    let kept: Vec<i64> = v.buckets.iter().map(|b| b.events - b.dropped).collect();
    let dropped: Vec<i64> = v.buckets.iter().map(|b| b.dropped).collect();
    let every = (labels.len() / 8).max(1);
    bars(
        &labels,
        &[("kept", kept), ("dropped", dropped)],
        every,
        title,
    )
}

fn times_cells(t: &Times) -> String {
    format!(
        "<td>{}</td><td>{}</td><td>{}</td>",
        duration(t.mean),
        duration(t.median),
        duration(t.p90)
    )
}

fn response_table(title: &str, rows: &[ResponseRow]) -> String {
    let mut out = format!(
        "<h3>{}</h3><table><tr><th></th><th>alerts</th><th>acked</th><th>MTTA mean</th><th>median</th><th>p90</th><th>resolved</th><th>MTTR mean</th><th>median</th><th>p90</th></tr>",
        esc(title)
    );
    for r in rows.iter().take(20) {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td>{}<td>{}</td>{}</tr>",
            esc(&r.key),
            r.alerts,
            r.mtta.count,
            times_cells(&r.mtta),
            r.mttr.count,
            times_cells(&r.mttr)
        );
    }
    out.push_str("</table>");
    out
}

fn alert_table(title: &str, alerts: &[AlertLine]) -> String {
    if alerts.is_empty() {
        return format!("<h3>{}</h3><p class=\"none\">none</p>", esc(title));
    }
    let mut out = format!(
        "<h3>{}</h3><table><tr><th>resource</th><th>check</th><th>severity</th><th>status</th><th>first seen (UTC)</th><th>events</th></tr>",
        esc(title)
    );
    for a in alerts {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&a.resource),
            esc(&a.check),
            esc(&a.severity),
            esc(&a.status),
            a.first_seen.format("%Y-%m-%d %H:%M"),
            a.events
        );
    }
    out.push_str("</table>");
    out
}

fn counts_table(title: &str, rows: &[(String, i64)]) -> String {
    let mut out = format!("<h3>{}</h3><table>", esc(title));
    for (k, v) in rows {
        let _ = write!(out, "<tr><td>{}</td><td>{v}</td></tr>", esc(k));
    }
    out.push_str("</table>");
    out
}

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:60em;color:#1b1f24;padding:0 1em}\
h1{font-size:1.6em;margin-bottom:0}h2{margin-top:2em;border-bottom:1px solid #ccd;padding-bottom:.2em}\
table{border-collapse:collapse;margin:.5em 0}td,th{padding:.2em .7em;text-align:right;border-bottom:1px solid #e4e6ea}\
td:first-child,th:first-child{text-align:left}.sub{color:#555}.chart{width:100%;height:auto}\
.kept{fill:#3b6fb6}.dropped{fill:#b9c3d0}.axis{font-size:10px;fill:#555}.grid{stroke:#99a;stroke-dasharray:2 3}\
.sev-ok{fill:#4f9d69}.sev-info{fill:#7fa7d8}.sev-warning{fill:#e0b341}.sev-minor{fill:#e08a3c}.sev-major{fill:#d0593a}.sev-critical{fill:#a11d2b}\
.key{display:inline-block;width:.8em;height:.8em;margin:0 .25em 0 .6em;vertical-align:middle}\
span.sev-ok{background:#4f9d69}span.sev-info{background:#7fa7d8}span.sev-warning{background:#e0b341}span.sev-minor{background:#e08a3c}span.sev-major{background:#d0593a}span.sev-critical{background:#a11d2b}.none{color:#555}\
.cards{display:flex;flex-wrap:wrap;gap:.8em}.card{border:1px solid #d5d9e0;border-radius:6px;padding:.5em .9em;min-width:8em}\
.card b{display:block;font-size:1.5em}.card span{color:#555;font-size:.9em}";

pub fn html(report: &Report) -> String {
    let mut out = String::new();
    let tz = &report.timezone;
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>vakt report {} to {}</title><style>{STYLE}</style></head><body>",
        report.since.format("%Y-%m-%d"),
        report.until.format("%Y-%m-%d")
    );
    let _ = write!(
        out,
        "<h1>Event management report</h1><p class=\"sub\">{} to {} (UTC), compared with the period of the same length before; days and hours in {}</p>",
        report.since.format("%Y-%m-%d %H:%M"),
        report.until.format("%Y-%m-%d %H:%M"),
        esc(tz)
    );
    let (h, p) = (&report.headline, &report.previous);
    out.push_str("<div class=\"cards\">");
    for (name, now, before) in [
        ("events", h.events, p.events),
        ("alerts", h.alerts, p.alerts),
        ("actions", h.actions, p.actions),
        ("notifications", h.notifications, p.notifications),
        ("pages", h.pages, p.pages),
        ("incidents", h.incidents, p.incidents),
    ] {
        let _ = write!(
            out,
            "<div class=\"card\"><b>{now}</b>{name}<br><span>{} vs before</span></div>",
            change(now, before)
        );
    }
    let _ = write!(
        out,
        "<div class=\"card\"><b>{}</b>MTTA (median)<br><span>before {}</span></div><div class=\"card\"><b>{}</b>MTTR (median)<br><span>before {}</span></div></div>",
        duration(h.mtta_median),
        duration(p.mtta_median),
        duration(h.mttr_median),
        duration(p.mttr_median)
    );

    // Volume.
    let v = &report.volume;
    out.push_str("<h2>Volume</h2>");
    let labels: Vec<String> = v.buckets.iter().map(|b| b.start.clone()).collect();
    let kept: Vec<i64> = v.buckets.iter().map(|b| b.events - b.dropped).collect();
    let dropped: Vec<i64> = v.buckets.iter().map(|b| b.dropped).collect();
    let every = (labels.len() / 8).max(1);
    let _ = write!(
        out,
        "<p>Events per {} (kept dark, dropped light)</p>{}",
        v.bucket,
        bars(
            &labels,
            &[("kept", kept), ("dropped", dropped)],
            every,
            "events over time"
        )
    );
    let severities: Vec<(&str, Vec<i64>)> = vakt_core::Severity::ALL
        .iter()
        .rev()
        .map(|sev| {
            (
                sev.as_str(),
                v.buckets
                    .iter()
                    .map(|b| b.by_severity.get(sev.as_str()).copied().unwrap_or(0))
                    .collect::<Vec<i64>>(),
            )
        })
        .filter(|(_, values)| values.iter().any(|n| *n > 0))
        .collect();
    let classes: Vec<(String, Vec<i64>)> = severities
        .into_iter()
        .map(|(sev, values)| (format!("sev-{sev}"), values))
        .collect();
    let series: Vec<(&str, Vec<i64>)> = classes
        .iter()
        .map(|(class, values)| (class.as_str(), values.clone()))
        .collect();
    let legend: Vec<String> = series
        .iter()
        .map(|(class, _)| {
            format!(
                "<span class=\"key {class}\"></span>{}",
                class.trim_start_matches("sev-")
            )
        })
        .collect();
    let _ = write!(
        out,
        "<p>By severity, from ok at the bottom to critical at the top: {}</p>{}",
        legend.join(" "),
        bars(&labels, &series, every, "events over time by severity")
    );
    let hours: Vec<String> = (0..24).map(|h| format!("{h:02}")).collect();
    let _ = write!(
        out,
        "<p>By hour of the day</p>{}",
        bars(
            &hours,
            &[("kept", v.hour_of_day.clone())],
            1,
            "events by hour of the day"
        )
    );
    let days: Vec<String> = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
        .iter()
        .map(|d| (*d).to_owned())
        .collect();
    let _ = write!(
        out,
        "<p>By day of the week</p>{}",
        bars(
            &days,
            &[("kept", v.day_of_week.clone())],
            1,
            "events by day of the week"
        )
    );
    let by = |map: &std::collections::BTreeMap<String, i64>| -> Vec<(String, i64)> {
        map.iter().map(|(k, v)| (k.clone(), *v)).collect()
    };
    out.push_str(&counts_table("By category", &by(&v.by_category)));
    out.push_str(&counts_table("By severity", &by(&v.by_severity)));

    // The funnel.
    let f = &report.funnel;
    out.push_str("<h2>Noise reduction</h2><table>");
    for (name, value) in [
        ("events received", f.events),
        ("kept after the filter", f.kept),
        ("alerts opened", f.alerts),
        ("actions decided", f.actions),
        ("held back or skipped", f.suppressed),
        ("notifications sent", f.notifications),
        ("pages", f.pages),
        ("incidents", f.incidents),
    ] {
        let _ = write!(out, "<tr><td>{name}</td><td>{value}</td></tr>");
    }
    let _ = write!(
        out,
        "</table><p>Deduplicated {} of kept events, dropped {} of all, held back {} of actions; {} events per alert.</p>",
        pct(f.dedup_pct),
        pct(f.dropped_pct),
        pct(f.suppressed_pct),
        f.events_per_alert
            .map_or_else(|| "-".into(), |e| format!("{e:.1}"))
    );

    // Response.
    let r = &report.response;
    let _ = write!(
        out,
        "<h2>Response</h2><p>Acknowledged within {}: {} of acknowledged alerts.</p>",
        duration(Some(r.ack_target_secs as f64)),
        pct(r.acked_within_target_pct)
    );
    out.push_str(&response_table(
        "All alerts",
        std::slice::from_ref(&r.overall),
    ));
    out.push_str(&response_table("By service", &r.by_service));
    out.push_str(&response_table("By team", &r.by_team));
    out.push_str(&response_table("By category", &r.by_category));
    out.push_str(&response_table("By severity", &r.by_severity));
    let e = &r.escalations;
    if e.alerts == 0 {
        out.push_str("<h3>Escalations</h3><p class=\"none\">no pages in the period</p>");
    } else {
        let _ = write!(
            out,
            "<h3>Escalations</h3><p>{} pages for {} alerts; {} paged alerts were never acknowledged.</p><table><tr><th>acknowledged after</th><th>alerts</th></tr>",
            e.pages, e.alerts, e.never_acked
        );
        for (step, n) in &e.acked_at_step {
            let when = if *step == 0 {
                "before the first page".to_owned()
            } else {
                format!("the page of step {step}")
            };
            let _ = write!(out, "<tr><td>{when}</td><td>{n}</td></tr>");
        }
        out.push_str("</table>");
    }
    if !r.interruptions.is_empty() {
        let _ = write!(
            out,
            "<h3>Interruptions per person</h3><p>Pages sent (not failed); business hours {:02}-{:02} on weekdays, sleep hours {:02}-{:02}, the rest off hours ({}).</p><table><tr><th>person</th><th>pages</th><th>business hours</th><th>off hours</th><th>sleep hours</th></tr>",
            report.business_hours.0,
            report.business_hours.1,
            report.sleep_hours.0,
            report.sleep_hours.1,
            esc(tz)
        );
        for p in &r.interruptions {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&p.user),
                p.pages,
                p.business,
                p.off,
                p.sleep
            );
        }
        out.push_str("</table>");
    }

    // Automation.
    let a = &report.automation;
    out.push_str("<h2>Automation</h2><table><tr><th>action</th><th>kind</th><th>decided</th><th>succeeded</th><th>failed</th><th>skipped</th><th>held back</th><th>success</th></tr>");
    for row in &a.actions {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&row.action),
            esc(&row.kind),
            row.decided,
            row.succeeded,
            row.failed,
            row.skipped,
            row.suppressed,
            pct(row.success_pct)
        );
    }
    let _ = write!(
        out,
        "</table><p>{} alerts resolved: {} before anyone acknowledged them, {} of those after a command ran for them (no human involved).</p>",
        a.resolved, a.resolved_before_ack, a.resolved_by_automation
    );

    // Quality.
    let q = &report.quality;
    out.push_str("<h2>Where the noise is</h2>");
    out.push_str(&counts_table("Noisiest sources", &q.noisy_sources));
    out.push_str(&counts_table("Noisiest checks", &q.noisy_checks));
    out.push_str(&alert_table(
        "Alerts that took the most events",
        &q.busiest_alerts,
    ));
    out.push_str(&alert_table("Standing the longest (now)", &q.standing));
    out.push_str(&alert_table("Flapping (now)", &q.flapping));
    let _ = write!(
        out,
        "<h3>Re-opened</h3><p>{} re-opens of {} alerts in the period.</p>",
        q.reopens, q.reopened_alerts
    );
    if !q.reopened.is_empty() {
        out.push_str(
            "<table><tr><th>resource</th><th>check</th><th>status</th><th>re-opened</th></tr>",
        );
        for (a, n) in &q.reopened {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{n}</td></tr>",
                esc(&a.resource),
                esc(&a.check),
                esc(&a.status)
            );
        }
        out.push_str("</table>");
    }
    if q.silent_sources.is_empty() {
        out.push_str("<h3>Sources gone silent</h3><p class=\"none\">none: every source of the period before sent events in this one</p>");
    } else {
        out.push_str(&counts_table(
            "Sources gone silent (events in the period before, none in this one)",
            &q.silent_sources,
        ));
    }
    if q.heartbeats_missing.is_empty() {
        out.push_str("<h3>Missing heartbeats (now)</h3><p class=\"none\">none</p>");
    } else {
        out.push_str("<h3>Missing heartbeats (now)</h3><table><tr><th>heartbeat</th><th>resource</th><th>last seen (UTC)</th><th>every</th></tr>");
        for h in &q.heartbeats_missing {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&h.name),
                esc(&h.resource),
                h.last_seen.format("%Y-%m-%d %H:%M"),
                duration(Some(h.interval_secs as f64))
            );
        }
        out.push_str("</table>");
    }

    // Incidents.
    out.push_str("<h2>Incidents</h2>");
    if report.incidents.is_empty() {
        out.push_str("<p class=\"none\">none opened in the period</p>");
    } else {
        out.push_str("<table><tr><th>priority</th><th>opened</th><th>resolved</th><th>time to resolve mean</th><th>median</th><th>p90</th><th>alerts per incident</th></tr>");
        for i in &report.incidents {
            let _ = write!(
                out,
                "<tr><td>P{}</td><td>{}</td><td>{}</td>{}<td>{}</td></tr>",
                i.priority,
                i.count,
                i.resolved,
                times_cells(&i.time_to_resolve),
                i.alerts_per_incident
                    .map_or_else(|| "-".into(), |v| format!("{v:.1}"))
            );
        }
        out.push_str("</table>");
    }
    if let Some(suggestions) = &report.suggestions {
        out.push_str("<h2>Suggestions</h2>");
        if suggestions.is_empty() {
            out.push_str("<p class=\"none\">nothing to suggest for the period</p>");
        } else {
            out.push_str("<table><tr><th>suggestion</th><th>about</th><th>evidence</th><th>change</th><th>check it with</th></tr>");
            for s in suggestions {
                let _ = write!(
                    out,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                    esc(s.kind),
                    esc(&s.subject),
                    esc(&s.evidence),
                    esc(&s.change),
                    esc(&s.replay)
                );
            }
            out.push_str("</table>");
        }
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_durations_read_well() {
        assert_eq!(
            esc("<script>\"x\"&'y'"),
            "&lt;script&gt;&quot;x&quot;&amp;&#39;y&#39;"
        );
        assert_eq!(duration(Some(38.2)), "38s");
        assert_eq!(duration(Some(252.0)), "4m 12s");
        assert_eq!(duration(Some(7500.0)), "2h 05m");
        assert_eq!(duration(Some(90_000.0)), "1d 01h");
        assert_eq!(duration(None), "-");
    }
}
