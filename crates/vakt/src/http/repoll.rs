//! A connection's task polled again at once when it wakes itself while being polled, while
//! its request is the only one in flight.
//!
//! hyper's HTTP/1 connection hands a request's body to the handler through a channel inside
//! the same task: when the handler takes the body, the channel wakes the connection's
//! dispatcher, which is the task being polled. Tokio treats a task woken during its own poll
//! as one that yielded: it queues it behind the worker's other tasks and wakes an idle
//! worker to steal it. When the request is the only one in flight, that worker finds
//! nothing to do: on a two-vCPU virtual machine the wake-up (a futex, an idle vCPU brought
//! back) came once per request and cost more than the poll it asks for (issue 18,
//! BENCHMARKS.md: a single connection's requests 8-10% faster without it). `Repoll` then
//! notes such a wake instead of passing it on and polls the task again before returning, a
//! few times at most; a task that keeps waking itself is then woken as before, so it still
//! yields to others. With other requests in flight the wake is passed on unchanged: there it
//! brings the idle worker to the requests queued behind this worker while it sits in the
//! ingest journal's sync (dropping it cost 16 connections of single alerts 2-3%). Wakes from
//! anywhere else (another task, another thread, the reactor) are always passed on.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use tower_http::metrics::in_flight_requests::InFlightRequestsCounter;

/// Polls of one `poll` call at most: hyper's own loop over a connection yields after 16
/// rounds; a self-woken connection needs one more poll, rarely two.
const POLLS_MAX: usize = 4;

thread_local! {
    /// The `Hook` whose task this thread is polling, if any.
    static POLLING: Cell<*const Hook> = const { Cell::new(std::ptr::null()) };
}

/// The task's waker, and whether the task woke itself during the current poll.
struct Hook {
    task: Waker,
    woken: AtomicBool,
}

impl Wake for Hook {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if POLLING.with(|polling| std::ptr::eq(polling.get(), Arc::as_ptr(self))) {
            self.woken.store(true, Ordering::Relaxed);
        } else {
            self.task.wake_by_ref();
        }
    }
}

/// Marks `hook`'s task as the one this thread polls, until dropped, also when the poll
/// panics: a pointer left behind could match a later hook at the same address, whose wakes
/// would then be taken for its own and lost.
struct Polling(*const Hook);

impl Polling {
    fn enter(hook: &Arc<Hook>) -> Polling {
        Polling(POLLING.with(|polling| polling.replace(Arc::as_ptr(hook))))
    }
}

impl Drop for Polling {
    fn drop(&mut self) {
        POLLING.with(|polling| polling.set(self.0));
    }
}

/// Wraps a connection's future (see the module's comment).
pub struct Repoll<F> {
    inner: Pin<Box<F>>,
    /// The listener's requests in flight (this connection's among them while it has one).
    in_flight: InFlightRequestsCounter,
    hook: Option<(Arc<Hook>, Waker)>,
}

impl<F: Future> Repoll<F> {
    pub fn new(inner: F, in_flight: InFlightRequestsCounter) -> Repoll<F> {
        Repoll {
            inner: Box::pin(inner),
            in_flight,
            hook: None,
        }
    }
}

