//! The console's handlers: the board, an alert's page and its forms, bulk changes,
//! silences with a live preview, signing in and out, the language switch.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use minijinja::Value;
use serde::Serialize;
use vakt_core::Alert;
use vakt_core::alert::OperatorAction;
use vakt_core::matcher::Matcher;
use vakt_core::silence::SilenceState;

use super::board::{self, Filter, Sort};
use super::{Form, Posted, View, i18n, local_path, see_other};
use crate::auth::Caller;
use crate::http::AppState;

/// What a finished action reports back (`?done=ack` shows `done.ack`).
pub const DONE: &[&str] = &[
    "ack", "unack", "resolve", "comment", "assign", "silence", "expire", "incident", "override",
    "revoke",
];
/// Alerts one bulk request changes at most.
const BULK_MAX: usize = 10_000;
/// Actions of an alert whose attempts its page lists (the most recent ones).
const ACTIONS_WITH_ATTEMPTS: usize = 20;
/// Alerts a silence preview lists (it counts them all).
const PREVIEW_ROWS_MAX: usize = 20;

/// The query of a page's URL, as pairs.
pub(super) fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    serde_urlencoded::from_str(uri.query().unwrap_or_default()).unwrap_or_default()
}

pub(super) fn first<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn here(uri: &Uri) -> String {
    uri.path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned())
}

/// The view of a page, with the flash a redirect asked for (`done=...`).
pub(super) fn view(state: &AppState, headers: &HeaderMap, caller: Caller, uri: &Uri) -> View {
    let mut view = View::new(headers, caller, here(uri), page_of(uri.path()));
    let pairs = query_pairs(uri);
    view.wall = first(&pairs, "wall") == Some("1");
    if let Some(done) = first(&pairs, "done").filter(|d| DONE.contains(d)) {
        let text = state.console.text(&view, &format!("done.{done}"));
        let count = first(&pairs, "n").and_then(|n| n.parse::<usize>().ok());
        let text = match count {
            Some(n) => format!(
                "{text} {}",
                state
                    .console
                    .text(&view, "bulk.done")
                    .replace("{n}", &n.to_string())
            ),
            None => text,
        };
        view.flash = Some((text, "ok"));
    }
    view
}

/// Which page of the navigation a path belongs to (for its highlight).
fn page_of(path: &str) -> &'static str {
    match path
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default()
    {
        "silences" => "silences",
        "incidents" => "incidents",
        "oncall" => "oncall",
        "monitors" => "monitors",
        "reports" => "reports",
        "rules" => "rules",
        "tokens" => "tokens",
        "login" | "logout" => "login",
        _ => "board",
    }
}

fn time_text(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// An alert as a board row shows it.
#[derive(Serialize)]
struct Row<'a> {
    id: &'a str,
    severity: &'static str,
    category: &'static str,
    status: &'static str,
    resource: &'a str,
    check: &'a str,
    summary: &'a str,
    service: Option<&'a str>,
    count: i64,
    last_seen: String,
    last_seen_text: String,
    assignee: Option<&'a str>,
}

fn row(alert: &Alert) -> Row<'_> {
    Row {
        id: &alert.id,
        severity: alert.severity.as_str(),
        category: alert.category.as_str(),
        status: alert.status.as_str(),
        resource: &alert.resource,
        check: &alert.check,
        summary: &alert.summary,
        service: alert.service.as_deref(),
        count: alert.count,
        last_seen: rfc3339(alert.last_seen),
        last_seen_text: time_text(alert.last_seen),
        assignee: alert.assignee.as_deref(),
    }
}

/// What the board's URL says.
struct BoardParams {
    q: String,
    statuses: Vec<&'static str>,
    group: String,
    view: &'static str,
    sort: Sort,
    page: usize,
}

impl BoardParams {
    fn read(pairs: &[(String, String)]) -> BoardParams {
        let statuses: Vec<&'static str> = ["open", "acknowledged", "resolved"]
            .into_iter()
            .filter(|s| pairs.iter().any(|(k, v)| k == "status" && v == s))
            .collect();
        BoardParams {
            q: first(pairs, "q").unwrap_or_default().trim().to_owned(),
            statuses: if statuses.is_empty() {
                vec!["open", "acknowledged"]
            } else {
                statuses
            },
            group: first(pairs, "group")
                .unwrap_or("service")
                .split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .take(4)
                .collect::<Vec<_>>()
                .join(","),
            view: match first(pairs, "view") {
                Some("table") => "table",
                _ => "groups",
            },
            sort: Sort::parse(first(pairs, "sort").unwrap_or_default()),
            page: first(pairs, "page")
                .and_then(|p| p.parse().ok())
                .unwrap_or(0),
        }
    }

