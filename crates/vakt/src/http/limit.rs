//! Per-client rate limit on writes: each client address may make `rate` write requests per
//! second on average and `burst` at once; more are answered 429 with `Retry-After`, before
//! any credential check or body read, so one client cannot take the writer from the others.
//!
//! The generic cell rate algorithm (GCRA), one instant per client, in a bounded map: a
//! dozen lines for what a rate-limiting crate would bring several dependencies for.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Clients tracked at most; past it, clients whose allowance is full again are forgotten.
const CLIENTS_MAX: usize = 100_000;

/// The limiter, shared by every connection.
pub struct WriteLimit {
    /// Time one request uses of its client's allowance.
    interval: Duration,
    /// How far ahead of now a client's allowance may be used.
    tolerance: Duration,
    /// Per client: when its allowance is whole again (GCRA's "theoretical arrival time").
    clients: Mutex<HashMap<IpAddr, Instant>>,
}

impl WriteLimit {
    /// `rate` requests per second and `burst` at once; `None` when `rate` is 0 (no limit).
    pub fn new(rate: u32, burst: u32) -> Option<Arc<WriteLimit>> {
        if rate == 0 {
            return None;
        }
        let interval = Duration::from_secs(1) / rate;
        Some(Arc::new(WriteLimit {
            interval,
            tolerance: interval * burst.max(1),
            clients: Mutex::new(HashMap::new()),
        }))
    }

    /// Takes one request of `client`'s allowance at `now`, or says how long until one is free.
    pub fn take(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if clients.len() >= CLIENTS_MAX && !clients.contains_key(&client) {
            clients.retain(|_, full_at| *full_at > now);
        }
        let full_at = clients.get(&client).copied().unwrap_or(now).max(now);
        let next = full_at + self.interval;
        if next > now + self.tolerance {
            return Err(next - now - self.tolerance);
        }
        clients.insert(client, next);
        Ok(())
    }
}

fn is_write(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The middleware: refuses a client's write over its allowance with 429 and `Retry-After`.
pub async fn writes(
    State(limit): State<Arc<WriteLimit>>,
    request: Request,
    next: Next,
) -> Response {
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if let (true, Some(client)) = (is_write(request.method()), client)
        && let Err(wait) = limit.take(client, Instant::now())
    {
        let secs = wait.as_secs() + 1;
        tracing::debug!(%client, "write rate limit reached");
        let mut response = (
            StatusCode::TOO_MANY_REQUESTS,
            axum::Json(serde_json::json!({
                "error": format!(
                    "too many write requests from {client}: at most server.write_rate_per_client per second (and server.write_burst_per_client at once); retry after {secs} s"
                ),
            })),
        )
            .into_response();
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from(secs));
        return response;
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_its_burst_then_its_rate_and_others_are_not_touched() {
        let limit = WriteLimit::new(10, 5).expect("a limit");
        let now = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().expect("address");
        let b: IpAddr = "192.0.2.2".parse().expect("address");
        for n in 0..5 {
            assert!(limit.take(a, now).is_ok(), "request {n} of the burst");
        }
        let wait = limit.take(a, now).expect_err("over the burst");
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        assert!(
            limit.take(b, now).is_ok(),
            "another client has its own allowance"
        );
        // A tenth of a second later, one more request fits.
        let later = now + Duration::from_millis(100);
        assert!(limit.take(a, later).is_ok());
        assert!(limit.take(a, later).is_err());
        assert!(WriteLimit::new(0, 10).is_none(), "0 turns it off");
    }
}
