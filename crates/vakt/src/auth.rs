//! Access control: who is asking, what each route needs, the browser checks, the audit log.
//!
//! One table, [`ROUTES`], names what every route needs: nothing ([`Need::Public`]), a
//! credential of its own ([`Need::Own`]: the ITSM webhook token, a PagerDuty routing key),
//! any signed-in identity ([`Need::SignedIn`]) or a scope (`verb:resource`, see
//! `vakt_core::access`). The [`guard`] middleware runs on every request after routing:
//!
//! 1. the `Host` must be one of vakt's names (an IP address, `localhost`, the host of
//!    `server.public_url`, or `server.allowed_hosts`): a page on another name cannot reach
//!    vakt through DNS rebinding;
//! 2. a write (POST, PUT, PATCH, DELETE) from a browser must come from vakt's own origin
//!    (`Origin`, `Sec-Fetch-Site`), and a write with a body must be JSON: a cross-site form
//!    or `text/plain` POST cannot act for the operator (CSRF);
//! 3. the identity: `Authorization: Bearer TOKEN`, or HTTP basic auth with a user's password
//!    or with a token as the password (amtool's and Prometheus' `basic_auth`). A credential
//!    that is sent but wrong is refused (401) even where auth is off;
//! 4. the route's need against the identity's scopes: 401 without an identity, 403 without
//!    the scope; the identity goes with the request to the handler ([`Caller`]), so the `by`
//!    of an ack, a silence or a comment is who signed in, not what the body claims;
//! 5. every write through the API goes to the audit log: who, what, when, from where, and
//!    the status it was answered with (ingest is recorded as events, not here).
//!
//! Auth is on unless the operator turns it off: `server.auth = "auto"` (the default) keeps
//! vakt open only on a loopback address while no user has a password and no token exists
//! (a first run), and says so on every response (`X-Vakt-Auth: off`); on any other address
//! vakt refuses to start without a way to sign in unless `server.auth = "none"` is written.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use vakt_store::{AuditEntry, Store, TokenRecord};

use crate::http::ApiError;
use crate::live::Live;
use crate::oncall::Directory;

/// `[server] auth`: whether requests must carry a credential.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Setting {
    /// Required, except on a loopback address while nobody can sign in (a first run).
    #[default]
    Auto,
    /// Always required.
    Required,
    /// Never required: anyone who reaches the port can do everything. Warned about.
    None,
}

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Anyone: health, readiness, the API description, who am I.
    Public,
    /// A credential the route checks itself (the ITSM webhook token, a routing key).
    Own,
    /// Any signed-in identity (the handler checks further: tokens).
    SignedIn,
    /// An identity holding this scope.
    Scope(&'static str),
    /// A console page or form needing this scope: without a credential the browser is sent
    /// to `/login`; forms may be `application/x-www-form-urlencoded` and carry the session's
    /// CSRF token as a field (`console::Form` checks it) instead of a header.
    Page(&'static str),
    /// A console page or form anyone may use (signing in, static files, the language).
    PagePublic,
    /// A console page or form for any signed-in identity (its own tokens).
    PageSignedIn,
}

use Need::{Own, Page, PagePublic, PageSignedIn, Public, Scope, SignedIn};

/// Every route and what it needs. A route missing here is refused (500 "the route has no
/// scope"), and a test walks the OpenAPI document to check that none is missing.
pub const ROUTES: &[(&str, &str, Need)] = &[
    ("GET", "/healthz", Public),
    ("GET", "/readyz", Public),
    ("GET", "/openapi.json", Public),
    ("GET", "/api/v1/whoami", Public),
    ("GET", "/metrics", Scope("read:metrics")),
    ("POST", "/-/reload", Scope("admin:config")),
    ("POST", "/api/v1/events", Scope("ingest:events")),
    ("GET", "/api/v1/events", Scope("read:events")),
    ("GET", "/api/v1/events/{id}", Scope("read:events")),
    ("GET", "/api/v1/alerts", Scope("read:alerts")),
    ("GET", "/api/v1/reports/summary", Scope("read:alerts")),
    ("GET", "/api/v1/reports/tune", Scope("admin:config")),
    ("POST", "/api/v1/replay", Scope("admin:config")),
    ("GET", "/api/v1/alerts/{id}", Scope("read:alerts")),
    ("POST", "/api/v1/alerts/{id}/ack", Scope("write:alerts")),
    ("POST", "/api/v1/alerts/{id}/unack", Scope("write:alerts")),
    ("POST", "/api/v1/alerts/{id}/resolve", Scope("write:alerts")),
    ("POST", "/api/v1/alerts/{id}/comment", Scope("write:alerts")),
    ("POST", "/api/v1/alerts/{id}/assign", Scope("write:alerts")),
    (
        "GET",
        "/api/v1/alerts/{id}/escalation",
        Scope("read:incidents"),
    ),
    ("GET", "/api/v1/actions", Scope("read:actions")),
    ("GET", "/api/v1/actions/{id}", Scope("read:actions")),
    ("POST", "/api/v1/actions/{id}/retry", Scope("write:actions")),
    ("GET", "/api/v1/silences", Scope("read:silences")),
    ("POST", "/api/v1/silences", Scope("write:silences")),
    ("GET", "/api/v1/silences/{id}", Scope("read:silences")),
    ("DELETE", "/api/v1/silences/{id}", Scope("write:silences")),
    ("GET", "/api/v1/incidents", Scope("read:incidents")),
    ("POST", "/api/v1/incidents", Scope("write:incidents")),
    ("GET", "/api/v1/incidents/{id}", Scope("read:incidents")),
    ("PATCH", "/api/v1/incidents/{id}", Scope("write:incidents")),
    (
        "GET",
        "/api/v1/escalation-policies",
        Scope("read:incidents"),
    ),
    ("GET", "/api/v1/escalations", Scope("read:incidents")),
    ("GET", "/api/v1/users", Scope("read:oncall")),
    ("GET", "/api/v1/schedules", Scope("read:oncall")),
    (
        "GET",
        "/api/v1/schedules/{name}/oncall",
        Scope("read:oncall"),
    ),
    (
        "GET",
        "/api/v1/schedules/{name}/shifts",
        Scope("read:oncall"),
    ),
    (
        "GET",
        "/api/v1/schedules/{name}/calendar.ics",
        Scope("read:oncall"),
    ),
    (
        "GET",
        "/api/v1/schedules/{name}/overrides",
        Scope("read:oncall"),
    ),
    (
        "POST",
        "/api/v1/schedules/{name}/overrides",
        Scope("write:schedules"),
    ),
    (
        "DELETE",
        "/api/v1/schedules/{name}/overrides/{id}",
        Scope("write:schedules"),
    ),
    ("GET", "/api/v1/heartbeats", Scope("read:events")),
    ("POST", "/api/v1/heartbeats", Scope("ingest:events")),
    ("GET", "/api/v1/monitors", Scope("read:events")),
    ("POST", "/api/v1/itsm/webhook", Own),
    (
        "POST",
        "/api/v1/integrations/alertmanager",
        Scope("ingest:events"),
    ),
    ("POST", "/v2/enqueue", Own),
    ("GET", "/api/v2/alerts", Scope("read:alerts")),
    ("POST", "/api/v2/alerts", Scope("ingest:events")),
    ("GET", "/api/v2/alerts/groups", Scope("read:alerts")),
    ("GET", "/api/v2/silences", Scope("read:silences")),
    ("POST", "/api/v2/silences", Scope("write:silences")),
    ("GET", "/api/v2/silence/{id}", Scope("read:silences")),
    ("DELETE", "/api/v2/silence/{id}", Scope("write:silences")),
    ("GET", "/api/v2/status", Scope("read:alerts")),
    ("GET", "/api/v2/receivers", Scope("read:alerts")),
    ("GET", "/api/v1/tokens", SignedIn),
    ("POST", "/api/v1/tokens", SignedIn),
    ("DELETE", "/api/v1/tokens/{id}", SignedIn),
    ("GET", "/api/v1/audit", Scope("read:audit")),
    ("GET", "/api/v1/session", SignedIn),
    ("POST", "/api/v1/session", Public),
    ("DELETE", "/api/v1/session", Public),
    // The console (docs/console.md).
    ("GET", "/", Page("read:alerts")),
    ("GET", "/alerts/{id}", Page("read:alerts")),
    ("POST", "/alerts/{id}/{op}", Page("write:alerts")),
    ("POST", "/bulk", Page("write:alerts")),
    ("GET", "/silences", Page("read:silences")),
    ("POST", "/silences", Page("write:silences")),
    ("GET", "/silences/new", Page("read:silences")),
    ("GET", "/silences/preview", Page("read:alerts")),
    ("POST", "/silences/{id}/expire", Page("write:silences")),
    ("GET", "/incidents", Page("read:incidents")),
    ("GET", "/incidents/{id}", Page("read:incidents")),
    ("POST", "/incidents/{id}", Page("write:incidents")),
    ("GET", "/oncall", Page("read:oncall")),
    ("POST", "/oncall/{name}/overrides", Page("write:schedules")),
    ("GET", "/monitors", Page("read:events")),
    ("GET", "/reports", Page("read:alerts")),
    ("GET", "/reports/replay", Page("admin:config")),
    ("POST", "/reports/replay", Page("admin:config")),
    ("GET", "/reports/tune", Page("admin:config")),
    ("GET", "/rules", Page("read:alerts")),
    ("GET", "/tokens", PageSignedIn),
    ("POST", "/tokens", PageSignedIn),
    ("POST", "/tokens/{id}/revoke", PageSignedIn),
    ("GET", "/console/stream", Page("read:alerts")),
    ("GET", "/lang", PagePublic),
    ("GET", "/login", PagePublic),
    ("POST", "/login", PagePublic),
    ("POST", "/logout", PagePublic),
    ("GET", "/static/{file}", PagePublic),
];

/// What `method path` needs (`path` as routed: `/api/v1/alerts/{id}`); `None` for a route
/// missing from [`ROUTES`]. HEAD needs what GET needs.
pub fn need(method: &Method, path: &str) -> Option<Need> {
    let method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    ROUTES
        .iter()
        .find(|(m, p, _)| *m == method && *p == path)
        .map(|(_, _, need)| *need)
}

/// How an identity signed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    Password,
    Token,
    /// A TLS client certificate signed by `server.tls_client_ca`.
    Certificate,
    /// A console session (a cookie from signing in with a password).
    Session,
}