impl<F: Future> Future for Repoll<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        if this.in_flight.get() > 1 {
            // Not alone: polled as any task (see the module's comment).
            return this.inner.as_mut().poll(cx);
        }
        let (hook, waker) = match &this.hook {
            Some((hook, waker)) if hook.task.will_wake(cx.waker()) => {
                (Arc::clone(hook), waker.clone())
            }
            _ => {
                let hook = Arc::new(Hook {
                    task: cx.waker().clone(),
                    woken: AtomicBool::new(false),
                });
                let waker = Waker::from(Arc::clone(&hook));
                this.hook = Some((Arc::clone(&hook), waker.clone()));
                (hook, waker)
            }
        };
        let mut inner_cx = Context::from_waker(&waker);
        for _ in 0..POLLS_MAX {
            hook.woken.store(false, Ordering::Relaxed);
            let polled = {
                let _polling = Polling::enter(&hook);
                this.inner.as_mut().poll(&mut inner_cx)
            };
            if polled.is_ready() {
                return polled;
            }
            if !hook.woken.load(Ordering::Relaxed) {
                return Poll::Pending;
            }
        }
        // Still waking itself: woken as any task would be, after the others.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// Counts the wakes of the outer task.
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Wakes itself `times` times (once per poll) before it is ready; counts its polls.
    struct SelfWaking {
        times: usize,
        polls: Arc<AtomicUsize>,
    }

    impl Future for SelfWaking {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::Relaxed);
            if self.times == 0 {
                return Poll::Ready(());
            }
            self.times -= 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    /// A `SelfWaking` task that wakes itself `times` times, wrapped, and its poll count.
    fn self_waking(
        times: usize,
        in_flight: InFlightRequestsCounter,
    ) -> (Repoll<SelfWaking>, Arc<AtomicUsize>) {
        let polls = Arc::new(AtomicUsize::new(0));
        let future = Repoll::new(
            SelfWaking {
                times,
                polls: Arc::clone(&polls),
            },
            in_flight,
        );
        (future, polls)
    }

    fn poll_once<F: Future>(future: &mut Repoll<F>, count: &Arc<Count>) -> Poll<F::Output> {
        let waker = Waker::from(Arc::clone(count));
        Pin::new(future).poll(&mut Context::from_waker(&waker))
    }

    #[test]
    fn a_task_that_wakes_itself_is_polled_again_without_a_wake() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let (mut future, polls) = self_waking(2, InFlightRequestsCounter::new());
        assert!(poll_once(&mut future, &count).is_ready());
        assert_eq!(polls.load(Ordering::Relaxed), 3, "polled until ready");
        assert_eq!(count.0.load(Ordering::Relaxed), 0, "the task was not woken");
    }

    #[tokio::test]
    async fn with_other_requests_in_flight_a_self_wake_is_passed_on() {
        use tower::{Service, ServiceExt};
        let in_flight = InFlightRequestsCounter::new();
        let mut service = tower_http::metrics::InFlightRequests::new(
            tower::service_fn(|_: axum::http::Request<()>| async {
                Ok::<_, std::convert::Infallible>(axum::http::Response::new(String::new()))
            }),
            in_flight.clone(),
        );
        // Two requests whose responses are not sent yet.
        let mut responses = Vec::new();
        for _ in 0..2 {
            let ready = service.ready().await.expect("ready");
            responses.push(
                ready
                    .call(axum::http::Request::new(()))
                    .await
                    .expect("answered"),
            );
        }
        assert_eq!(in_flight.get(), 2);
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let (mut future, polls) = self_waking(2, in_flight.clone());
        assert!(poll_once(&mut future, &count).is_pending());
        assert_eq!(polls.load(Ordering::Relaxed), 1, "polled once");
        assert_eq!(count.0.load(Ordering::Relaxed), 1, "woken as any task");
        // One response sent: the task's request is alone again.
        responses.pop();
        assert_eq!(in_flight.get(), 1);
        assert!(poll_once(&mut future, &count).is_ready());
        assert_eq!(polls.load(Ordering::Relaxed), 3);
        assert_eq!(count.0.load(Ordering::Relaxed), 1, "not woken again");
    }

    #[test]
    fn a_task_that_keeps_waking_itself_is_woken_after_a_few_polls() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let (mut future, polls) = self_waking(usize::MAX, InFlightRequestsCounter::new());
        assert!(poll_once(&mut future, &count).is_pending());
        assert_eq!(polls.load(Ordering::Relaxed), POLLS_MAX);
        assert_eq!(
            count.0.load(Ordering::Relaxed),
            1,
            "woken to run again later"
        );
    }

    #[test]
    fn a_poll_that_panics_leaves_no_task_marked() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let mut future = Repoll::new(
            std::future::poll_fn(|_| -> Poll<()> { panic!("a bug") }),
            InFlightRequestsCounter::new(),
        );
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            poll_once(&mut future, &count)
        }));
        assert!(caught.is_err());
        assert!(POLLING.with(Cell::get).is_null());
    }

    #[test]
    fn a_wake_from_elsewhere_is_passed_on() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let (tx, rx) = std::sync::mpsc::channel::<Waker>();
        // Pending once, handing its waker out; ready the next time.
        let mut handed = Some(tx);
        let mut future = Repoll::new(
            std::future::poll_fn(move |cx| match handed.take() {
                Some(tx) => {
                    let _ = tx.send(cx.waker().clone());
                    Poll::Pending
                }
                None => Poll::Ready(()),
            }),
            InFlightRequestsCounter::new(),
        );
        assert!(poll_once(&mut future, &count).is_pending());
        assert_eq!(count.0.load(Ordering::Relaxed), 0);
        let waker = rx.recv().expect("handed out");
        // Another thread, and this thread outside the poll: both reach the task.
        std::thread::spawn({
            let waker = waker.clone();
            move || waker.wake()
        })
        .join()
        .expect("thread");
        assert_eq!(count.0.load(Ordering::Relaxed), 1);
        waker.wake();
        assert_eq!(count.0.load(Ordering::Relaxed), 2);
        assert!(poll_once(&mut future, &count).is_ready());
    }
}
