//! The embedded store's in-memory table of alerts that can still take events.
//!
//! With one writer there is no need to ask the database, batch after batch, which alert a
//! fingerprint points at: the writer keeps active alerts, and alerts resolved within the
//! reopen window, in memory, up to a capacity. It is loaded once, updated only after a
//! commit, and rebuilt when a reload changes the reopen window. While it holds every such
//! alert (`complete`) a miss means "no alert"; once more alerts can take events than it
//! holds, the oldest entries are evicted and misses are read from the database.
//!
//! Alerts resolved before `history_before` are history: they are neither held nor loaded.
//! The cutoff only moves forward (`prune`), and lies a margin before the reopen cutoff of
//! any batch (`sql::reopen_cutoff`), so a batch whose events were received slightly out of
//! order still finds every alert it may reopen; correlate applies the exact window.
//! **Invariant:** for every fingerprint, the cache holds what `load_current` would read from
//! the database with the same cutoff, or (when not `complete`) nothing.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Utc};
use vakt_core::{Alert, Fingerprint};

pub(crate) struct AlertCache {
    /// The reopen window the cache was loaded for.
    pub window: chrono::Duration,
    /// Alerts resolved before this are history (see the module's comment).
    history_before: DateTime<Utc>,
    alerts: HashMap<Fingerprint, Alert>,
    /// Resolved alerts in the order they resolved, to forget them when the window passes.
    resolved: VecDeque<(DateTime<Utc>, Fingerprint, String)>,
    /// Fingerprints in the order they entered, for eviction (may hold forgotten ones).
    order: VecDeque<Fingerprint>,
    capacity: usize,
    /// Holds every alert that can take events: a miss means there is none.
    pub complete: bool,
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
        AlertCache {
            window,
            history_before,
            alerts,
            resolved: resolved.into(),
            order,
            capacity: capacity.max(1),
            complete,
        }
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
            if let Some((_, fingerprint, id)) = self.resolved.pop_front()
                && self
                    .alerts
                    .get(&fingerprint)
                    .is_some_and(|a| a.id == id && !a.status.is_active())
            {
                self.alerts.remove(&fingerprint);
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
    }

    /// The alerts of these fingerprints, as the batch needs them, and the fingerprints the
    /// cache cannot answer for (none while it is complete), each once.
    pub fn current<'a>(
        &self,
        fingerprints: impl IntoIterator<Item = &'a Fingerprint>,
    ) -> (HashMap<Fingerprint, Alert>, Vec<&'a Fingerprint>) {
        let mut found = HashMap::new();
        let mut missing = Vec::new();
        for fp in fingerprints {
            match self.alerts.get(fp) {
                Some(alert) => {
                    found.insert(fp.clone(), alert.clone());
                }
                None if !self.complete => missing.push(fp),
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
    pub fn put(&mut self, alert: &Alert) {
        if let (false, Some(at)) = (alert.status.is_active(), alert.resolved_at) {
            if at < self.history_before {
                if self
                    .alerts
                    .get(&alert.fingerprint)
                    .is_some_and(|held| held.id <= alert.id)
                {
                    self.alerts.remove(&alert.fingerprint);
                }
                return;
            }
            self.resolved
                .push_back((at, alert.fingerprint.clone(), alert.id.clone()));
        }
        match self.alerts.get_mut(&alert.fingerprint) {
            // A newer alert for the fingerprint may replace an older resolved one; an older
            // alert (an operator acting on history) must not replace a newer one.
            Some(held) if held.id > alert.id => {}
            Some(held) => held.clone_from(alert),
            None => {
                self.alerts.insert(alert.fingerprint.clone(), alert.clone());
                self.order.push_back(alert.fingerprint.clone());
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