/// The common name of the verified TLS client certificate the connection showed.
#[derive(Debug, Clone)]
pub struct ClientCertificate(pub String);

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Identity {
    /// The user, or a token's owner: what `by` records.
    pub name: String,
    pub via: Via,
    /// The token's name when signed in with a token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    pub scopes: Vec<String>,
    /// The CSRF token a session's writes must carry (`X-CSRF-Token`).
    #[serde(skip)]
    pub csrf: Option<String>,
}

impl Identity {
    pub fn has(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// How the audit log names it: `alice`, or `alice (token deploy-bot)`.
    fn actor(&self) -> String {
        match &self.token {
            Some(token) => format!("{} (token {token})", self.name),
            None => self.name.clone(),
        }
    }
}

/// The identity a request signed in with, for handlers: `None` where auth is off and the
/// request carried no credential.
#[derive(Debug, Clone, Default)]
pub struct Caller(pub Option<Identity>);

impl Caller {
    /// Records the identity as the sender of each event (the normalise stage's trace).
    pub fn sign(&self, inputs: &mut [vakt_core::EventInput]) {
        if let Some(identity) = &self.0 {
            let sender = identity.actor();
            for input in inputs {
                input.sender = Some(sender.clone());
            }
        }
    }

    /// Who did it: the signed-in identity; where auth is off, what the request says
    /// (`claimed`, trimmed).
    pub fn by(&self, claimed: &str) -> String {
        match &self.0 {
            Some(identity) => identity.name.clone(),
            None => claimed.trim().to_owned(),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Caller(parts.extensions.get::<Identity>().cloned()))
    }
}

/// `[server]` settings access control reads.
#[derive(Debug, Clone)]
pub struct Settings {
    pub setting: Setting,
    /// The address vakt listens on.
    pub listen: Option<SocketAddr>,
    /// `server.public_url`: the URL people and browsers reach vakt at.
    pub public_url: Option<String>,
    /// `server.allowed_hosts`: more names vakt answers to.
    pub allowed_hosts: Vec<String>,
    /// A console session ends after this long without a request...
    pub session_idle: Duration,
    /// ...and after this long in any case.
    pub session_max: Duration,
    /// Whether the session cookie is `Secure` (vakt serves HTTPS).
    pub secure_cookies: bool,
}

/// How long a live-token count is trusted while auth is automatic (a first token created
/// with the CLI turns auth on within this time).
const OPEN_CHECK_EVERY: Duration = Duration::from_secs(2);
/// How long a verified password is remembered (argon2 is slow on purpose; amtool and
/// Prometheus send basic auth with every request).
const PASSWORD_CACHE_FOR: Duration = Duration::from_secs(300);
/// Failed sign-ins per address or user within [`FAILURE_WINDOW`] before 429.
const FAILURES_MAX: u32 = 10;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Entries the in-memory caches hold at most (then they start over).
const CACHE_ENTRIES_MAX: usize = 10_000;
/// How often a token's `last_used_at` is written at most.
const TOUCH_EVERY: Duration = Duration::from_secs(60);
/// How long a token read from the store is kept in memory at most, where the store says when
/// tokens change (`Store::access_generation`, SQLite): a creation or revocation, by this
/// process or the CLI, empties it at once; this bound is for a signal that could not be
/// written. Reading the token for every request cost as much CPU as storing its alerts
/// (a hop to one of SQLite's reader threads and back; BENCHMARKS.md, issue 18).
const TOKEN_KEEP_FOR: Duration = Duration::from_secs(2);
/// The audit log's actor for requests without a credential (where auth is off).
const ANONYMOUS: &str = "anonymous";
/// How much of a refused request's body is read before the answer, at most, and for how
/// long.
const REFUSED_BODY_BYTES_MAX: usize = 1 << 20;
const REFUSED_BODY_WAIT: Duration = Duration::from_secs(2);
/// The prefix every vakt token starts with (so it is recognised as a password, in logs
/// and by secret scanners).
pub const TOKEN_PREFIX: &str = "vakt_";

/// The guard's state.
pub struct Auth {
    store: Arc<dyn Store>,
    directory: Live<Directory>,
    settings: Settings,
    /// The host of `public_url`, and its origin (`https://vakt.example.com`).
    public_host: Option<String>,
    public_origin: Option<String>,
    open_checked: Mutex<Option<(Instant, bool)>>,
    passwords: Mutex<HashMap<[u8; 32], (String, Instant)>>,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
    touched: Mutex<HashMap<String, Instant>>,
    /// Tokens read from the store (`TOKEN_KEEP_FOR`).
    tokens: Mutex<KeptTokens>,
}

/// Tokens read from the store while its access generation was `generation`, by hash, each
/// with when it was read.
#[derive(Default)]
struct KeptTokens {
    generation: Option<(u64, u64)>,
    by_hash: HashMap<String, (Arc<TokenRecord>, Instant)>,
}

fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Auth {
    pub fn new(store: Arc<dyn Store>, directory: Live<Directory>, settings: Settings) -> Auth {
        let public = settings
            .public_url
            .as_deref()
            .and_then(|url| reqwest::Url::parse(url).ok());
        Auth {
            public_host: public.as_ref().and_then(|u| {
                u.host_str()
                    .map(|h| h.trim_matches(['[', ']']).to_ascii_lowercase())
            }),
            public_origin: public.map(|u| u.origin().ascii_serialization()),
            store,
            directory,
            settings,
            open_checked: Mutex::new(None),
            passwords: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            touched: Mutex::new(HashMap::new()),
            tokens: Mutex::new(KeptTokens::default()),
        }
    }

    fn loopback(&self) -> bool {
        self.settings.listen.is_some_and(|a| a.ip().is_loopback())
    }

    fn anyone_can_sign_in_with_a_password(&self) -> bool {
        self.directory
            .get()
            .users
            .iter()
            .any(|u| u.password_hash.is_some())
    }

    /// Whether requests without a credential are let through.
    pub async fn is_open(&self) -> bool {
        match self.settings.setting {
            Setting::None => true,
            Setting::Required => false,
            Setting::Auto => {
                if !self.loopback() || self.anyone_can_sign_in_with_a_password() {
                    return false;
                }
                if let Some((at, open)) = *locked(&self.open_checked)
                    && at.elapsed() < OPEN_CHECK_EVERY
                {
                    return open;
                }
                // A store that cannot answer keeps vakt closed.
                let tokens = self.store.live_tokens(chrono::Utc::now()).await;
                let passwords = self.store.password_users().await;
                let open =
                    tokens.is_ok_and(|n| n == 0) && passwords.is_ok_and(|users| users.is_empty());
                *locked(&self.open_checked) = Some((Instant::now(), open));
                open
            }
        }
    }

    /// Checks at start: on a non-loopback address, someone must be able to sign in unless
    /// auth is explicitly off. Returns the line to log.
    pub async fn check_start(&self) -> Result<String, String> {
        let listen = self
            .settings
            .listen
            .map_or_else(|| "?".to_owned(), |a| a.to_string());
        match self.settings.setting {
            Setting::None => Ok(format!(
                "AUTH IS OFF (server.auth = \"none\"): anyone who reaches {listen} can read and change everything"
            )),
            setting => {
                let tokens = self
                    .store
                    .live_tokens(chrono::Utc::now())
                    .await
                    .map_err(|e| format!("cannot count the API tokens: {e}"))?;
                let mut with_password: Vec<String> = self
                    .directory
                    .get()
                    .users
                    .iter()
                    .filter(|u| u.password_hash.is_some())
                    .map(|u| u.id.clone())
                    .collect();
                with_password.extend(
                    self.store
                        .password_users()
                        .await
                        .map_err(|e| format!("cannot read the stored passwords: {e}"))?,
                );
                with_password.sort();
                with_password.dedup();
                if tokens > 0 || !with_password.is_empty() {
                    Ok(format!(
                        "auth is on: {tokens} API token(s), {} user(s) with a password",
                        with_password.len()
                    ))
                } else if setting == Setting::Auto && self.loopback() {
                    Ok(format!(
                        "auth is off on {listen} until the first API token or user password exists \
                         (vakt token create --name admin --role admin); every answer says X-Vakt-Auth: off"
                    ))
                } else {
                    Err(format!(
                        "vakt listens on {listen} and nobody can sign in: create a token first \
                         (vakt token create --name admin --role admin) or give a [[users]] entry a \
                         password_hash (vakt user hash); to run without auth write server.auth = \"none\" \
                         (anyone who reaches the port can then do everything)"
                    ))
                }
            }
        }
    }

    /// Is `host` (a Host header) one of vakt's names?
    fn host_allowed(&self, host: &str) -> bool {
        let name = host_name(host);
        if name.parse::<IpAddr>().is_ok() || name == "localhost" {
            return true;
        }
        if self.public_host.as_deref() == Some(name.as_str()) {
            return true;
        }
        self.settings
            .allowed_hosts
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(&name))
    }

