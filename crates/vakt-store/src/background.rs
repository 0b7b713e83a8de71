//! A thread of its own, at the lowest CPU priority, for database work nobody waits for.
//!
//! The journal's applier writes what ingest has already made durable (and answered) into
//! SQLite's tables: a third of the server's CPU under a burst of new alerts, in slices of
//! tens of milliseconds. On the runtime's workers it took a core from the requests and the
//! journal's syncs that answer them; here it runs only when they leave the CPU idle
//! (`SCHED_IDLE` on Linux), so a burst is answered first and written into the tables in the
//! gaps. The applier comes back to the runtime's workers when someone waits for it or it
//! falls behind (`sqlite::applier`): the journal's bound on unapplied records holds either
//! way, and a busy machine cannot starve it.

use std::future::Future;

/// The thread, and the runtime on it that runs the futures given to `run`. Dropping it ends
/// the thread; futures still running there are dropped.
pub(crate) struct Background {
    handle: tokio::runtime::Handle,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Background {
    /// Starts the thread `name`. Lowering its priority may be refused (another OS); it then
    /// runs at the process's priority, which is what the work had before.
    pub(crate) fn start(name: &str) -> std::io::Result<Background> {
        // The runtime is built on the thread and stays there: one dropped in async code (a
        // spawn that failed would drop it here) panics.
        let (started, handle) = std::sync::mpsc::sync_channel(1);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = name.to_owned();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                if let Err(error) = lowest_priority() {
                    tracing::debug!(%error, thread, "background work runs at normal priority");
                }
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = started.send(Err(error));
                        return;
                    }
                };
                let _ = started.send(Ok(runtime.handle().clone()));
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        // The thread answers as soon as it runs (once per store).
        let handle = handle
            .recv()
            .map_err(|_| std::io::Error::other("the background thread ended at its start"))??;
        Ok(Background {
            handle,
            _stop: stop,
        })
    }

    /// Runs `work` on the thread and returns its output; `None` when the thread is gone.
    pub(crate) async fn run<F>(&self, work: F) -> Option<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(work).await.ok()
    }
}

/// Puts the calling thread in `SCHED_IDLE`: it runs when no other thread wants the CPU (and a
/// sliver of it when they all do). Threads it starts inherit that.
#[cfg(target_os = "linux")]
fn lowest_priority() -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid sched_param for the call; pid 0 is the calling thread.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn lowest_priority() -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "SCHED_IDLE is Linux's",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The thread's scheduling policy as the kernel reports it (`/proc/self/task/*/stat`,
    /// field 41), found by the thread's name. A task that ends while the list is read (other
    /// tests' threads come and go) is skipped, not taken for the end of the search.
    #[cfg(target_os = "linux")]
    fn policy_of(name: &str) -> Option<u32> {
        let tasks = std::fs::read_dir("/proc/self/task").ok()?;
        for task in tasks.flatten() {
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
                continue;
            };
            let Some((comm, rest)) = stat.split_once(") ") else {
                continue;
            };
            if comm.ends_with(&format!("({name}")) {
                return rest.split(' ').nth(38)?.parse().ok();
            }
        }
        None
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn work_runs_on_an_idle_priority_thread_of_its_own() {
        let background = Background::start("vakt-bg-test").expect("thread");
        let (name, policy) = background
            .run(async {
                let name = std::thread::current().name().map(str::to_owned);
                // SAFETY: no arguments; reads the calling thread's policy.
                let policy = unsafe { libc::sched_getscheduler(0) };
                (name, policy)
            })
            .await
            .expect("ran");
        assert_eq!(name.as_deref(), Some("vakt-bg-test"));
        assert_eq!(policy, libc::SCHED_IDLE);
        assert_eq!(policy_of("vakt-bg-test"), Some(libc::SCHED_IDLE as u32));
        drop(background);
        // The thread ends with its owner.
        for _ in 0..200 {
            if policy_of("vakt-bg-test").is_none() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        panic!("the background thread outlived its owner");
    }
}
