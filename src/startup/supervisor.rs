//! Background tasks under supervision: none may end or panic unnoticed.
//!
//! - A **restarting** task (reconcilers, signal listeners, EventSub, token
//!   checks) that ends or panics before shutdown is started again after a
//!   pause (1 s, doubling to 30 s), and counted in
//!   `chatpulse_task_restarts_total{task}`.
//! - An **essential** task (the broadcaster, the HTTP server) cannot be
//!   restarted without losing what it holds (every open overlay's place in
//!   the broadcaster's map): if it ends or panics before shutdown, the
//!   process turns not-live (`/health/live` answers 503) and stops with an
//!   error, so the orchestrator replaces it.
//! - A **one-off** task (applying migrations) may end; a panic is logged.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::http::health::Liveness;
use crate::metrics::Metrics;

const FIRST_PAUSE: Duration = Duration::from_secs(1);
const LONGEST_PAUSE: Duration = Duration::from_secs(30);

pub struct Supervisor {
    shutdown: CancellationToken,
    metrics: Metrics,
    liveness: Liveness,
    /// Cancelled when an essential task failed; `failure` says which and how.
    failed: CancellationToken,
    failure: Arc<Mutex<Option<String>>>,
    tasks: Vec<JoinHandle<()>>,
}

/// Aborts a task when dropped: a supervising task that is aborted (at the
/// end of shutdown) takes the task it watches with it.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Awaits `task`, aborting it if this future is dropped first.
async fn watch<T>(task: JoinHandle<T>) -> Result<T, tokio::task::JoinError> {
    let _guard = AbortOnDrop(task.abort_handle());
    task.await
}

/// How a task's run ended, in words.
fn ending(outcome: &Result<(), tokio::task::JoinError>) -> &'static str {
    match outcome {
        Ok(()) => "ended",
        Err(e) if e.is_panic() => "panicked",
        Err(_) => "was cancelled",
    }
}

impl Supervisor {
    pub fn new(shutdown: CancellationToken, metrics: Metrics, liveness: Liveness) -> Self {
        let failure = Arc::new(Mutex::new(None));
        Self { shutdown, metrics, liveness, failed: CancellationToken::new(), failure, tasks: Vec::new() }
    }

    /// Runs `start(shutdown)` and starts it again whenever it ends or panics
    /// before shutdown.
    pub fn restarting<F, Fut>(&mut self, name: &'static str, start: F)
    where
        F: Fn(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (shutdown, metrics) = (self.shutdown.clone(), self.metrics.clone());
        self.tasks.push(tokio::spawn(async move {
            let mut pause = FIRST_PAUSE;
            loop {
                let outcome = watch(tokio::spawn(start(shutdown.child_token()))).await;
                if shutdown.is_cancelled() {
                    return;
                }
                tracing::error!(task = name, how = ending(&outcome), retry_in = ?pause, "background task stopped; restarting it");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
                metrics.task_restarted(name);
                pause = (pause * 2).min(LONGEST_PAUSE);
            }
        }));
    }

    /// Watches `task`, which the process cannot do without.
    pub fn essential(&mut self, name: &'static str, task: JoinHandle<()>) {
        let (shutdown, liveness, failed, failure) =
            (self.shutdown.clone(), self.liveness.clone(), self.failed.clone(), Arc::clone(&self.failure));
        self.tasks.push(tokio::spawn(async move {
            let outcome = watch(task).await;
            if shutdown.is_cancelled() {
                return;
            }
            let message = format!("background task {name} {}", ending(&outcome));
            tracing::error!(task = name, "{message}; the instance stops so that it can be replaced");
            liveness.fail();
            *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(message);
            failed.cancel();
        }));
    }

    /// Runs `task` to its end; a panic is logged.
    pub fn once<Fut>(&mut self, name: &'static str, task: Fut)
    where
        Fut: Future<Output = ()> + Send + 'static,
    {
        let run = tokio::spawn(task);
        self.tasks.push(tokio::spawn(async move {
            if let Err(e) = watch(run).await
                && e.is_panic()
            {
                tracing::error!(task = name, "background task panicked");
            }
        }));
    }

    /// Resolves with the reason once an essential task has failed.
    pub fn failed(&self) -> impl Future<Output = String> + Send + 'static {
        let (failed, failure) = (self.failed.clone(), Arc::clone(&self.failure));
        async move {
            failed.cancelled().await;
            failure.lock().unwrap_or_else(|p| p.into_inner()).clone().unwrap_or_default()
        }
    }

    /// Stops every supervised task (after shutdown has drained).
    pub fn abort_all(&self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn supervisor() -> (Supervisor, CancellationToken, Metrics) {
        let metrics = Metrics::register(&mut prometheus_client::registry::Registry::default());
        let shutdown = CancellationToken::new();
        (Supervisor::new(shutdown.clone(), metrics.clone(), Liveness::new()), shutdown, metrics)
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_panics_is_restarted_after_a_pause_that_doubles() {
        let (mut supervisor, shutdown, metrics) = supervisor();
        let runs = Arc::new(AtomicU32::new(0));
        let counted = Arc::clone(&runs);
        supervisor.restarting("flaky", move |stop| {
            let runs = Arc::clone(&counted);
            async move {
                if runs.fetch_add(1, Ordering::SeqCst) < 2 {
                    panic!("a bug");
                }
                stop.cancelled().await;
            }
        });
        let start = tokio::time::Instant::now();
        while runs.load(Ordering::SeqCst) < 3 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let took = start.elapsed();
        assert!(took >= Duration::from_secs(3) && took < Duration::from_secs(4), "1 s, then 2 s: {took:?}");
        assert_eq!(metrics.task_restarts_of("flaky"), 2);
        shutdown.cancel();
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3, "nothing restarts after shutdown");
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_ends_by_itself_is_restarted_too() {
        let (mut supervisor, shutdown, metrics) = supervisor();
        let runs = Arc::new(AtomicU32::new(0));
        let counted = Arc::clone(&runs);
        supervisor.restarting("quits", move |_| {
            let runs = Arc::clone(&counted);
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
            }
        });
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(metrics.task_restarts_of("quits"), 1);
        shutdown.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn an_essential_task_that_panics_makes_the_process_not_live_and_says_which() {
        let (mut supervisor, _shutdown, _) = supervisor();
        let liveness = supervisor.liveness.clone();
        supervisor.essential("broadcaster", tokio::spawn(async { panic!("a bug") }));
        let reason = tokio::time::timeout(Duration::from_secs(1), supervisor.failed()).await.unwrap();
        assert_eq!(reason, "background task broadcaster panicked");
        assert!(!liveness.is_live());
    }

    #[tokio::test(start_paused = true)]
    async fn an_essential_task_that_ends_at_shutdown_is_no_failure() {
        let (mut supervisor, shutdown, _) = supervisor();
        let liveness = supervisor.liveness.clone();
        let stop = shutdown.clone();
        supervisor.essential("server", tokio::spawn(async move { stop.cancelled().await }));
        shutdown.cancel();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(liveness.is_live());
        assert!(tokio::time::timeout(Duration::from_secs(1), supervisor.failed()).await.is_err());
    }
}
