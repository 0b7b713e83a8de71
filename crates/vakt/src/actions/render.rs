//! What a notification says: the template context, the built-in templates, and each chat
//! service's message format (Slack, Mattermost, Teams Adaptive Card, vakt's own JSON).
//!
//! User templates are minijinja with a fuel limit (a template cannot loop forever); the
//! chat formats are built as JSON values here, so text from events is always escaped right.

use chrono::{DateTime, SecondsFormat, Utc};
use minijinja::value::Serde;
use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;
use serde_json::{Value, json};
use vakt_core::Alert;
use vakt_core::pipeline::EventRecord;
use vakt_store::ActionRecord;

/// Instructions one template may spend (a loop over 500 alerts with formatting is ~50k).
pub const TEMPLATE_FUEL: u64 = 500_000;
/// Alerts listed one by one in a group message; the rest are counted.
pub const GROUP_LISTED_MAX: usize = 20;

/// The chat services whose mentions differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    Slack,
    Mattermost,
    Teams,
    Text,
}

/// Text for a chat service's markup, so nothing an event says becomes markup there: Slack's
/// `&`, `<` and `>` as entities (no `<!channel>`, `<url|label>`, `<@U...>`); Mattermost's
/// markdown specials backslash-escaped and `@` words broken (no `@all`, `@channel`,
/// `@someone`); Teams' markdown links broken and `<` escaped (no `<at>`).
fn escape(service: Service, text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (service, c) {
            (Service::Slack, '&') => out.push_str("&amp;"),
            (Service::Slack, '<') => out.push_str("&lt;"),
            (Service::Slack, '>') => out.push_str("&gt;"),
            (Service::Mattermost, '@') => {
                out.push('@');
                // A zero-width space: the word shows, but is no mention.
                if chars.peek().is_some_and(|n| n.is_alphanumeric()) {
                    out.push('\u{200B}');
                }
            }
            (Service::Mattermost, c) if "\\`*_{}[]()#!|<>~".contains(c) => {
                out.push('\\');
                out.push(c);
            }
            (Service::Teams, ']') if chars.peek() == Some(&'(') => out.push_str("]\u{200B}"),
            (Service::Teams, '<') => out.push_str("&lt;"),
            (_, c) => out.push(c),
        }
    }
    out
}

