//! The embedded store's in-memory table of alerts that can still take events.
//!
//! With one writer there is no need to ask the database, batch after batch, which alert a
//! fingerprint points at: the writer keeps active alerts, and alerts resolved within the
//! reopen window, in memory, up to a capacity. It is loaded once, updated only after a
//! commit, and rebuilt when a reload changes the reopen window. While it holds every such
//! alert (`complete`) a miss means "no alert"; once more alerts can take events than it
//! holds, the oldest entries are evicted and misses are read from the database.
//!
//! Beyond the capacity it still knows *which* fingerprints have an alert that can take
//! events (`known`: the fingerprint and the newest alert's id, about 100 bytes each
//! against a few KiB for an alert): a fingerprint it does not know has no alert, so a batch
//! of new alerts needs no database read (issue 18: a million open alerts). `known` errs
//! only towards "ask the database": an entry is dropped when the alert it names becomes
//! history, or retention removes it.
//!
//! Alerts resolved before `history_before` are history: they are neither held nor loaded.
//! The cutoff only moves forward (`prune`), and lies a margin before the reopen cutoff of
//! any batch (`sql::reopen_cutoff`), so a batch whose events were received slightly out of
//! order still finds every alert it may reopen; correlate applies the exact window.
//! **Invariant:** for every fingerprint, the cache holds what `load_current` would read from
//! the database with the same cutoff, or (when not `complete`) nothing; and when `known` is
//! kept, every fingerprint the database has such an alert for is in it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use vakt_core::{Alert, Fingerprint};

pub(crate) struct AlertCache {
    /// The reopen window the cache was loaded for.
    pub window: chrono::Duration,
    /// Alerts resolved before this are history (see the module's comment).
    history_before: DateTime<Utc>,
    /// Behind pointers: growing the map moves pointers, not whole alerts (each rehash of
    /// inline alerts faulted in a new table and copied every alert, on the writer's path).
    /// Shared: a batch's outcome and the cache hold the same alert, not two copies.
    alerts: HashMap<Fingerprint, Arc<Alert>>,
    /// Resolved alerts in the order they resolved, to forget them when the window passes.
    resolved: VecDeque<(DateTime<Utc>, Fingerprint, String)>,
    /// Fingerprints in the order they entered, for eviction (may hold forgotten ones).
    order: VecDeque<Fingerprint>,
    capacity: usize,
    /// Holds every alert that can take events: a miss means there is none.
    pub complete: bool,
    /// Every fingerprint with an alert that can take events, with the newest such alert's
    /// id and when it resolved; `None` when not kept (then every miss asks the database).
    known: Option<HashMap<Fingerprint, Known>>,
}

/// What `known` keeps of a fingerprint's newest alert: its id (a ULID as a number) and, when
/// its last recorded state is resolved, when (milliseconds): the entry goes when that
/// resolution becomes history, not when an older one of a reopened alert does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Known {
    id: u128,
    resolved_ms: Option<i64>,
}

/// An alert id as the number `known` keeps; `None` for an id that is not a ULID.
fn id_number(id: &str) -> Option<u128> {
    ulid::Ulid::from_string(id).ok().map(u128::from)
}

/// What `known` keeps of `alert`.
fn known_of(alert: &Alert) -> Option<Known> {
    Some(Known {
        id: id_number(&alert.id)?,
        resolved_ms: alert
            .resolved_at
            .filter(|_| !alert.status.is_active())
            .map(|at| at.timestamp_millis()),
    })
}

impl AlertCache {
    /// A cache of `alerts`; `complete` when they are all the alerts that can take events.
    pub fn new(
        window: chrono::Duration,
        history_before: DateTime<Utc>,
        alerts: HashMap<Fingerprint, Alert>,
        capacity: usize,
        complete: bool,
    ) -> AlertCache {
        let mut resolved: Vec<_> = alerts
            .values()
            .filter_map(|a| {
                a.resolved_at
                    .filter(|_| !a.status.is_active())
                    .map(|at| (at, a.fingerprint.clone(), a.id.clone()))
            })
            .collect();
        resolved.sort();
        let order = alerts.keys().cloned().collect();
        let known = complete
            .then(|| {
                alerts
                    .iter()
                    .map(|(fp, a)| known_of(a).map(|k| (fp.clone(), k)))
                    .collect::<Option<HashMap<Fingerprint, Known>>>()
            })
            .flatten();
        AlertCache {
            window,
            history_before,
            alerts: alerts
                .into_iter()
                .map(|(fp, a)| (fp, Arc::new(a)))
                .collect(),
            resolved: resolved.into(),
            order,
            capacity: capacity.max(1),
            complete,
            known,
        }
    }