    /// Is a write from this `origin` vakt's own (same host, or `public_url`'s origin)?
    fn origin_allowed(&self, origin: &str, host: Option<&str>) -> bool {
        if self.public_origin.as_deref() == Some(origin) {
            return true;
        }
        let Ok(url) = reqwest::Url::parse(origin) else {
            return false;
        };
        let Some(host) = host else {
            return false;
        };
        let origin_host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            _ => return false,
        };
        origin_host.eq_ignore_ascii_case(host)
    }

    /// Counts a failed sign-in; `true` when `key` has failed too often of late.
    fn failed(&self, key: &str) {
        let mut failures = locked(&self.failures);
        if failures.len() >= CACHE_ENTRIES_MAX {
            failures.clear();
        }
        let entry = failures
            .entry(key.to_owned())
            .or_insert((0, Instant::now()));
        if entry.1.elapsed() > FAILURE_WINDOW {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }

    fn throttled(&self, key: &str) -> bool {
        locked(&self.failures)
            .get(key)
            .is_some_and(|(n, at)| *n >= FAILURES_MAX && at.elapsed() <= FAILURE_WINDOW)
    }

    /// The identity of a token, or why it cannot be used.
    async fn token(&self, token: &str) -> Result<Identity, ApiError> {
        let hash = token_hash(token);
        let record = self.token_record(hash).await?;
        let now = chrono::Utc::now();
        if record.revoked_at.is_some() {
            return Err(ApiError::unauthorized(format!(
                "the token {:?} was revoked",
                record.name
            )));
        }
        if record.expires_at.is_some_and(|at| at <= now) {
            return Err(ApiError::unauthorized(format!(
                "the token {:?} expired",
                record.name
            )));
        }
        if self.use_due(format!("token {}", record.id), TOUCH_EVERY)
            && let Err(error) = self.store.touch_token(&record.id, now).await
        {
            tracing::warn!(%error, token = %record.name, "cannot note the token's use");
        }
        Ok(Identity {
            name: record.owner.clone(),
            via: Via::Token,
            token: Some(record.name.clone()),
            scopes: record.scopes.clone(),
            csrf: None,
        })
    }

    /// The stored token with this hash: kept in memory while the store's access generation
    /// is unchanged (and `TOKEN_KEEP_FOR` at most), read again otherwise. Unknown tokens are
    /// not kept: each try reads the store (and counts as a failure).
    async fn token_record(&self, hash: String) -> Result<Arc<TokenRecord>, ApiError> {
        let generation = self.store.access_generation();
        if generation.is_some() {
            let kept = locked(&self.tokens);
            if kept.generation == generation
                && let Some((record, read_at)) = kept.by_hash.get(&hash)
                && read_at.elapsed() < TOKEN_KEEP_FOR
            {
                return Ok(Arc::clone(record));
            }
        }
        let record = Arc::new(
            self.store
                .token_by_hash(&hash)
                .await
                .map_err(|e| ApiError::internal("reading an API token", e))?
                .ok_or_else(|| ApiError::unauthorized("the token is not known"))?,
        );
        if generation.is_some() {
            // Read after `generation` was: a change since then moves it again.
            let mut kept = locked(&self.tokens);
            if kept.generation != generation || kept.by_hash.len() >= CACHE_ENTRIES_MAX {
                kept.generation = generation;
                kept.by_hash.clear();
            }
            kept.by_hash
                .insert(hash, (Arc::clone(&record), Instant::now()));
        }
        Ok(record)
    }

    /// Whether the use of `key` (a token, a session) is due to be written: the first time,
    /// and then once `every` has passed since the last write.
    fn use_due(&self, key: String, every: Duration) -> bool {
        let mut touched = locked(&self.touched);
        if touched.len() >= CACHE_ENTRIES_MAX {
            touched.clear();
        }
        let due = touched.get(&key).is_none_or(|at| at.elapsed() >= every);
        if due {
            touched.insert(key, Instant::now());
        }
        due
    }

    /// How often a session's last use is written at most: a minute, or a quarter of the
    /// idle limit when that is shorter (an active session must not look idle).
    fn session_touch_every(&self) -> Duration {
        (self.settings.session_idle / 4).min(Duration::from_secs(60))
    }

    /// The identity of a console session (its cookie's value), or why it cannot be used.
    async fn session(&self, cookie: &str) -> Result<Identity, ApiError> {
        let hash = token_hash(cookie);
        let record = self
            .store
            .session(&hash)
            .await
            .map_err(|e| ApiError::internal("reading a session", e))?
            .ok_or_else(|| ApiError::unauthorized("the session ended; sign in again"))?;
        let now = chrono::Utc::now();
        let idle =
            chrono::Duration::from_std(self.settings.session_idle).unwrap_or(chrono::Duration::MAX);
        if record.expires_at <= now || now - record.last_seen_at > idle {
            let _ = self.store.end_session(&hash).await;
            return Err(ApiError::unauthorized("the session ended; sign in again"));
        }
        let directory = self.directory.get();
        let Some(user) = directory.users.iter().find(|u| u.id == record.user) else {
            return Err(ApiError::unauthorized(
                "the session's user can no longer sign in",
            ));
        };
        if self.use_due(format!("session {hash}"), self.session_touch_every())
            && let Err(error) = self.store.touch_session(&hash, now).await
        {
            tracing::warn!(%error, "cannot note the session's use");
        }
        Ok(Identity {
            name: user.id.clone(),
            via: Via::Session,
            token: None,
            scopes: role_of(user),
            csrf: Some(record.csrf),
        })
    }

    /// The identity of a user's password.
    async fn password(&self, user: &str, password: &str) -> Result<Identity, ApiError> {
        let directory = self.directory.get();
        let found = directory.users.iter().find(|u| u.id == user);
        // A password set with `vakt user passwd` wins over the configuration's.
        let stored = match found {
            Some(_) => self
                .store
                .password(user)
                .await
                .map_err(|e| ApiError::internal("reading a password", e))?,
            None => None,
        };
        let hash = stored.or_else(|| found.and_then(|u| u.password_hash.clone()));
        let (Some(found), Some(hash)) = (found, hash) else {
            // As slow as a wrong password, so that the answer's timing does not tell which
            // user names exist.
            let password = password.to_owned();
            let _ = tokio::task::spawn_blocking(move || {
                verify_password(&password, dummy_hash());
            })
            .await;
            return Err(ApiError::unauthorized(
                "wrong user name or password (or the user has no password_hash)",
            ));
        };
        let scopes = role_of(found);
        let identity = Identity {
            name: user.to_owned(),
            via: Via::Password,
            token: None,
            scopes,
            csrf: None,
        };
        let key: [u8; 32] =
            Sha256::digest(format!("{user}\u{0}{password}\u{0}{hash}").as_bytes()).into();
        if let Some((cached, at)) = locked(&self.passwords).get(&key)
            && cached == user
            && at.elapsed() < PASSWORD_CACHE_FOR
        {
            return Ok(identity);
        }
        let password = password.to_owned();
        let verified = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
            .await
            .unwrap_or(false);
        if !verified {
            return Err(ApiError::unauthorized(
                "wrong user name or password (or the user has no password_hash)",
            ));
        }
        let mut passwords = locked(&self.passwords);
        if passwords.len() >= CACHE_ENTRIES_MAX {
            passwords.clear();
        }
        passwords.insert(key, (user.to_owned(), Instant::now()));
        Ok(identity)
    }

    /// The identity the request's `Authorization` header names, or else its connection's
    /// client certificate (an ingest identity); `Ok(None)` without either.
    async fn identify(
        &self,
        headers: &HeaderMap,
        remote: Remote,
        certificate: Option<&ClientCertificate>,
    ) -> Result<Option<Identity>, ApiError> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            if let Some(session) = session_cookie(headers) {
                return self.session(session).await.map(Some);
            }
            return Ok(certificate.map(|c| Identity {
                name: c.0.clone(),
                via: Via::Certificate,
                token: None,
                scopes: vec!["ingest:events".to_owned()],
                csrf: None,
            }));
        };
        let value = value
            .to_str()
            .map_err(|_| ApiError::unauthorized("the Authorization header is not text"))?;
        let (kind, credential) = value.split_once(' ').unwrap_or((value, ""));
        let credential = credential.trim();
        if kind.eq_ignore_ascii_case("bearer") {
            return self.token(credential).await.map(Some);
        }
        if !kind.eq_ignore_ascii_case("basic") {
            return Err(ApiError::unauthorized(format!(
                "Authorization {kind:?} is not understood: send Bearer TOKEN or Basic"
            )));
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(credential)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| {
                ApiError::unauthorized("the basic auth credential is not base64 of user:password")
            })?;
        let (user, password) = decoded.split_once(':').ok_or_else(|| {
            ApiError::unauthorized("the basic auth credential is not base64 of user:password")
        })?;
        // A token as the password (Prometheus' and amtool's basic_auth, any user name).
        if password.starts_with(TOKEN_PREFIX) {
            return self.token(password).await.map(Some);
        }
        self.sign_in(user, password, &remote.to_string())
            .await
            .map(Some)
    }

    /// A user's password checked under the sign-in limits (basic auth and the console's
    /// sign-in alike): 429 while the address or the user failed too often of late; a failure
    /// counts against both.
    async fn sign_in(
        &self,
        user: &str,
        password: &str,
        remote: &str,
    ) -> Result<Identity, ApiError> {
        let address_key = format!("address {remote}");
        let user_key = format!("user {user}");
        if self.throttled(&address_key) || self.throttled(&user_key) {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too many failed sign-ins; wait a minute",
            ));
        }
        let checked = self.password(user, password).await;
        if checked.is_err() {
            self.failed(&address_key);
            self.failed(&user_key);
            tracing::info!(user, remote, "failed sign-in");
        }
        checked
    }

    /// Records a write in the audit log (failing to is logged, not fatal to the request).
    async fn audit(
        &self,
        actor: String,
        method: &Method,
        path: &str,
        status: StatusCode,
        remote: String,
        detail: Option<String>,
    ) {
        let entry = AuditEntry {
            id: ulid::Ulid::new().to_string(),
            at: chrono::Utc::now(),
            actor,
            method: method.to_string(),
            path: path.to_owned(),
            status: i64::from(status.as_u16()),
            remote: Some(remote),
            detail,
        };
        if let Err(error) = self.store.audit(&entry).await {
            tracing::error!(%error, path, "cannot write the audit log");
        }
    }
}