/// What a template sees.
#[derive(Debug, Clone, Serialize)]
pub struct Context {
    /// `trigger`, `resolved`, `flapping`, `settled`.
    pub purpose: &'static str,
    /// The alert (for a group: its first alert).
    pub alert: Alert,
    /// The event that led to the decision, when still stored.
    pub event: Option<EventRecord>,
    /// What was already done automatically for this alert: earlier actions and their outcomes.
    pub done: Vec<Done>,
    pub links: Links,
    /// For grouped notifications: every alert of the group.
    pub group: Option<Group>,
    /// The action's id: the idempotency key receivers may deduplicate on.
    pub action_id: String,
    pub action: String,
    /// For an escalation page: the policy, step and who is paged.
    pub page: Option<vakt_core::escalation::Page>,
    /// This is the alert's first notification (its earliest decided `notify` action): mail
    /// clients thread later mails about the alert under it.
    #[serde(skip)]
    pub thread_first: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Done {
    pub action: String,
    pub kind: String,
    pub status: String,
    pub outcome: String,
    pub at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Links {
    pub alert: String,
    pub ack: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Group {
    pub key: String,
    pub labels: Vec<(String, String)>,
    pub count: usize,
    pub alerts: Vec<Alert>,
}

impl Context {
    pub fn new(
        record: &ActionRecord,
        alert: Alert,
        event: Option<EventRecord>,
        earlier: &[ActionRecord],
        console_url: &str,
    ) -> Context {
        let base = console_url.trim_end_matches('/');
        Context {
            purpose: record.decided.purpose.as_str(),
            links: Links {
                // The console's pages: the alert, and the same page asking for the ack
                // (a link cannot act by itself; the page's button does, after sign-in).
                alert: format!("{base}/alerts/{}", alert.id),
                ack: format!("{base}/alerts/{}?do=ack", alert.id),
            },
            done: earlier
                .iter()
                .filter(|e| e.decided.id != record.decided.id && e.finished_at.is_some())
                .map(|e| Done {
                    action: e.decided.action.to_string(),
                    kind: e.decided.kind.to_owned(),
                    status: e.status.as_str().to_owned(),
                    outcome: e.outcome.clone().unwrap_or_default(),
                    at: e.finished_at.map(rfc3339).unwrap_or_default(),
                })
                .collect(),
            alert,
            event,
            group: None,
            action_id: record.decided.id.clone(),
            action: record.decided.action.to_string(),
            page: record.decided.target.as_deref().cloned(),
            thread_first: record.decided.kind == "notify"
                && earlier
                    .iter()
                    .filter(|e| e.decided.kind == "notify")
                    .map(|e| e.decided.id.as_str())
                    .chain([record.decided.id.as_str()])
                    .min()
                    == Some(record.decided.id.as_str()),
        }
    }

    /// The mail thread of this notification: its own Message-ID and, unless it is the
    /// alert's first, the first's (`In-Reply-To`, `References`). `None` for a group.
    pub fn thread(&self) -> Option<(String, Option<String>)> {
        if self.group.is_some() {
            return None;
        }
        let root = format!("alert.{}", self.alert.id);
        Some(if self.thread_first {
            (root, None)
        } else {
            (format!("{}.{}", self.action_id, self.alert.id), Some(root))
        })
    }

    /// One line that names the alert: `[CRITICAL] disk_usage on db01: /var is 99% full`.
    pub fn title(&self) -> String {
        if let Some(group) = &self.group {
            let labels = group
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ");
            let firing = group.alerts.iter().filter(|a| a.status.is_active()).count();
            return format!(
                "[vakt] {} alert{} ({firing} active){}",
                group.count,
                if group.count == 1 { "" } else { "s" },
                if labels.is_empty() {
                    String::new()
                } else {
                    format!(" for {labels}")
                }
            );
        }
        let tag = match self.purpose {
            "escalation" => {
                let mention = match self.mention(Service::Text) {
                    Some(m) => format!("{m} "),
                    None => String::new(),
                };
                return format!(
                    "{mention}[PAGE {}] {} on {}: {}",
                    self.alert.severity.as_str().to_uppercase(),
                    self.alert.check,
                    self.alert.resource,
                    self.alert.summary
                );
            }
            "resolved" => "RESOLVED".to_owned(),
            "flapping" => "FLAPPING".to_owned(),
            "settled" => format!("SETTLED, {}", self.alert.status.as_str().to_uppercase()),
            _ => self.alert.severity.as_str().to_uppercase(),
        };
        format!(
            "[{tag}] {} on {}: {}",
            self.alert.check, self.alert.resource, self.alert.summary
        )
    }

    /// The message body in plain text: what happened, what was done, where to look.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let line = |out: &mut String, text: String| {
            out.push_str(&text);
            out.push('\n');
        };
        if let Some(group) = &self.group {
            for alert in group.alerts.iter().take(GROUP_LISTED_MAX) {
                line(
                    &mut out,
                    format!(
                        "- [{}] {} on {}: {} ({})",
                        alert.severity.as_str().to_uppercase(),
                        alert.check,
                        alert.resource,
                        alert.summary,
                        alert.status
                    ),
                );
            }
            if group.count > GROUP_LISTED_MAX {
                line(
                    &mut out,
                    format!("... and {} more", group.count - GROUP_LISTED_MAX),
                );
            }
            return out;
        }
        let a = &self.alert;
        match self.purpose {
            "resolved" => line(
                &mut out,
                format!(
                    "Resolved{} after {} event(s), first seen {}.",
                    a.resolved_by
                        .as_ref()
                        .map(|by| format!(" by {by}"))
                        .unwrap_or_default(),
                    a.count,
                    rfc3339(a.first_seen)
                ),
            ),
            "flapping" => line(
                &mut out,
                "This alert is flapping: it keeps changing state. Notifications pause until it settles.".into(),
            ),
            "settled" => line(
                &mut out,
                format!("This alert stopped flapping; it is {} now.", a.status),
            ),
            "escalation" => {
                if let Some(page) = &self.page {
                    line(
                        &mut out,
                        format!(
                            "Nobody has acknowledged this alert: escalation policy {}, step {} (round {}){}.",
                            page.policy,
                            page.step,
                            page.round,
                            page.user
                                .as_deref()
                                .map(|u| format!(", paging {u}"))
                                .unwrap_or_default()
                        ),
                    );
                }
            }
            _ => {}
        }
        line(
            &mut out,
            format!("Severity: {} (highest {})", a.severity, a.severity_max),
        );
        line(&mut out, format!("Status: {}", a.status));
        line(&mut out, format!("Resource: {}", a.resource));
        line(&mut out, format!("Check: {}", a.check));
        if let Some(service) = &a.service {
            line(&mut out, format!("Service: {service}"));
        }
        if let Some(environment) = &a.environment {
            line(&mut out, format!("Environment: {environment}"));
        }
        line(
            &mut out,
            format!(
                "Events: {}, first {}, last {}",
                a.count,
                rfc3339(a.first_seen),
                rfc3339(a.last_seen)
            ),
        );
        if !self.done.is_empty() {
            line(&mut out, String::new());
            line(&mut out, "Already done automatically:".into());
            for done in &self.done {
                line(
                    &mut out,
                    format!(
                        "- {} ({}): {} {}",
                        done.action, done.kind, done.status, done.outcome
                    ),
                );
            }
        }
        line(&mut out, String::new());
        line(&mut out, format!("Alert: {}", self.links.alert));
        line(&mut out, format!("Acknowledge: {}", self.links.ack));
        out
    }

    fn color(&self) -> &'static str {
        match self.purpose {
            "resolved" => "#2eb886",
            "flapping" => "#daa038",
            _ => match self.alert.severity.as_str() {
                "critical" | "major" => "#d00000",
                "minor" | "warning" => "#daa038",
                _ => "#439fe0",
            },
        }
    }

