//! The embedded store's in-memory table of alerts that can still take events.
//!
//! With one writer there is no need to ask the database, batch after batch, which alert a
//! fingerprint points at: the writer keeps every active alert, and every alert resolved
//! within the reopen window, in memory. It is loaded once, updated only after a commit, and
//! rebuilt when a reload changes the reopen window. **Invariant:** for every fingerprint,
//! the cache holds exactly what `load_current` would read from the database.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Utc};
use vakt_core::{Alert, Fingerprint};

pub(crate) struct AlertCache {
    /// The reopen window the cache was loaded for.
    pub window: chrono::Duration,
    alerts: HashMap<Fingerprint, Alert>,
    /// Resolved alerts in the order they resolved, to forget them when the window passes.
    resolved: VecDeque<(DateTime<Utc>, Fingerprint, String)>,
}

impl AlertCache {
    pub fn new(window: chrono::Duration, alerts: HashMap<Fingerprint, Alert>) -> AlertCache {
        let mut resolved: Vec<_> = alerts
            .values()
            .filter_map(|a| {
                a.resolved_at
                    .filter(|_| !a.status.is_active())
                    .map(|at| (at, a.fingerprint.clone(), a.id.clone()))
            })
            .collect();
        resolved.sort();
        AlertCache {
            window,
            alerts,
            resolved: resolved.into(),
        }
    }

    /// Forgets resolved alerts whose reopen window closed before `now`.
    pub fn prune(&mut self, now: DateTime<Utc>) {
        while let Some((at, _, _)) = self.resolved.front() {
            if now - *at <= self.window {
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

    /// The alerts of these fingerprints, as the batch needs them.
    pub fn current<'a>(
        &self,
        fingerprints: impl IntoIterator<Item = &'a Fingerprint>,
    ) -> HashMap<Fingerprint, Alert> {
        fingerprints
            .into_iter()
            .filter_map(|fp| self.alerts.get(fp).map(|a| (fp.clone(), a.clone())))
            .collect()
    }

    /// Records an alert's committed state. A resolved alert whose window already closed (an
    /// operator commenting on history) is not state and is left out.
    pub fn put(&mut self, alert: &Alert, now: DateTime<Utc>) {
        if let (false, Some(at)) = (alert.status.is_active(), alert.resolved_at) {
            if now - at > self.window {
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
            }
        }
    }
}