    /// The board's URL with another filter text (and view/page as given).
    fn href(&self, q: &str, view: &str, page: usize) -> String {
        let mut pairs: Vec<(&str, String)> = vec![("q", q.to_owned())];
        for s in &self.statuses {
            pairs.push(("status", (*s).to_owned()));
        }
        pairs.push(("group", self.group.clone()));
        pairs.push(("view", view.to_owned()));
        pairs.push(("sort", self.sort.as_str().to_owned()));
        if page > 0 {
            pairs.push(("page", page.to_string()));
        }
        format!(
            "/?{}",
            serde_urlencoded::to_string(&pairs).unwrap_or_default()
        )
    }
}

/// A matcher for the filter text: `name="value"` with the value escaped.
fn equals(name: &str, value: &str) -> String {
    format!(
        "{name}=\"{}\"",
        value.replace('\\', "\\\\").replace('"', "\\\"")
    )
}

/// The filter with `token` added, or removed when it is there.
fn toggled(q: &str, token: &str) -> (String, bool) {
    if q.contains(token) {
        let rest = q.replace(token, " ");
        (rest.split_whitespace().collect::<Vec<_>>().join(" "), true)
    } else if q.is_empty() {
        (token.to_owned(), false)
    } else {
        (format!("{q} {token}"), false)
    }
}

/// The alerts a board chooses from: the open and acknowledged ones from the shared
/// snapshot, plus recent resolved ones when asked for.
struct Pool {
    open: Vec<Arc<board::Entry>>,
    resolved: Vec<board::Entry>,
}

impl Pool {
    async fn read(state: &AppState, params: &BoardParams) -> Result<Pool, String> {
        let open = state.console.open_alerts(&state.store).await?;
        let resolved = if params.statuses.contains(&"resolved") {
            super::Console::resolved_alerts(&*state.store).await?
        } else {
            Vec::new()
        };
        Ok(Pool { open, resolved })
    }

    fn len(&self) -> usize {
        self.open.len() + self.resolved.len()
    }

    /// The alerts the status chips and the filter select, sorted.
    fn chosen(&self, params: &BoardParams, filter: &Filter) -> Vec<board::Labelled<'_>> {
        let mut chosen: Vec<board::Labelled<'_>> = self
            .open
            .iter()
            .map(|entry| &**entry)
            .chain(&self.resolved)
            .filter(|(a, _)| params.statuses.contains(&a.status.as_str()))
            .filter(|(a, labels)| filter.matches(a, labels))
            .map(|(a, labels)| (a, labels))
            .collect();
        params.sort.apply(&mut chosen);
        chosen
    }
}