    fn facts(&self) -> Vec<(&'static str, String)> {
        let a = &self.alert;
        let mut facts = vec![
            ("Severity", a.severity.as_str().to_owned()),
            ("Status", a.status.as_str().to_owned()),
            ("Resource", a.resource.clone()),
            ("Check", a.check.clone()),
        ];
        if let Some(service) = &a.service {
            facts.push(("Service", service.clone()));
        }
        if let Some(environment) = &a.environment {
            facts.push(("Environment", environment.clone()));
        }
        facts.push(("Events", a.count.to_string()));
        facts
    }

    /// Who a page is for, as `service` mentions them: Slack `<@U...>` and Mattermost
    /// `@name` from the user's ids (the only forms that notify), else the chat handle as
    /// plain text (`Service::Text`: email, generic webhooks, and services without an id).
    fn mention(&self, service: Service) -> Option<String> {
        let Some(vakt_core::escalation::Page {
            via: vakt_core::escalation::Via::Channel { mention, who, .. },
            ..
        }) = &self.page
        else {
            return None;
        };
        let id = who.as_ref().and_then(|w| match service {
            Service::Slack => w.slack_id.as_ref().map(|id| format!("<@{id}>")),
            Service::Mattermost => w.mattermost.as_ref().map(|name| format!("@{name}")),
            Service::Teams => w.teams_id.as_ref().map(|_| format!("<at>{}</at>", w.name)),
            Service::Text => None,
        });
        id.or_else(|| mention.clone())
    }

    /// The title for `service`: event text escaped for its markup, and the page's mention
    /// (only ever from vakt's directory) in the form that notifies there.
    fn title_for(&self, service: Service) -> String {
        self.title_in(service, service)
    }

    /// `title_for` with the mention of `mention_in` and the escaping of `escape_for` (plain
    /// fields that no markup reads take `Service::Text`).
    fn title_in(&self, mention_in: Service, escape_for: Service) -> String {
        let title = self.title();
        let text_mention = self.mention(Service::Text);
        let rest = match &text_mention {
            Some(text) => title
                .strip_prefix(&format!("{text} "))
                .unwrap_or(&title)
                .to_owned(),
            None => title.clone(),
        };
        let rest = escape(escape_for, &rest);
        match self.mention(mention_in) {
            Some(mention) if mention.starts_with(['<', '@']) => format!("{mention} {rest}"),
            Some(mention) => format!("{} {rest}", escape(escape_for, &mention)),
            None => rest,
        }
    }