/// The scopes of a user's role (`responder` when none is configured).
fn role_of(user: &vakt_core::oncall::UserConfig) -> Vec<String> {
    let role = user.role.as_deref().unwrap_or("responder");
    vakt_core::access::role_scopes(role)
        .unwrap_or_default()
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}

/// The console session cookie.
pub const SESSION_COOKIE: &str = "vakt_session";

/// The value of the session cookie, if the request carries one.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
}

/// The name part of a Host header (`[::1]:8470` -> `::1`, `Vakt.example:80` -> `vakt.example`).
fn host_name(host: &str) -> String {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        host.rsplit_once(':')
            .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
            .map_or(host, |(name, _)| name)
    };
    name.to_ascii_lowercase()
}

fn is_write(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The body's media type without its parameters (`application/json; charset=utf-8` ->
/// `application/json`), as sent: compare it in any case.
fn media_type(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next().unwrap_or_default().trim())
}

/// Whether the body is an HTML form's (console routes only).
fn form_content_type(headers: &HeaderMap) -> bool {
    media_type(headers).is_some_and(|m| m.eq_ignore_ascii_case("application/x-www-form-urlencoded"))
}

/// Whether a write's content type is one vakt reads: JSON (`application/json` or any
/// `application/...+json`), or NDJSON for event streams; in any case, parameters ignored.
fn json_content_type(headers: &HeaderMap) -> bool {
    let Some(essence) = media_type(headers) else {
        return false;
    };
    let (kind, suffix) = (b"application/", b"+json");
    let bytes = essence.as_bytes();
    essence.eq_ignore_ascii_case("application/json")
        || essence.eq_ignore_ascii_case("application/x-ndjson")
        || (bytes.len() >= kind.len() + suffix.len()
            && bytes[..kind.len()].eq_ignore_ascii_case(kind)
            && bytes[bytes.len() - suffix.len()..].eq_ignore_ascii_case(suffix))
}

fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

/// The middleware: see the module's documentation for the steps.
pub async fn guard(State(auth): State<Arc<Auth>>, mut request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let path = matched.as_ref().map(MatchedPath::as_str);
    let remote = Remote(
        request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip()),
    );
    let open = auth.is_open().await;
    // Whoever signed in (`None`: anonymous); a name is made only when there is someone.
    let mut actor = None;
    let admitted = admit(&auth, &mut request, path, remote, open, &mut actor).await;
    let refused = admitted.is_err();
    let need = match &admitted {
        Ok(need) => Some(*need),
        Err(refusal) => refusal.1,
    };
    // Every write to a known route, admitted or refused, by whoever signed in; ingest is
    // recorded as events. Requests refused before anyone signed in are logged, not stored:
    // anyone who reaches the port could otherwise make the database write at their rate.
    let audited =
        is_write(&method) && need.is_some_and(|need| !matches!(need, Own | Scope("ingest:events")));
    let detail = if audited {
        request.uri().query().map(str::to_owned)
    } else {
        None
    };
    let mut response = match admitted {
        Ok(_) => next.run(request).await,
        Err(refused) => {
            // Read what the client is still sending (bounded) before answering: an HTTP/2
            // stream answered mid-body is reset, and clients then miss the answer.
            if has_body(request.headers()) {
                let body = request.into_body();
                let _ = tokio::time::timeout(
                    REFUSED_BODY_WAIT,
                    axum::body::to_bytes(body, REFUSED_BODY_BYTES_MAX),
                )
                .await;
            }
            refused.0
        }
    };
    if open {
        response
            .headers_mut()
            .insert(X_VAKT_AUTH, HeaderValue::from_static("off"));
    }
    if let (true, Some(path)) = (audited, path) {
        let status = response.status();
        match actor {
            None if refused => {
                tracing::info!(%method, path, %status, %remote, "refused a write without a credential");
            }
            actor => {
                let actor = actor.unwrap_or_else(|| ANONYMOUS.to_owned());
                auth.audit(actor, &method, path, status, remote.to_string(), detail)
                    .await;
            }
        }
    }
    response
}

/// `x-vakt-auth: off` on every answer while access control is off.
const X_VAKT_AUTH: header::HeaderName = header::HeaderName::from_static("x-vakt-auth");
const SEC_FETCH_SITE: header::HeaderName = header::HeaderName::from_static("sec-fetch-site");
const X_CSRF_TOKEN: header::HeaderName = header::HeaderName::from_static("x-csrf-token");

/// The client's address, written out only when something records it.
#[derive(Debug, Clone, Copy)]
struct Remote(Option<std::net::IpAddr>);

impl std::fmt::Display for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(ip) => ip.fmt(f),
            None => f.write_str("unknown"),
        }
    }
}