/// `GET /`: the alert board. `fragment=board` answers only the board (live refresh).
pub async fn board(State(state): State<Arc<AppState>>, view: View) -> Response {
    let pairs = view.query();
    let params = BoardParams::read(&pairs);
    let (filter, error) = match Filter::parse(&params.q) {
        Ok(filter) => (filter, None),
        Err(error) => (Filter::default(), Some(error)),
    };
    let pool = match Pool::read(&state, &params).await {
        Ok(pool) => pool,
        Err(error) => {
            tracing::error!(%error, "the board could not read alerts");
            return state.console.error(
                &view,
                StatusCode::SERVICE_UNAVAILABLE,
                "the alerts could not be read; try again",
            );
        }
    };
    let loaded = pool.len();
    let alerts = pool.chosen(&params, &filter);
    let mut page = BTreeMap::new();
    let label_refs: Vec<&BTreeMap<String, String>> = alerts.iter().map(|(_, l)| *l).collect();
    let facets: Vec<Value> = board::facets(&label_refs)
        .into_iter()
        .map(|(name, translate, values)| {
            let values: Vec<Value> = values
                .into_iter()
                .map(|(value, count)| {
                    let (q, active) = toggled(&params.q, &equals(name, &value));
                    minijinja::context! {
                        value => value,
                        count => count,
                        active => active,
                        href => params.href(&q, params.view, 0),
                    }
                })
                .collect();
            minijinja::context! { name => name, translate => translate, values => values }
        })
        .collect();
    let keys: Vec<String> = params
        .group
        .split(',')
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
        .collect();
    let table = params.view == "table" || keys.is_empty();
    if table {
        let start = params.page.saturating_mul(board::TABLE_ROWS_MAX);
        let rows: Vec<Row> = alerts
            .iter()
            .skip(start)
            .take(board::TABLE_ROWS_MAX)
            .map(|(a, _)| row(a))
            .collect();
        let more = alerts
            .len()
            .saturating_sub(start.saturating_add(board::TABLE_ROWS_MAX));
        page.insert("rows", Value::from(minijinja::value::Serde(&rows)));
        page.insert("more", Value::from(more));
        page.insert(
            "next_href",
            Value::from(params.href(&params.q, "table", params.page + 1)),
        );
    } else {
        let mut groups = board::group(&alerts, &keys);
        fill_hrefs(&mut groups, &params, &params.q);
        let mut budget = board::TABLE_ROWS_MAX;
        page.insert("groups", groups_value(&groups, &mut budget));
    }
    let mut group_keys: Vec<&str> = vec![
        "service",
        "severity",
        "category",
        "resource",
        "check",
        "environment",
        "source",
        "assignee",
        "status",
    ];
    let label_names: std::collections::BTreeSet<&str> = alerts
        .iter()
        .take(1000)
        .flat_map(|(a, _)| a.labels.keys().map(String::as_str))
        .collect();
    let extra: Vec<&str> = label_names
        .into_iter()
        .filter(|k| !group_keys.contains(k))
        .collect();
    group_keys.extend(extra);
    page.insert(
        "group_keys",
        Value::from(minijinja::value::Serde(&group_keys)),
    );
    page.insert("q", Value::from(params.q.clone()));
    page.insert("error", Value::from(error));
    page.insert(
        "statuses",
        Value::from(minijinja::value::Serde(&params.statuses)),
    );
    page.insert("group", Value::from(params.group.clone()));
    page.insert("view", Value::from(if table { "table" } else { "groups" }));
    page.insert("sort", Value::from(params.sort.as_str()));
    page.insert("facets", Value::from(facets));
    page.insert("total", Value::from(alerts.len()));
    page.insert("loaded", Value::from(loaded));
    page.insert("version", Value::from(state.console.changes.version()));
    page.insert("can_write", Value::from(view.can("write:alerts")));
    page.insert("can_silence", Value::from(view.can("write:silences")));
    let template = if first(&pairs, "fragment") == Some("board") {
        "board_inner.html"
    } else {
        "board.html"
    };
    state.console.render(template, &view, page)
}