    /// Slack incoming webhook: `text` (the notification fallback) and Block Kit blocks.
    pub fn slack(&self) -> Value {
        let title = self.title_for(Service::Slack);
        let mut blocks = vec![
            json!({"type": "header", "text": {"type": "plain_text", "text": truncate(&title, 150), "emoji": false}}),
            json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(&escape(Service::Slack, &self.text()), 3000)}}),
        ];
        if self.group.is_none() {
            blocks.push(json!({"type": "section", "fields": self.facts().iter().take(10).map(|(k, v)| json!({"type": "mrkdwn", "text": format!("*{k}*\n{}", escape(Service::Slack, v))})).collect::<Vec<_>>()}));
        }
        blocks.push(json!({"type": "actions", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": "Open in vakt"}, "url": self.links.alert}
        ]}));
        json!({"text": title, "blocks": blocks})
    }

    /// Mattermost incoming webhook: `text` plus a Slack-style attachment with fields.
    pub fn mattermost(&self) -> Value {
        let title = self.title_for(Service::Mattermost);
        // The attachment's fallback and title are plain text: no markup to escape.
        let plain = self.title_in(Service::Mattermost, Service::Text);
        json!({
            "username": "vakt",
            "text": format!("#### {title}"),
            "attachments": [{
                "fallback": plain,
                "color": self.color(),
                "title": plain,
                "title_link": self.links.alert,
                "text": escape(Service::Mattermost, &self.text()),
                "fields": if self.group.is_none() {
                    self.facts().iter().map(|(k, v)| json!({"short": true, "title": k, "value": escape(Service::Mattermost, v)})).collect::<Vec<_>>()
                } else { Vec::new() },
            }]
        })
    }

    /// Microsoft Teams Workflows webhook: a message with one Adaptive Card attachment.
    pub fn teams(&self) -> Value {
        let title = self.title_for(Service::Teams);
        let mut body = vec![
            json!({"type": "TextBlock", "size": "Large", "weight": "Bolder", "text": title, "wrap": true,
                   "color": if self.purpose == "resolved" { "Good" } else { "Attention" }}),
            json!({"type": "TextBlock", "text": escape(Service::Teams, &self.text()), "wrap": true}),
        ];
        if self.group.is_none() {
            body.push(json!({"type": "FactSet", "facts": self.facts().iter().map(|(k, v)| json!({"title": k, "value": escape(Service::Teams, v)})).collect::<Vec<_>>()}));
        }
        let mut content = json!({
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard",
            "version": "1.4",
            "body": body,
            "actions": [{"type": "Action.OpenUrl", "title": "Open in vakt", "url": self.links.alert}]
        });
        // A Teams mention is `<at>Name</at>` in the text plus an entity naming the user.
        if let (
            Some(text),
            Some(vakt_core::escalation::Page {
                via: vakt_core::escalation::Via::Channel { who: Some(who), .. },
                ..
            }),
        ) = (self.mention(Service::Teams), &self.page)
            && let Some(id) = &who.teams_id
        {
            content["msteams"] = json!({"entities": [{
                "type": "mention",
                "text": text,
                "mentioned": {"id": id, "name": who.name}
            }]});
        }
        json!({
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": null,
                "content": content
            }]
        })
    }

    /// vakt's own JSON document (generic webhooks and the default webhook action body),
    /// written straight from the context: a group's document holds every alert of the
    /// group, and building it as a `serde_json::Value` first (then freeing it) cost about
    /// as much as writing it (issue 18, BENCHMARKS.md).
    /// An error (which plain data with text keys does not raise) fails the action with it.
    pub fn document(&self) -> Result<String, String> {
        #[derive(Serialize)]
        struct Document<'a> {
            version: &'static str,
            purpose: &'static str,
            action_id: &'a str,
            action: &'a str,
            title: String,
            text: String,
            alert: &'a Alert,
            event: &'a Option<EventRecord>,
            done: &'a [Done],
            links: &'a Links,
            group: &'a Option<Group>,
            page: &'a Option<vakt_core::escalation::Page>,
        }
        let document = Document {
            version: "1",
            purpose: self.purpose,
            action_id: &self.action_id,
            action: &self.action,
            title: self.title(),
            text: self.text(),
            alert: &self.alert,
            event: &self.event,
            done: &self.done,
            links: &self.links,
            group: &self.group,
            page: &self.page,
        };
        serde_json::to_string(&document)
            .map_err(|error| format!("cannot write vakt's document: {error}"))
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    format!(
        "{}…",
        &text[..text.floor_char_boundary(max.saturating_sub(1))]
    )
}