    /// Starts keeping `known` from what the database lists (every alert that can take
    /// events: fingerprint, id, when it resolved), for a cache made incomplete.
    pub fn know(&mut self, listed: Vec<(Fingerprint, String, Option<DateTime<Utc>>)>) {
        let mut known: HashMap<Fingerprint, Known> = HashMap::with_capacity(listed.len());
        let mut resolved = Vec::new();
        for (fp, id, resolved_at) in listed {
            let Some(number) = id_number(&id) else {
                self.known = None;
                return;
            };
            // Resolved ones leave `known` when their resolution becomes history.
            if let Some(at) = resolved_at {
                resolved.push((at, fp.clone(), id));
            }
            let id = number;
            let this = Known {
                id,
                resolved_ms: resolved_at.map(|at| at.timestamp_millis()),
            };
            known
                .entry(fp)
                .and_modify(|newest| {
                    if this.id > newest.id {
                        *newest = this;
                    }
                })
                .or_insert(this);
        }
        resolved.extend(self.resolved.drain(..));
        resolved.sort();
        self.resolved = resolved.into();
        self.known = Some(known);
    }

    /// How many fingerprints `known` holds (`None` when not kept).
    #[cfg(test)]
    pub fn known_len(&self) -> Option<usize> {
        self.known.as_ref().map(HashMap::len)
    }

    /// Alerts resolved before this are history.
    #[cfg(test)]
    pub fn history_before(&self) -> DateTime<Utc> {
        self.history_before
    }

    /// Moves the history cutoff forward to `history_before` (never back) and forgets the
    /// resolved alerts it passes.
    pub fn prune(&mut self, history_before: DateTime<Utc>) {
        self.history_before = self.history_before.max(history_before);
        while let Some((at, _, _)) = self.resolved.front() {
            if *at >= self.history_before {
                break;
            }
            if let Some((at, fingerprint, id)) = self.resolved.pop_front() {
                // Only the resolution this entry recorded: an alert that reopened and
                // resolved again has a later entry, and is held until that one passes.
                if self.alerts.get(&fingerprint).is_some_and(|a| {
                    a.id == id
                        && !a.status.is_active()
                        && a.resolved_at.map(|r| r.timestamp_millis())
                            == Some(at.timestamp_millis())
                }) {
                    self.alerts.remove(&fingerprint);
                }
                // The newest alert of the fingerprint became history, as last recorded:
                // nothing takes its events any more (a newer alert has a newer id here, a
                // reopened one no resolution or a later one).
                let gone = Known {
                    id: id_number(&id).unwrap_or(0),
                    resolved_ms: Some(at.timestamp_millis()),
                };
                if let Some(known) = self.known.as_mut()
                    && known.get(&fingerprint) == Some(&gone)
                {
                    known.remove(&fingerprint);
                }
            }
        }
    }

    /// Forgets the alerts of these ids (retention removed them).
    pub fn forget(&mut self, ids: &[String]) {
        if ids.is_empty() {
            return;
        }
        let ids: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
        self.alerts
            .retain(|_, alert| !ids.contains(alert.id.as_str()));
        if let Some(known) = self.known.as_mut() {
            let numbers: std::collections::HashSet<u128> =
                ids.iter().filter_map(|id| id_number(id)).collect();
            known.retain(|_, k| !numbers.contains(&k.id));
        }
    }