fn fill_hrefs(groups: &mut [board::Group<'_>], params: &BoardParams, q: &str) {
    for group in groups {
        let (narrowed, _) = if group.value == "—" {
            (q.to_owned(), false)
        } else {
            toggled(q, &equals(&group.key, &group.value))
        };
        group.href = params.href(&narrowed, "table", 0);
        fill_hrefs(&mut group.children, params, &narrowed);
    }
}

/// Groups as the template reads them, with their rows: `budget` rows in all (a board of
/// 10,000 alerts in 300 groups stays small), groups past it show only their counts.
fn groups_value(groups: &[board::Group<'_>], budget: &mut usize) -> Value {
    let list: Vec<Value> = groups
        .iter()
        .map(|g| {
            let take = g.members.len().min(*budget);
            *budget -= take;
            let rows: Vec<Row> = g.members.iter().take(take).map(|a| row(a)).collect();
            let hidden = g.members.len() - take;
            minijinja::context! {
                key => g.key.clone(),
                value => g.value.clone(),
                count => g.count,
                severity => g.severity,
                more => g.more + hidden,
                href => g.href.clone(),
                open => take > 0 || (g.members.is_empty() && *budget > 0),
                alerts => Value::from(minijinja::value::Serde(&rows)),
                children => groups_value(&g.children, budget),
            }
        })
        .collect();
    Value::from(list)
}

/// `GET /alerts/{id}`: everything about one alert, and what can be done with it.
pub async fn alert(
    State(state): State<Arc<AppState>>,
    view: View,
    Path(id): Path<String>,
) -> Response {
    let store = &state.store;
    let found = match store.alert(&id).await {
        Ok(found) => found,
        Err(error) => {
            tracing::error!(%error, alert = %id, "reading an alert");
            return state.console.error(
                &view,
                StatusCode::SERVICE_UNAVAILABLE,
                "the alert could not be read; try again",
            );
        }
    };
    let Some(alert) = found else {
        return state.console.error(
            &view,
            StatusCode::NOT_FOUND,
            format!("no alert with id {id}"),
        );
    };
    let read = tokio::try_join!(
        store.timeline(&id),
        store.alert_events(&id, crate::http::alerts::TRACE_EVENTS_MAX),
        store.alert_actions(&id),
        store.escalation(&id),
    );
    let (timeline, events, actions, escalation) = match read {
        Ok(read) => read,
        Err(error) => {
            tracing::error!(%error, alert = %id, "reading an alert's history");
            return state.console.error(
                &view,
                StatusCode::SERVICE_UNAVAILABLE,
                "the alert's history could not be read; try again",
            );
        }
    };
    let silenced_by = state.silences.get().silencing(&alert.match_labels());
    let events: Vec<Value> = events
        .into_iter()
        .map(|record| {
            minijinja::context! {
                received_at => rfc3339(record.event.received_at),
                severity => record.event.severity.as_str(),
                summary => record.event.summary,
                trace => Value::from(minijinja::value::Serde(&record.trace)),
            }
        })
        .collect();
    // Every attempt of the alert's most recent actions, with its outcome.
    let mut shown = Vec::with_capacity(actions.len());
    let recent = actions.len().saturating_sub(ACTIONS_WITH_ATTEMPTS);
    for (index, record) in actions.into_iter().enumerate() {
        let attempts = if index >= recent {
            match state.store.action(&record.decided.id).await {
                Ok(Some((_, attempts))) => attempts,
                _ => Vec::new(),
            }
        } else {
            Vec::new()
        };
        let mut value =
            serde_json::to_value(crate::http::actions::shown(record)).unwrap_or_default();
        value["tries"] = attempts
            .iter()
            .map(|a| {
                serde_json::json!({"attempt": a.attempt, "at": rfc3339(a.started_at),
                                   "outcome": a.outcome, "detail": a.detail})
            })
            .collect();
        shown.push(value);
    }
    let actions = shown;
    let users: Vec<String> = state
        .console
        .directory
        .get()
        .users
        .iter()
        .map(|u| u.id.clone())
        .collect();
    let mut page = BTreeMap::new();
    page.insert("a", Value::from(minijinja::value::Serde(&alert)));
    page.insert("timeline", Value::from(minijinja::value::Serde(&timeline)));
    page.insert("events", Value::from(events));
    page.insert("actions", Value::from(minijinja::value::Serde(&actions)));
    page.insert(
        "escalation",
        Value::from(minijinja::value::Serde(&escalation)),
    );
    page.insert(
        "silenced_by",
        Value::from(minijinja::value::Serde(&silenced_by)),
    );
    page.insert("users", Value::from(minijinja::value::Serde(&users)));
    page.insert("can_write", Value::from(view.can("write:alerts")));
    page.insert("can_silence", Value::from(view.can("write:silences")));
    page.insert("can_incident", Value::from(view.can("write:incidents")));
    // A notification's "acknowledge" link: the page opens with its button focused.
    page.insert(
        "confirm_ack",
        Value::from(first(&view.query(), "do") == Some("ack")),
    );
    state.console.render("alert.html", &view, page)
}

/// Who acts: the signed-in identity, or `console` where auth is off.
pub(super) fn actor(view: &View) -> String {
    view.user().unwrap_or("console").to_owned()
}

/// `POST /alerts/{id}/{op}`: ack, unack, resolve, comment, assign, from a plain form.
pub async fn operate(
    State(state): State<Arc<AppState>>,
    Path((id, op)): Path<(String, String)>,
    Posted { view, form }: Posted,
) -> Response {
    let comment = form
        .get("comment")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned);
    let action = match op.as_str() {
        "ack" => OperatorAction::Ack,
        "unack" => OperatorAction::Unack,
        "resolve" => OperatorAction::Resolve,
        "comment" => OperatorAction::Comment,
        "incident" => return super::records::open_incident(&state, &view, &id).await,
        "assign" => OperatorAction::Assign {
            assignee: form
                .get("assignee")
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_owned),
        },
        other => {
            return state.console.error(
                &view,
                StatusCode::NOT_FOUND,
                format!(
                    "no alert action {other:?}: ack, unack, resolve, comment, assign or incident"
                ),
            );
        }
    };
    match crate::http::alerts::operate(&state, &id, action, actor(&view), comment).await {
        Ok(_) => {
            let back = local_path(form.get("back").or(Some(&format!("/alerts/{id}"))));
            see_other(&with_done(&back, &op, None))
        }
        Err(error) => state.console.error(&view, error.status, error.error),
    }
}