pub fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The template environment: strict (an unknown variable is an error, not an empty
/// string), no HTML escaping (messages are text or JSON), bounded by fuel.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(TEMPLATE_FUEL));
    // The parts of a `shell = true` command are templates whose every `{{ ... }}` is
    // shell-quoted: event text cannot become shell code. `| safe` opts out, explicitly.
    // JSON bodies (webhooks, chat templates): every `{{ ... }}` string is escaped as the
    // inside of a JSON string, so event text cannot close the string and add keys.
    env.set_auto_escape_callback(|name| {
        if name.ends_with(SHELL_TEMPLATE_SUFFIX) {
            minijinja::AutoEscape::Custom(SHELL_ESCAPE.into())
        } else if name.ends_with(JSON_TEMPLATE_SUFFIX) {
            minijinja::AutoEscape::Custom(JSON_STRING_ESCAPE.into())
        } else {
            minijinja::AutoEscape::None
        }
    });
    env.set_formatter(|out, state, value| {
        if matches!(state.auto_escape(), minijinja::AutoEscape::Custom(name) if name == SHELL_ESCAPE)
        {
            let text = if value.is_undefined() || value.is_none() {
                String::new()
            } else {
                value.to_string()
            };
            let shown = if value.is_safe() {
                text
            } else {
                shell_quote(&text)
            };
            out.write_str(&shown)
                .map_err(|_| minijinja::Error::new(minijinja::ErrorKind::WriteFailure, "write"))
        } else if matches!(state.auto_escape(), minijinja::AutoEscape::Custom(name) if name == JSON_STRING_ESCAPE)
        {
            let shown = if value.is_safe()
                || value.is_number()
                || matches!(value.kind(), minijinja::value::ValueKind::Bool)
            {
                value.to_string()
            } else if value.is_undefined() || value.is_none() {
                String::new()
            } else {
                json_string_inside(&value.to_string())
            };
            out.write_str(&shown)
                .map_err(|_| minijinja::Error::new(minijinja::ErrorKind::WriteFailure, "write"))
        } else {
            minijinja::escape_formatter(out, state, value)
        }
    });
    env.add_filter("shellquote", |text: String| {
        minijinja::Value::from_safe_string(shell_quote(&text))
    });
    env
}

/// What the names of JSON body templates end with.
const JSON_TEMPLATE_SUFFIX: &str = ".json";
const JSON_STRING_ESCAPE: &str = "json-string";

/// The name a JSON body template is registered under (its escaping follows from it).
pub fn json_template(name: &str) -> String {
    format!("{name}{JSON_TEMPLATE_SUFFIX}")
}

/// `text` escaped as the inside of a JSON string (without the quotes).
fn json_string_inside(text: &str) -> String {
    let quoted = serde_json::Value::String(text.to_owned()).to_string();
    quoted[1..quoted.len() - 1].to_owned()
}

/// What the names of a `shell = true` command's templates end with.
const SHELL_TEMPLATE_SUFFIX: &str = ".sh";
const SHELL_ESCAPE: &str = "shell";

/// The template name of part `i` of an exec action's command.
pub fn command_template(action: &str, i: usize, shell: bool) -> String {
    let suffix = if shell { SHELL_TEMPLATE_SUFFIX } else { "" };
    format!("actions.{action}.command[{i}]{suffix}")
}

