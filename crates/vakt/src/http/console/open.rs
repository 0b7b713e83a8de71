//! The open and acknowledged alerts as every board sees them: read whole from the store now
//! and then, and kept current in between from every committed batch's outcomes and every
//! operator's change, so a board costs no database read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vakt_core::{Alert, AlertStatus, Correlated};
use vakt_store::{AlertQuery, Store};

use super::board::{self, Entry};

/// The alerts are read whole again after this long: changes no commit on this node showed
/// (another PostgreSQL node's, a flapping alert settled by the expiry task) appear by then.
const FULL_READ_EVERY: Duration = Duration::from_secs(30);
/// Open alerts read per query (fewer, larger reads: each sorts its range once).
const READ_PAGE: u32 = 5_000;
/// Open alerts kept at most.
const ALERTS_MAX: usize = 100_000;

#[derive(Default)]
struct State {
    /// By id; `None` until the first read.
    alerts: Option<HashMap<String, Arc<Entry>>>,
    read_at: Option<Instant>,
    /// While a full read runs: the changes seen meanwhile, applied on top of it.
    during_read: Option<Vec<Alert>>,
}

/// See the module documentation.
#[derive(Default)]
pub struct OpenAlerts {
    state: Mutex<State>,
    /// One full read at a time.
    reading: tokio::sync::Mutex<()>,
}

fn put(alerts: &mut HashMap<String, Arc<Entry>>, alert: &Alert) {
    if matches!(alert.status, AlertStatus::Open | AlertStatus::Acknowledged) {
        if alerts.len() < ALERTS_MAX || alerts.contains_key(&alert.id) {
            let labels = board::labels_of(alert);
            alerts.insert(alert.id.clone(), Arc::new((alert.clone(), labels)));
        }
    } else {
        alerts.remove(&alert.id);
    }
}

impl OpenAlerts {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// An alert as it is now (after a commit or an operator's change).
    pub fn apply(&self, alert: &Alert) {
        let mut state = self.lock();
        if let Some(during) = state.during_read.as_mut() {
            during.push(alert.clone());
        }
        if let Some(alerts) = state.alerts.as_mut() {
            put(alerts, alert);
        }
    }

    /// Every alert a committed batch changed. Called by the ingest writer: cheap, no I/O.
    pub fn apply_outcomes(&self, outcomes: &[Correlated]) {
        if self.lock().alerts.is_none() {
            return;
        }
        for alert in outcomes.iter().filter_map(|o| o.alert.as_ref()) {
            self.apply(alert);
        }
    }

    /// The open and acknowledged alerts, in no order. The first call reads them; later
    /// ones answer from memory, and when the last read is older than [`FULL_READ_EVERY`]
    /// they answer from memory too while a background task reads them again.
    pub async fn get(self: &Arc<Self>, store: &Arc<dyn Store>) -> Result<Vec<Arc<Entry>>, String> {
        match self.current() {
            Some((list, true)) => Ok(list),
            Some((list, false)) => {
                let this = Arc::clone(self);
                let store = Arc::clone(store);
                tokio::spawn(async move {
                    if let Err(error) = this.refresh(&*store, true).await {
                        tracing::warn!(%error, "the console could not read the open alerts again");
                    }
                });
                Ok(list)
            }
            None => self.refresh(&**store, false).await,
        }
    }

    /// Reads the alerts whole; `stale_ok`: another reader may have just done it.
    async fn refresh(&self, store: &dyn Store, stale_ok: bool) -> Result<Vec<Arc<Entry>>, String> {
        let _one_reader = match self.reading.try_lock() {
            Ok(guard) => guard,
            Err(_) if stale_ok => return Ok(Vec::new()),
            Err(_) => self.reading.lock().await,
        };
        if let Some((current, true)) = self.current() {
            return Ok(current);
        }
        self.lock().during_read = Some(Vec::new());
        let read = Self::read(store).await;
        let mut state = self.lock();
        let during = state.during_read.take().unwrap_or_default();
        let read = read?;
        let mut alerts: HashMap<String, Arc<Entry>> = read
            .into_iter()
            .map(|alert| {
                let labels = board::labels_of(&alert);
                (alert.id.clone(), Arc::new((alert, labels)))
            })
            .collect();
        for alert in &during {
            put(&mut alerts, alert);
        }
        let list = alerts.values().cloned().collect();
        state.alerts = Some(alerts);
        state.read_at = Some(Instant::now());
        Ok(list)
    }

    /// What is kept, and whether it is fresh.
    fn current(&self) -> Option<(Vec<Arc<Entry>>, bool)> {
        let state = self.lock();
        let fresh = state
            .read_at
            .is_some_and(|at| at.elapsed() < FULL_READ_EVERY);
        state
            .alerts
            .as_ref()
            .map(|alerts| (alerts.values().cloned().collect(), fresh))
    }

    async fn read(store: &dyn Store) -> Result<Vec<Alert>, String> {
        let mut alerts = Vec::new();
        let mut cursor = None;
        loop {
            let page = store
                .alerts(&AlertQuery {
                    status: vec![AlertStatus::Open, AlertStatus::Acknowledged],
                    cursor,
                    limit: READ_PAGE,
                    ..AlertQuery::default()
                })
                .await
                .map_err(|e| format!("reading the open alerts: {e}"))?;
            alerts.extend(page.items);
            cursor = page.next_cursor;
            if cursor.is_none() || alerts.len() >= ALERTS_MAX {
                return Ok(alerts);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(id: &str, status: AlertStatus) -> Alert {
        let mut alert = super::super::board::tests::alert(id, "svc", vakt_core::Severity::Warning);
        alert.id = id.into();
        alert.status = status;
        alert
    }

    #[test]
    fn changes_keep_the_open_alerts_current_and_reach_a_read_in_progress() {
        let open = OpenAlerts::default();
        open.apply(&alert("a", AlertStatus::Open));
        assert!(
            open.lock().alerts.is_none(),
            "nothing kept before the first read"
        );
        {
            let mut state = open.lock();
            state.alerts = Some(HashMap::new());
            state.read_at = Some(Instant::now());
            state.during_read = Some(Vec::new());
        }
        open.apply(&alert("a", AlertStatus::Open));
        open.apply(&alert("b", AlertStatus::Acknowledged));
        open.apply(&alert("a", AlertStatus::Resolved));
        let ids: Vec<String> = open
            .current()
            .map(|(list, _)| list)
            .unwrap_or_default()
            .iter()
            .map(|e| e.0.id.clone())
            .collect();
        assert_eq!(ids, ["b"]);
        let during = open.lock().during_read.take().unwrap_or_default();
        assert_eq!(
            during.len(),
            3,
            "a read in progress gets every change after it"
        );
    }
}