/// `path` with `done=WHAT` (and `n=N`) added to its query.
pub(super) fn with_done(path: &str, done: &str, count: Option<usize>) -> String {
    let (base, query) = path.split_once('?').unwrap_or((path, ""));
    let mut pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
    pairs.retain(|(k, _)| k != "done" && k != "n");
    pairs.push(("done".into(), done.into()));
    if let Some(n) = count {
        pairs.push(("n".into(), n.to_string()));
    }
    format!(
        "{base}?{}",
        serde_urlencoded::to_string(&pairs).unwrap_or_default()
    )
}

/// `POST /bulk`: one action on the selected alerts, or on everything matching the filter,
/// with a reason (recorded as each alert's comment).
pub async fn bulk(State(state): State<Arc<AppState>>, Posted { view, form }: Posted) -> Response {
    let back = local_path(form.get("back"));
    let ids: Vec<String> = if form.get("all") == Some("1") {
        let pairs: Vec<(String, String)> = form
            .0
            .iter()
            .filter(|(k, _)| k == "q" || k == "status")
            .cloned()
            .collect();
        let params = BoardParams::read(&pairs);
        let filter = match Filter::parse(&params.q) {
            Ok(filter) => filter,
            Err(error) => return state.console.error(&view, StatusCode::BAD_REQUEST, error),
        };
        match Pool::read(&state, &params).await {
            Ok(pool) => pool
                .chosen(&params, &filter)
                .into_iter()
                .map(|(a, _)| a.id.clone())
                .collect(),
            Err(error) => {
                return state
                    .console
                    .error(&view, StatusCode::SERVICE_UNAVAILABLE, error);
            }
        }
    } else {
        form.all("ids").into_iter().map(str::to_owned).collect()
    };
    if ids.is_empty() {
        let text = state.console.text(&view, "bulk.none");
        return state.console.error(&view, StatusCode::BAD_REQUEST, text);
    }
    if ids.len() > BULK_MAX {
        return state.console.error(
            &view,
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{} alerts selected; one request changes at most {BULK_MAX}: narrow the filter",
                ids.len()
            ),
        );
    }
    let reason = form
        .get("reason")
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_owned);
    let (action, done) = match form.get("action") {
        Some("ack") => (OperatorAction::Ack, "ack"),
        Some("resolve") => (OperatorAction::Resolve, "resolve"),
        Some("assign_me") => (
            OperatorAction::Assign {
                assignee: view.user().map(str::to_owned),
            },
            "assign",
        ),
        Some("silence") => return bulk_silence(&state, &view, &ids, reason).await,
        other => {
            return state.console.error(
                &view,
                StatusCode::BAD_REQUEST,
                format!("unknown bulk action {other:?}: ack, resolve, assign_me or silence"),
            );
        }
    };
    let by = actor(&view);
    let mut changed = 0;
    for id in &ids {
        // An alert that cannot take the action (already resolved, say) is left as it is.
        if crate::http::alerts::operate(&state, id, action.clone(), by.clone(), reason.clone())
            .await
            .is_ok()
        {
            changed += 1;
        }
    }
    tracing::info!(
        by,
        action = done,
        selected = ids.len(),
        changed,
        "bulk change from the console"
    );
    see_other(&with_done(&back, done, Some(changed)))
}