/// `text` as one word for `/bin/sh`: kept as it is when it holds only characters no shell
/// treats specially, else in single quotes (a quote inside written `'\''`).
pub fn shell_quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:=@%+,".contains(c));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// Renders a compiled template of `env` with the context.
pub fn render(env: &Environment<'_>, name: &str, context: &Context) -> Result<String, String> {
    env.get_template(name)
        .and_then(|t| t.render(minijinja::Value::from(Serde(context))))
        .map_err(|e| format!("template {name}: {e:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_body_template_cannot_gain_keys_from_event_text() {
        let mut env = environment();
        let name = json_template("actions.hook.body");
        let body = r#"{"resource": "{{ r }}", "count": {{ n }}, "raw": {{ r | tojson }}}"#;
        if let Err(e) = env.add_template_owned(name.clone(), body.to_owned()) {
            panic!("compiles: {e}");
        }
        let evil = "x\", \"admin\": true, \"y\": \"";
        let out = env
            .get_template(&name)
            .and_then(|t| t.render(minijinja::context! { r => evil, n => 3 }))
            .unwrap_or_else(|e| panic!("renders: {e}"));
        let parsed: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{out}: {e}"));
        assert_eq!(parsed["resource"], evil);
        assert_eq!(parsed["raw"], evil);
        assert_eq!(parsed["count"], 3);
        assert!(parsed.get("admin").is_none(), "{out}");
    }

    /// The document written straight from the context holds what a `serde_json::Value`
    /// built from the same fields holds: every key, the group's alerts, nothing more.
    #[test]
    fn the_document_holds_every_part_of_the_context() {
        use crate::actions::testing::{alert, record};
        let first = alert("a1", "disk", "db01", &[("service", "shop")]);
        let mut context = Context::new(
            &record("page", "notify", 1),
            first.clone(),
            None,
            &[],
            "https://vakt.example/",
        );
        context.group = Some(Group {
            key: "service=shop".into(),
            labels: vec![("service".into(), "shop".into())],
            count: 2,
            alerts: vec![first, alert("a2", "cpu", "db02", &[("service", "shop")])],
        });
        let document = context
            .document()
            .unwrap_or_else(|e| panic!("the document is written: {e}"));
        let written: Value =
            serde_json::from_str(&document).unwrap_or_else(|e| panic!("the document is JSON: {e}"));
        let expected = json!({
            "version": "1",
            "purpose": context.purpose,
            "action_id": context.action_id,
            "action": context.action,
            "title": context.title(),
            "text": context.text(),
            "alert": context.alert,
            "event": context.event,
            "done": context.done,
            "links": context.links,
            "group": context.group,
            "page": context.page,
        });
        assert_eq!(written, expected);
        assert_eq!(written["group"]["alerts"][1]["resource"], "db02");
        assert_eq!(
            written["links"]["ack"],
            "https://vakt.example/alerts/a1?do=ack"
        );
    }

    #[test]
    fn event_text_is_no_markup_in_chat() {
        let text = "<!channel> see <https://evil.example|your bank> & @all [click](https://evil.example) <at>boss</at>";
        let slack = escape(Service::Slack, text);
        assert!(!slack.contains('<') && !slack.contains('>'), "{slack}");
        assert!(
            slack.contains("&lt;!channel&gt;") && slack.contains("&amp;"),
            "{slack}"
        );
        let mm = escape(Service::Mattermost, text);
        assert!(mm.contains("@\u{200B}all"), "{mm}");
        assert!(mm.contains("\\[click\\]\\(https://evil.example\\)"), "{mm}");
        let teams = escape(Service::Teams, text);
        assert!(teams.contains("]\u{200B}("), "{teams}");
        assert!(!teams.contains("<at>"), "{teams}");
        assert_eq!(escape(Service::Text, text), text);
    }

    #[test]
    fn shell_commands_quote_every_interpolated_value() {
        let mut env = environment();
        let name = command_template("fix", 0, true);
        let script = "restart {{ r }} && echo {{ r | safe }} {{ r | shellquote }}";
        if let Err(e) = env.add_template_owned(name.clone(), script.to_owned()) {
            panic!("compiles: {e}");
        }
        let evil = "$(touch /tmp/x); it's";
        let out = env
            .get_template(&name)
            .and_then(|t| t.render(minijinja::context! { r => evil }))
            .unwrap_or_else(|e| panic!("renders: {e}"));
        assert_eq!(
            out,
            "restart '$(touch /tmp/x); it'\\''s' && echo $(touch /tmp/x); it's '$(touch /tmp/x); it'\\''s'"
        );
        assert_eq!(
            shell_quote("db01.example.com:5432"),
            "db01.example.com:5432"
        );
        assert_eq!(shell_quote(""), "''");
        // Without a shell, arguments stay as they are (argv cannot be injected).
        let plain = command_template("fix", 0, false);
        if let Err(e) = env.add_template_owned(plain.clone(), "{{ r }}".to_owned()) {
            panic!("compiles: {e}");
        }
        let out = env
            .get_template(&plain)
            .and_then(|t| t.render(minijinja::context! { r => evil }))
            .unwrap_or_else(|e| panic!("renders: {e}"));
        assert_eq!(out, evil);
    }

    #[test]
    fn a_template_that_would_run_for_ever_runs_out_of_fuel() {
        let mut env = environment();
        let looping =
            "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}";
        if let Err(e) = env.add_template_owned("loop".to_owned(), looping.to_owned()) {
            panic!("it compiles: {e}");
        }
        let started = std::time::Instant::now();
        let result = env
            .get_template("loop")
            .and_then(|t| t.render(minijinja::Value::UNDEFINED));
        let error = result.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("fuel"), "{error}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn an_unknown_variable_is_an_error_not_an_empty_string() {
        let mut env = environment();
        if let Err(e) = env.add_template_owned("t".to_owned(), "{{ alert.nope.deeper }}".to_owned())
        {
            panic!("it compiles: {e}");
        }
        let result = env
            .get_template("t")
            .and_then(|t| t.render(minijinja::context! { alert => minijinja::context! {} }));
        assert!(result.is_err());
    }
}