/// Steps 1 to 4 of the guard: `Ok` with the route's need when the request may go on (its
/// identity attached), or the refusal (with the need, when the route is known). `actor` is
/// set to whoever signed in.
async fn admit(
    auth: &Auth,
    request: &mut Request,
    path: Option<&str>,
    remote: Remote,
    open: bool,
    actor: &mut Option<String>,
) -> Result<Need, Box<(Response, Option<Need>)>> {
    let method = request.method().clone();
    let need = match path {
        Some(path) => need(&method, path),
        // No route matched: the fallback answers 404.
        None => Some(Public),
    };
    let refuse = |error: ApiError| Err(Box::new((with_challenge(error.into_response()), need)));
    let headers = request.headers();
    // HTTP/2 carries the host in the request's authority, not in a Host header.
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|a| a.as_str().to_owned()));
    if let Some(host) = &host
        && !auth.host_allowed(host)
    {
        return refuse(ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "vakt does not answer to the host name {:?}: add it to server.allowed_hosts or set server.public_url (a page on another name must not reach vakt: DNS rebinding)",
                host_name(host)
            ),
        ));
    }
    if is_write(&method) {
        let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
        if let Some(origin) = origin
            && !auth.origin_allowed(origin, host.as_deref())
        {
            return refuse(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "a write from the web origin {origin:?} is refused: only vakt's own pages (server.public_url) may write (CSRF protection)"
                ),
            ));
        }
        if headers
            .get(SEC_FETCH_SITE)
            .is_some_and(|v| v.as_bytes() == b"cross-site")
        {
            return refuse(ApiError::new(
                StatusCode::FORBIDDEN,
                "a cross-site write from a browser is refused (CSRF protection)",
            ));
        }
        let page = matches!(need, Some(Page(_) | PagePublic | PageSignedIn));
        if has_body(headers) && !json_content_type(headers) && !(page && form_content_type(headers))
        {
            let got = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("none");
            return refuse(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "a write's body must be Content-Type: application/json (got {got:?}); forms and text/plain are refused so that other web pages cannot act for you"
                ),
            ));
        }
    }
    // A route with a credential of its own reads its Authorization header itself.
    let identity = if need == Some(Own) {
        None
    } else {
        let certificate = request.extensions().get::<ClientCertificate>();
        match auth.identify(request.headers(), remote, certificate).await {
            Ok(identity) => identity,
            Err(error) => return refuse(error),
        }
    };
    if let Some(identity) = &identity {
        *actor = Some(identity.actor());
        if is_write(&method)
            && let Some(csrf) = &identity.csrf
            && request
                .headers()
                .get(X_CSRF_TOKEN)
                .is_none_or(|sent| sent.as_bytes() != csrf.as_bytes())
            && path != Some("/api/v1/session")
            && !matches!(need, Some(Page(_) | PagePublic | PageSignedIn))
        {
            return refuse(ApiError::new(
                StatusCode::FORBIDDEN,
                "a write signed in with the session cookie needs its X-CSRF-Token header (GET /api/v1/session gives it)",
            ));
        }
    }
    let Some(need) = need else {
        return refuse(ApiError::internal(
            "route without a scope",
            format!(
                "{method} {} is missing from auth::ROUTES",
                path.unwrap_or("?")
            ),
        ));
    };
    match (need, &identity) {
        (Public | Own | PagePublic, _) => {}
        (Page(_) | PageSignedIn, None) if !open => {
            // A person at a browser: to the sign-in page, and back here afterwards.
            let here = request
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned();
            let target = format!(
                "/login?next={}",
                serde_urlencoded::to_string([("", here.as_str())])
                    .unwrap_or_default()
                    .trim_start_matches('=')
            );
            let mut response = StatusCode::SEE_OTHER.into_response();
            if let Ok(value) = HeaderValue::from_str(&target) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            return Err(Box::new((response, Some(need))));
        }
        (Page(scope), Some(identity)) if !identity.has(scope) => {
            return refuse(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "{} may not do this: it needs the scope {scope}",
                    identity.actor()
                ),
            ));
        }
        (SignedIn | Scope(_), None) if !open => {
            return refuse(ApiError::unauthorized(
                "sign in: send Authorization: Bearer TOKEN (vakt token create), or basic auth with a user's password",
            ));
        }
        (Scope(scope), Some(identity)) if !identity.has(scope) => {
            return refuse(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "{} may not do this: it needs the scope {scope} ({} has: {})",
                    identity.actor(),
                    identity.name,
                    identity.scopes.join(" ")
                ),
            ));
        }
        _ => {}
    }
    if let Some(identity) = identity {
        request.extensions_mut().insert(identity);
    }
    Ok(need)
}

/// `/api/v1/whoami`, `/api/v1/tokens` and `/api/v1/audit`.
pub fn routes<S: Clone + Send + Sync + 'static>(
    auth: Arc<Auth>,
) -> utoipa_axum::router::OpenApiRouter<S> {
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::new()
        .routes(routes!(whoami))
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
        .routes(routes!(audit_log))
        .routes(routes!(current_session, sign_in, sign_out))
        .with_state(auth)
}

/// Signing in to the console.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    pub user: String,
    pub password: String,
}

/// A console session, as its pages see it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionView {
    pub user: String,
    pub scopes: Vec<String>,
    /// Send it as `X-CSRF-Token` with every write.
    pub csrf_token: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// 256 random bits in hex.
fn random_hex() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no random numbers: {e}"))?;
    Ok(hex::encode(bytes))
}

impl Auth {
    /// Signs a user in with a password: a new session (any session the browser held
    /// ends: rotation), its view, and the `Set-Cookie` value (`HttpOnly`, `SameSite=Lax`,
    /// `Secure` over HTTPS). Used by the API and the console's sign-in form.
    pub async fn open_session(
        &self,
        headers: &HeaderMap,
        user: &str,
        password: &str,
        remote: &str,
    ) -> Result<(SessionView, String), ApiError> {
        let identity = self.sign_in(user, password, remote).await?;
        // Rotation: the session the browser came with (if any) ends; a new one begins.
        if let Some(old) = session_cookie(headers) {
            let _ = self.store.end_session(&token_hash(old)).await;
        }
        let now = chrono::Utc::now();
        let random = || random_hex().map_err(|e| ApiError::internal("making a session", e));
        let cookie = random()?;
        let csrf = random()?;
        let max = chrono::Duration::from_std(self.settings.session_max)
            .unwrap_or(chrono::Duration::days(7));
        let record = vakt_store::SessionRecord {
            hash: token_hash(&cookie),
            user: identity.name.clone(),
            csrf: csrf.clone(),
            created_at: now,
            last_seen_at: now,
            expires_at: now + max,
            remote: Some(remote.to_owned()),
        };
        self.store
            .put_session(&record, now)
            .await
            .map_err(|e| ApiError::internal("storing a session", e))?;
        tracing::info!(user = %identity.name, remote, "signed in");
        let set_cookie = format!(
            "{SESSION_COOKIE}={cookie}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{}",
            self.settings.session_max.as_secs(),
            if self.settings.secure_cookies {
                "; Secure"
            } else {
                ""
            }
        );
        let view = SessionView {
            user: identity.name,
            scopes: identity.scopes,
            csrf_token: csrf,
            expires_at: record.expires_at,
        };
        Ok((view, set_cookie))
    }

    /// Ends the session the request carries, if any.
    pub async fn close_session(&self, headers: &HeaderMap) {
        if let Some(cookie) = session_cookie(headers) {
            let _ = self.store.end_session(&token_hash(cookie)).await;
        }
    }
}

/// The `Set-Cookie` value that clears the session cookie.
pub const CLEAR_SESSION_COOKIE: &str = "vakt_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0";

/// Sign in with a user's password: a new session (any session the browser held ends),
/// its cookie (`HttpOnly`, `SameSite=Lax`, `Secure` over HTTPS) and its CSRF token.
#[utoipa::path(post, path = "/api/v1/session", tag = "access", request_body = SignIn,
    responses((status = 201, body = SessionView), (status = 401, body = crate::http::ErrorBody), (status = 429, body = crate::http::ErrorBody)))]