/// A bulk silence: the silence form, filled in with the labels every selected alert shares.
async fn bulk_silence(
    state: &AppState,
    view: &View,
    ids: &[String],
    reason: Option<String>,
) -> Response {
    if !view.can("write:silences") {
        return state.console.error(
            view,
            StatusCode::FORBIDDEN,
            "silencing needs the scope write:silences",
        );
    }
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let alerts = match state.store.alerts_by_id(&refs).await {
        Ok(alerts) => alerts,
        Err(error) => {
            return state
                .console
                .error(view, StatusCode::SERVICE_UNAVAILABLE, error.to_string());
        }
    };
    let mut common: Option<BTreeMap<String, String>> = None;
    for alert in &alerts {
        let labels = alert.match_labels();
        common = Some(match common {
            None => labels,
            Some(mut shared) => {
                shared.retain(|k, v| labels.get(k) == Some(v));
                shared
            }
        });
    }
    let matchers: Vec<String> = common
        .unwrap_or_default()
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "severity" | "category" | "status"))
        .map(|(k, v)| equals(k, v))
        .collect();
    let query = serde_urlencoded::to_string([
        ("matchers", matchers.join("\n")),
        ("comment", reason.unwrap_or_default()),
    ])
    .unwrap_or_default();
    see_other(&format!("/silences/new?{query}"))
}

/// A silence as the list shows it, with the open alerts it covers now.
#[derive(Serialize)]
struct SilenceRow {
    id: String,
    state: &'static str,
    matchers: Vec<String>,
    ends_at: String,
    created_by: String,
    comment: String,
    covers: usize,
}

/// `GET /silences`: in force (active and pending), or `state=expired`.
pub async fn silences(State(state): State<Arc<AppState>>, view: View) -> Response {
    let pairs = view.query();
    let expired = first(&pairs, "state") == Some("expired");
    let now = Utc::now();
    let query = vakt_store::SilenceQuery {
        set: if expired {
            vakt_store::SilenceSet::Expired
        } else {
            vakt_store::SilenceSet::InForce
        },
        now,
        changed_since: None,
    };
    let (stored, open) = match tokio::try_join!(
        async {
            state
                .store
                .silences(&query)
                .await
                .map_err(|e| e.to_string())
        },
        state.console.open_alerts(&state.store)
    ) {
        Ok(found) => found,
        Err(error) => {
            return state
                .console
                .error(&view, StatusCode::SERVICE_UNAVAILABLE, error);
        }
    };
    let labels: Vec<BTreeMap<String, String>> =
        open.iter().map(|entry| entry.0.match_labels()).collect();
    let mut rows: Vec<SilenceRow> = stored
        .iter()
        .map(|silence| {
            let state_now = silence.state(now);
            let covers = match (state_now, silence.compiled()) {
                (SilenceState::Expired, _) | (_, Err(_)) => 0,
                (_, Ok(matchers)) => labels
                    .iter()
                    .filter(|l| matchers.iter().all(|m| m.matches(l)))
                    .count(),
            };
            SilenceRow {
                id: silence.id.clone(),
                state: state_now.as_str(),
                matchers: silence.matchers.iter().map(ToString::to_string).collect(),
                ends_at: rfc3339(silence.ends_at),
                created_by: silence.created_by.clone(),
                comment: silence.comment.clone(),
                covers,
            }
        })
        .collect();
    rows.sort_by(|a, b| b.ends_at.cmp(&a.ends_at));
    let mut page = BTreeMap::new();
    page.insert("silences", Value::from(minijinja::value::Serde(&rows)));
    page.insert("state", Value::from(if expired { "expired" } else { "" }));
    page.insert("can_silence", Value::from(view.can("write:silences")));
    state.console.render("silences.html", &view, page)
}

/// The matcher lines of a silence form.
fn matcher_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// What a silence with these matchers would cover now: `preview`, `preview_total`,
/// `preview_open`, `preview_broad`, or `preview_error`.
async fn preview(state: &AppState, text: &str, page: &mut BTreeMap<&'static str, Value>) {
    let lines = matcher_lines(text);
    let mut matchers = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        match Matcher::parse(line) {
            Ok(m) => matchers.push(m),
            Err(e) => {
                page.insert(
                    "preview_error",
                    Value::from(format!("line {}: {line:?}: {e}", i + 1)),
                );
                return;
            }
        }
    }
    let open = match state.console.open_alerts(&state.store).await {
        Ok(open) => open,
        Err(error) => {
            page.insert("preview_error", Value::from(error));
            return;
        }
    };
    let covered: Vec<&Alert> = if matchers.is_empty() {
        Vec::new()
    } else {
        // Silences match what decide matches: the alert's match labels.
        open.iter()
            .map(|entry| &entry.0)
            .filter(|a| {
                let labels = a.match_labels();
                matchers.iter().all(|m| m.matches(&labels))
            })
            .collect()
    };
    let everything = !matchers.is_empty() && matchers.iter().all(Matcher::matches_empty);
    let broad = everything || (open.len() >= 4 && covered.len() * 2 > open.len());
    let rows: Vec<Row> = covered
        .iter()
        .take(PREVIEW_ROWS_MAX)
        .map(|a| row(a))
        .collect();
    page.insert("preview", Value::from(minijinja::value::Serde(&rows)));
    page.insert("preview_total", Value::from(covered.len()));
    page.insert("preview_open", Value::from(open.len()));
    page.insert("preview_broad", Value::from(broad));
}