    /// The alerts of these fingerprints, as the batch needs them, and the fingerprints the
    /// cache cannot answer for (none while it is complete), each once.
    pub fn current<'a>(
        &self,
        fingerprints: impl IntoIterator<Item = &'a Fingerprint>,
    ) -> (HashMap<Fingerprint, Alert>, Vec<&'a Fingerprint>) {
        let (held, missing) = self.held(fingerprints);
        let current = held
            .into_iter()
            .map(|(fp, alert)| (fp, Alert::clone(alert)))
            .collect();
        (current, missing)
    }

    /// `current`, borrowed from the cache rather than copied out of it (the journaled
    /// ingest path correlates against these and puts the new states back afterwards).
    pub fn held<'a>(
        &self,
        fingerprints: impl IntoIterator<Item = &'a Fingerprint>,
    ) -> (HashMap<Fingerprint, &Alert>, Vec<&'a Fingerprint>) {
        let mut found = HashMap::new();
        let mut missing = Vec::new();
        for fp in fingerprints {
            match self.alerts.get(fp) {
                Some(alert) => {
                    found.insert(fp.clone(), &**alert);
                }
                // Not held: the database may have it, unless `known` says it has none.
                None if !self.complete
                    && self.known.as_ref().is_none_or(|k| k.contains_key(fp)) =>
                {
                    missing.push(fp)
                }
                None => {}
            }
        }
        missing.sort_unstable();
        missing.dedup();
        (found, missing)
    }

    /// Records an alert's committed state. A resolved alert that is already history (an
    /// operator commenting on an old alert, or an alert resolved when the window is zero)
    /// is not state: it is not held, and it replaces the copy held for its fingerprint when
    /// that copy is the same alert or an older one (issue 13: an open copy left behind made
    /// the next problem a "repeat" of a resolved alert).
    pub fn put(&mut self, alert: impl Into<Arc<Alert>>) {
        let alert: Arc<Alert> = alert.into();
        let this = known_of(&alert);
        if let (false, Some(at)) = (alert.status.is_active(), alert.resolved_at) {
            if at < self.history_before {
                if self
                    .alerts
                    .get(&alert.fingerprint)
                    .is_some_and(|held| held.id <= alert.id)
                {
                    self.alerts.remove(&alert.fingerprint);
                }
                if let (Some(known), Some(this)) = (self.known.as_mut(), this)
                    && known
                        .get(&alert.fingerprint)
                        .is_some_and(|newest| newest.id <= this.id)
                {
                    known.remove(&alert.fingerprint);
                }
                return;
            }
            // In time order, so the cutoff passes them in order (an alert read back from
            // the database may have resolved before the last one recorded).
            let at_ms = at.timestamp_millis();
            let position = self
                .resolved
                .partition_point(|(t, _, _)| t.timestamp_millis() <= at_ms);
            self.resolved
                .insert(position, (at, alert.fingerprint.clone(), alert.id.clone()));
        }
        match (self.known.as_mut(), this) {
            // Most puts are of a fingerprint `known` has: no copy of the key for those.
            (Some(known), Some(this)) => match known.get_mut(&alert.fingerprint) {
                Some(newest) => {
                    if this.id >= newest.id {
                        *newest = this;
                    }
                }
                None => {
                    known.insert(alert.fingerprint.clone(), this);
                }
            },
            // An id `known` cannot keep: stop trusting it.
            (Some(_), None) => self.known = None,
            (None, _) => {}
        }
        match self.alerts.get_mut(&alert.fingerprint) {
            // A newer alert for the fingerprint may replace an older resolved one; an older
            // alert (an operator acting on history) must not replace a newer one.
            Some(held) if held.id > alert.id => {}
            Some(held) => *held = alert,
            None => {
                let fingerprint = alert.fingerprint.clone();
                self.order.push_back(fingerprint.clone());
                self.alerts.insert(fingerprint, alert);
                self.evict();
            }
        }
    }

    /// Keeps the cache within its capacity, oldest entries first.
    fn evict(&mut self) {
        while self.alerts.len() > self.capacity {
            match self.order.pop_front() {
                Some(fp) => {
                    if self.alerts.remove(&fp).is_some() {
                        self.complete = false;
                    }
                }
                None => break,
            }
        }
        // Forgotten fingerprints pile up in `order` under churn: drop them now and then.
        if self.order.len() > self.capacity.saturating_mul(2) {
            let alerts = &self.alerts;
            let mut seen = std::collections::HashSet::new();
            self.order
                .retain(|fp| alerts.contains_key(fp) && seen.insert(fp.clone()));
        }
    }
}