pub async fn sign_in(
    State(auth): State<Arc<Auth>>,
    headers: HeaderMap,
    connect: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let asked: SignIn = crate::http::parse_json(&body)?;
    let remote = connect.map_or_else(|| "unknown".to_owned(), |c| c.0.0.ip().to_string());
    let (view, set_cookie) = auth
        .open_session(&headers, &asked.user, &asked.password, &remote)
        .await?;
    let mut response = (StatusCode::CREATED, axum::Json(view)).into_response();
    if let Ok(value) = HeaderValue::from_str(&set_cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The session this request signed in with (its CSRF token for the page's writes).
#[utoipa::path(get, path = "/api/v1/session", tag = "access",
    responses((status = 200, body = SessionView), (status = 404, body = crate::http::ErrorBody)))]
pub async fn current_session(
    State(auth): State<Arc<Auth>>,
    headers: HeaderMap,
    caller: Caller,
) -> Result<axum::Json<SessionView>, ApiError> {
    let (Some(identity), Some(cookie)) = (caller.0, session_cookie(&headers)) else {
        return Err(ApiError::not_found(
            "this request is not signed in with a session",
        ));
    };
    let record = auth
        .store
        .session(&token_hash(cookie))
        .await
        .map_err(|e| ApiError::internal("reading a session", e))?
        .ok_or_else(|| ApiError::not_found("the session ended"))?;
    Ok(axum::Json(SessionView {
        user: identity.name,
        scopes: identity.scopes,
        csrf_token: record.csrf,
        expires_at: record.expires_at,
    }))
}

/// Sign out: the session ends and its cookie is cleared.
#[utoipa::path(delete, path = "/api/v1/session", tag = "access", responses((status = 204)))]
pub async fn sign_out(State(auth): State<Arc<Auth>>, headers: HeaderMap) -> Response {
    auth.close_session(&headers).await;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(CLEAR_SESSION_COOKIE),
    );
    response
}

/// Who the request signed in as.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WhoAmI {
    /// `None` when the request carried no credential.
    pub identity: Option<Identity>,
    /// Whether requests without a credential are let through (auth off).
    pub auth_off: bool,
}

/// Who am I: the identity this request signed in as, and whether auth is off.
#[utoipa::path(get, path = "/api/v1/whoami", tag = "access", responses((status = 200, body = WhoAmI)))]
pub async fn whoami(State(auth): State<Arc<Auth>>, caller: Caller) -> axum::Json<WhoAmI> {
    axum::Json(WhoAmI {
        identity: caller.0,
        auth_off: auth.is_open().await,
    })
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenPage {
    pub items: Vec<TokenRecord>,
}

/// The caller's scopes, and whether it may manage every token (`admin:tokens`, or auth off
/// without a credential).
fn token_rights(caller: &Caller) -> (String, Option<Vec<String>>, bool) {
    match &caller.0 {
        Some(identity) => (
            identity.name.clone(),
            Some(identity.scopes.clone()),
            identity.has("admin:tokens"),
        ),
        None => (ANONYMOUS.to_owned(), None, true),
    }
}

/// API tokens: every one for `admin:tokens`, otherwise the caller's own. The tokens
/// themselves are never shown again; only their names, owners, scopes and times.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "access", responses((status = 200, body = TokenPage)))]
pub async fn list_tokens(
    State(auth): State<Arc<Auth>>,
    caller: Caller,
) -> Result<axum::Json<TokenPage>, ApiError> {
    let (name, _, all) = token_rights(&caller);
    let mut items = auth
        .store
        .tokens()
        .await
        .map_err(|e| ApiError::internal("listing tokens", e))?;
    if !all {
        items.retain(|t| t.owner == name);
    }
    Ok(axum::Json(TokenPage { items }))
}

/// A new token: its value once, and its record.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    /// The token. Shown this once; vakt keeps only its SHA-256.
    pub token: String,
    #[serde(flatten)]
    pub record: TokenRecord,
}

/// Creates a token. It carries at most the creator's scopes; only `admin:tokens` may make
/// one for another owner.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "access", request_body = NewToken,
    responses((status = 201, body = CreatedToken), (status = 400, body = crate::http::ErrorBody), (status = 403, body = crate::http::ErrorBody)))]
pub async fn create_token(
    State(auth): State<Arc<Auth>>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<(StatusCode, axum::Json<CreatedToken>), ApiError> {
    let new: NewToken = crate::http::parse_json(&body)?;
    let (name, scopes, all) = token_rights(&caller);
    if !all && new.owner.as_deref().is_some_and(|o| o.trim() != name) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "owner: only admin:tokens may make a token for someone else",
        ));
    }
    let (token, record) =
        mint(&new, &name, scopes.as_deref(), chrono::Utc::now()).map_err(ApiError::bad_request)?;
    auth.store
        .put_token(&record)
        .await
        .map_err(|e| ApiError::internal("storing a token", e))?;
    tracing::info!(token = %record.name, owner = %record.owner, by = %name, scopes = %record.scopes.join(" "), "API token created");
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedToken { token, record }),
    ))
}

/// Revokes a token by id or name: it stops working at once.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "access",
    params(("id" = String, Path, description = "The token's id or name")),
    responses((status = 200, body = TokenRecord), (status = 404, body = crate::http::ErrorBody)))]
pub async fn revoke_token(
    State(auth): State<Arc<Auth>>,
    caller: Caller,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<axum::Json<TokenRecord>, ApiError> {
    let (name, _, all) = token_rights(&caller);
    if !all {
        let tokens = auth
            .store
            .tokens()
            .await
            .map_err(|e| ApiError::internal("listing tokens", e))?;
        let own = tokens
            .iter()
            .any(|t| (t.id == id || t.name == id) && t.owner == name && t.revoked_at.is_none());
        if !own {
            return Err(ApiError::not_found(format!(
                "{name} has no live token {id:?}"
            )));
        }
    }
    let revoked = auth
        .store
        .revoke_token(&id, chrono::Utc::now())
        .await
        .map_err(|e| ApiError::internal("revoking a token", e))?
        .ok_or_else(|| ApiError::not_found(format!("no live token with the id or name {id:?}")))?;
    tracing::info!(token = %revoked.name, by = %name, "API token revoked");
    Ok(axum::Json(revoked))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditEntry>,
    pub next_cursor: Option<String>,
}

/// The audit log, newest first: every change made through the API.
#[utoipa::path(get, path = "/api/v1/audit", tag = "access",
    params(("actor" = Option<String>, Query, description = "Only this actor"),
           ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
           ("limit" = Option<u32>, Query, description = "Entries per page")),
    responses((status = 200, body = AuditPage)))]