/// `GET /silences/new`: the form, filled in from `alert=ID` (its resource and check) or
/// from `matchers` and `comment`, with the preview.
pub async fn new_silence(State(state): State<Arc<AppState>>, view: View) -> Response {
    let pairs = view.query();
    let mut matchers = first(&pairs, "matchers").unwrap_or_default().to_owned();
    let mut back = "/silences".to_owned();
    if let Some(id) = first(&pairs, "alert")
        && let Ok(Some(alert)) = state.store.alert(id).await
    {
        matchers = [
            equals("resource", &alert.resource),
            equals("check", &alert.check),
        ]
        .join("\n");
        back = format!("/alerts/{id}");
    }
    let mut page = BTreeMap::new();
    preview(&state, &matchers, &mut page).await;
    page.insert("matchers", Value::from(matchers));
    page.insert(
        "comment",
        Value::from(first(&pairs, "comment").unwrap_or_default()),
    );
    page.insert("duration", Value::from("2h"));
    page.insert("back", Value::from(back));
    state.console.render("silence_new.html", &view, page)
}

/// `GET /silences/preview?matchers=...`: the preview alone (htmx swaps it in as one types).
pub async fn silence_preview(State(state): State<Arc<AppState>>, view: View) -> Response {
    let pairs = view.query();
    let mut page = BTreeMap::new();
    preview(
        &state,
        first(&pairs, "matchers").unwrap_or_default(),
        &mut page,
    )
    .await;
    state.console.render("silence_preview.html", &view, page)
}

/// `1h`, `2h`, `1d`, `7d`: seconds.
fn duration_secs(text: &str) -> Option<u64> {
    let at = text.len().checked_sub(1)?;
    if !text.is_char_boundary(at) {
        return None;
    }
    let (number, unit) = text.split_at(at);
    let n: u64 = number.parse().ok()?;
    let unit = match unit {
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(unit).filter(|s| *s > 0 && *s <= 366 * 86_400)
}

/// `POST /silences`: create from the form.
pub async fn create_silence(
    State(state): State<Arc<AppState>>,
    Posted { view, form }: Posted,
) -> Response {
    let Some(secs) = form.get("duration").and_then(duration_secs) else {
        return state.console.error(
            &view,
            StatusCode::BAD_REQUEST,
            "duration: give a length such as 2h or 1d (at most a year)",
        );
    };
    let new = crate::http::silences::NewSilence {
        matchers: matcher_lines(form.get("matchers").unwrap_or_default()),
        starts_at: None,
        ends_at: None,
        duration_secs: Some(secs),
        created_by: actor(&view),
        comment: form.get("comment").unwrap_or_default().trim().to_owned(),
    };
    let silence = match crate::http::silences::build(new, Utc::now()) {
        Ok(silence) => silence,
        Err(error) => {
            let detail = error
                .details
                .iter()
                .map(|d| format!("{}: {}", d.field.as_deref().unwrap_or("silence"), d.message))
                .collect::<Vec<_>>()
                .join("; ");
            let message = if detail.is_empty() {
                error.error
            } else {
                detail
            };
            return state.console.error(&view, error.status, message);
        }
    };
    if let Err(error) = crate::http::silences::put(&state, &silence).await {
        return state.console.error(&view, error.status, error.error);
    }
    tracing::info!(silence = %silence.id, by = %silence.created_by, "silence created in the console");
    let back = local_path(form.get("back").or(Some("/silences")));
    see_other(&with_done(&back, "silence", None))
}

/// `POST /silences/{id}/expire`.
pub async fn expire_silence(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Posted { view, .. }: Posted,
) -> Response {
    let found = match state.store.silence(&id).await {
        Ok(found) => found,
        Err(error) => {
            return state
                .console
                .error(&view, StatusCode::SERVICE_UNAVAILABLE, error.to_string());
        }
    };
    let Some(mut silence) = found else {
        return state.console.error(
            &view,
            StatusCode::NOT_FOUND,
            format!("no silence with id {id}"),
        );
    };
    let now = Utc::now();
    if silence.state(now) != SilenceState::Expired {
        silence.expire(now);
        if let Err(error) = crate::http::silences::put(&state, &silence).await {
            return state.console.error(&view, error.status, error.error);
        }
        tracing::info!(silence = %id, by = %actor(&view), "silence expired in the console");
    }
    see_other(&with_done("/silences", "expire", None))
}

/// `GET /lang?to=sv&next=/...`: remembers the language for a year and goes back.
pub async fn switch_language(uri: Uri) -> Response {
    let pairs = query_pairs(&uri);
    let next = local_path(first(&pairs, "next"));
    let mut response = see_other(&next);
    if let Some(lang) = first(&pairs, "to").and_then(i18n::known) {
        let cookie = format!(
            "{}={lang}; Path=/; Max-Age=31536000; SameSite=Lax",
            i18n::LANG_COOKIE
        );
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().insert(header::SET_COOKIE, value);
        }
    }
    response
}

/// `GET /login`: the sign-in form (no script needed).
pub async fn login_page(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let pairs = query_pairs(&uri);
    let view = View::new(&headers, Caller(None), here(&uri), "login");
    let mut page = BTreeMap::new();
    page.insert("next", Value::from(local_path(first(&pairs, "next"))));
    state.console.render("login.html", &view, page)
}

/// `POST /login`: signs in with the form's user and password, then goes to `next`.
pub async fn login(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    connect: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    body: Bytes,
) -> Response {
    let view = View::new(&headers, Caller(None), here(&uri), "login");
    let form = match Form::read(None, &body) {
        Ok(form) => form,
        Err(message) => return state.console.error(&view, StatusCode::BAD_REQUEST, message),
    };
    let next = local_path(form.get("next"));
    let remote = connect.map_or_else(|| "unknown".to_owned(), |c| c.0.0.ip().to_string());
    let opened = state
        .console
        .auth
        .open_session(
            &headers,
            form.get("user").unwrap_or_default(),
            form.get("password").unwrap_or_default(),
            &remote,
        )
        .await;
    match opened {
        Ok((_, cookie)) => {
            let mut response = see_other(&next);
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        Err(error) => {
            let message = if error.status == StatusCode::UNAUTHORIZED {
                state.console.text(&view, "login.failed")
            } else {
                error.error
            };
            let mut page = BTreeMap::new();
            page.insert("next", Value::from(next));
            page.insert("error", Value::from(message));
            let mut response = state.console.render("login.html", &view, page);
            *response.status_mut() = error.status;
            response
        }
    }
}

/// `POST /logout`: ends the session (its CSRF token required) and clears the cookie.
pub async fn logout(State(state): State<Arc<AppState>>, headers: HeaderMap, _: Posted) -> Response {
    state.console.auth.close_session(&headers).await;
    let mut response = see_other("/login");
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(crate::auth::CLEAR_SESSION_COOKIE),
    );
    response.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chips_add_and_remove_their_matcher() {
        let token = equals("service", "bill\"ing");
        assert_eq!(token, r#"service="bill\"ing""#);
        let (added, active) = toggled("disk", &token);
        assert_eq!(added, format!("disk {token}"));
        assert!(!active);
        let (removed, active) = toggled(&added, &token);
        assert_eq!(removed, "disk");
        assert!(active);
        assert!(Filter::parse(&added).is_ok(), "a chip's filter parses");
    }

    #[test]
    fn durations_are_bounded() {
        assert_eq!(duration_secs("2h"), Some(7200));
        assert_eq!(duration_secs("7d"), Some(604_800));
        for bad in [
            "",
            "h",
            "0h",
            "x1h",
            "9999999999999999999d",
            "400d",
            "2w",
            "2ö",
        ] {
            assert_eq!(duration_secs(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn done_is_added_once_to_the_way_back() {
        assert_eq!(with_done("/alerts/1", "ack", None), "/alerts/1?done=ack");
        assert_eq!(
            with_done("/?q=x&done=ack", "resolve", Some(3)),
            "/?q=x&done=resolve&n=3"
        );
    }
}