pub async fn audit_log(
    State(auth): State<Arc<Auth>>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> Result<axum::Json<AuditPage>, ApiError> {
    let p = crate::http::Params::parse(raw.as_deref(), &["actor", "cursor", "limit"])?;
    let query = vakt_store::AuditQuery {
        actor: p.string("actor"),
        cursor: p.cursor()?,
        limit: p.limit()?,
    };
    let page = auth
        .store
        .audit_log(&query)
        .await
        .map_err(|e| ApiError::internal("reading the audit log", e))?;
    Ok(axum::Json(AuditPage {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// Writes [`ROUTES`] into the OpenAPI document: the bearer and basic security schemes, and
/// on every operation the scope it needs (none for public routes).
pub fn document(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
    );
    components.add_security_scheme(
        "basic",
        SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)),
    );
    for (path, item) in doc.paths.paths.iter_mut() {
        let operations = [
            (Method::GET, &mut item.get),
            (Method::POST, &mut item.post),
            (Method::PUT, &mut item.put),
            (Method::PATCH, &mut item.patch),
            (Method::DELETE, &mut item.delete),
        ];
        for (method, operation) in operations {
            let Some(operation) = operation else { continue };
            let scopes: Vec<&str> = match need(&method, path) {
                Some(Scope(scope) | Page(scope)) => vec![scope],
                Some(SignedIn | PageSignedIn) => Vec::new(),
                Some(Public | Own | PagePublic) | None => continue,
            };
            operation.security = Some(vec![
                SecurityRequirement::new("bearer", scopes.clone()),
                SecurityRequirement::new("basic", scopes),
            ]);
        }
    }
}

/// Adds the challenge a 401 carries, so clients know to send credentials.
fn with_challenge(mut response: Response) -> Response {
    if response.status() == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"vakt\", Bearer"),
        );
    }
    response
}

/// The SHA-256 of a token, hex: what the store keeps.
pub fn token_hash(token: &str) -> String {
    // Every request with a token hashes it: `hex`, not a `format!` per byte (which cost
    // three times the digest itself).
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

/// A new token: `vakt_` and 256 random bits in hex.
pub fn new_token() -> Result<String, String> {
    Ok(format!("{TOKEN_PREFIX}{}", random_hex()?))
}

/// What creating a token asks for.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// A name to tell it by (unique among live tokens is wise): `prometheus`, `deploy-bot`.
    pub name: String,
    /// Whom it acts as; the creator when left out. Only `admin:tokens` may name another.
    #[serde(default)]
    pub owner: Option<String>,
    /// Roles and scopes (`["responder"]`, `["read:alerts", "write:silences"]`).
    pub scopes: Vec<String>,
    /// When it stops working (RFC 3339); never when left out.
    #[serde(default)]
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Builds a token record from a request, checking that the creator holds every scope it
/// asks for. Returns the token (shown once) and its record.
pub fn mint(
    new: &NewToken,
    creator: &str,
    creator_scopes: Option<&[String]>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(String, TokenRecord), String> {
    let name = new.name.trim();
    if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
        return Err("name: 1 to 100 characters, no control characters".to_owned());
    }
    let scopes = vakt_core::access::expand(&new.scopes).map_err(|e| format!("scopes: {e}"))?;
    if scopes.is_empty() {
        return Err("scopes: name at least one role or scope".to_owned());
    }
    if let Some(held) = creator_scopes {
        let missing: Vec<&String> = scopes.iter().filter(|s| !held.contains(s)).collect();
        if !missing.is_empty() {
            return Err(format!(
                "scopes: a token cannot carry more rights than its creator; {creator} lacks {}",
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
        }
    }
    if new.expires_at.is_some_and(|at| at <= now) {
        return Err("expires_at: must be in the future".to_owned());
    }
    let owner = new
        .owner
        .as_deref()
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .unwrap_or(creator)
        .to_owned();
    let token = new_token()?;
    let record = TokenRecord {
        id: ulid::Ulid::new().to_string(),
        name: name.to_owned(),
        owner,
        scopes,
        hash: token_hash(&token),
        created_at: now,
        created_by: creator.to_owned(),
        expires_at: new.expires_at,
        last_used_at: None,
        revoked_at: None,
    };
    Ok((token, record))
}

/// An argon2id hash of `password` in PHC form (`$argon2id$v=19$...`).
pub fn hash_password(password: &str) -> Result<String, String> {
    use argon2::password_hash::PasswordHasher;
    argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// A hash to verify against when the user has none (made once).
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("vakt: no such user").unwrap_or_default())
}

/// Whether `password` matches the PHC `hash`.
pub fn verify_password(password: &str, hash: &str) -> bool {
    use argon2::password_hash::PasswordVerifier;
    argon2::Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// Whether `hash` looks like an argon2id PHC string vakt can verify against.
pub fn is_password_hash(hash: &str) -> bool {
    hash.starts_with("$argon2id$") && argon2::password_hash::phc::PasswordHash::new(hash).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types_are_read_in_any_case_with_parameters() {
        let is_json = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_str(value).expect("header value"),
            );
            json_content_type(&headers)
        };
        for accepted in [
            "application/json",
            "Application/JSON; charset=utf-8",
            " Application/X-NDJSON ",
            "application/merge-patch+json",
            "APPLICATION/VND.API+JSON;q=1",
        ] {
            assert!(is_json(accepted), "{accepted:?} is JSON");
        }
        for refused in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "application/jsonx",
            "text/x+json",
            "+json",
            "application/",
            "",
        ] {
            assert!(!is_json(refused), "{refused:?} is not JSON");
        }
        assert!(!json_content_type(&HeaderMap::new()), "no content type");
    }

    #[test]
    fn host_names_lose_their_port_and_brackets() {
        assert_eq!(host_name("[::1]:8470"), "::1");
        assert_eq!(host_name("Vakt.Example.com:443"), "vakt.example.com");
        assert_eq!(host_name("localhost"), "localhost");
        assert_eq!(host_name("127.0.0.1:8470"), "127.0.0.1");
    }

    #[test]
    fn passwords_hash_and_verify() {
        let hash = hash_password("correct horse").unwrap_or_default();
        assert!(is_password_hash(&hash), "{hash}");
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong horse", &hash));
        assert!(!is_password_hash("plain"));
    }

    #[test]
    fn tokens_are_random_and_stored_only_as_hashes() {
        let (a, b) = (
            new_token().unwrap_or_default(),
            new_token().unwrap_or_default(),
        );
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == TOKEN_PREFIX.len() + 64);
        assert_eq!(token_hash(&a).len(), 64);
        assert_ne!(token_hash(&a), a);
    }

    #[test]
    fn a_token_carries_no_more_than_its_creator() {
        let now = chrono::Utc::now();
        let held: Vec<String> = vakt_core::access::role_scopes("responder")
            .unwrap_or_default()
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let ask = |scopes: &[&str]| NewToken {
            name: "t".into(),
            owner: None,
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            expires_at: None,
        };
        assert!(mint(&ask(&["viewer"]), "alice", Some(&held), now).is_ok());
        let error = mint(&ask(&["admin"]), "alice", Some(&held), now)
            .err()
            .unwrap_or_default();
        assert!(error.contains("admin:tokens"), "{error}");
        let Ok((token, record)) = mint(&ask(&["ingest"]), "alice", None, now) else {
            panic!("an ingest token");
        };
        assert_eq!(record.owner, "alice");
        assert_eq!(record.scopes, vec!["ingest:events".to_owned()]);
        assert_eq!(record.hash, token_hash(&token));
    }

    #[test]
    fn every_route_is_in_the_table_once() {
        let mut seen = std::collections::HashSet::new();
        for (method, path, _) in ROUTES {
            assert!(seen.insert((method, path)), "{method} {path} twice");
        }
        assert_eq!(
            need(&Method::HEAD, "/api/v1/alerts"),
            Some(Scope("read:alerts"))
        );
        assert_eq!(need(&Method::GET, "/api/v1/nothing"), None);
    }
}
