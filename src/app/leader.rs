//! The one leader loop: jobs that must run on one instance at a time
//! (EventSub's set-up and reconciliation, the token checks) elect their
//! instance on a lease in the live store (`LiveStore::lead`), keep it by
//! renewing it, and give it up on shutdown (`LiveStore::resign`) so that
//! another instance takes over at its next try instead of after the lease.
//!
//! The lease is compared with wall-clock milliseconds from a [`Clock`]: the
//! system clock in production (the Redis election compares instances'
//! clocks), tokio's clock in tests, so that paused time moves leases too.
//! In the embedded shape there is one instance, which always wins.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::store::LiveStore;

/// One lease instances compete for.
#[derive(Debug, Clone)]
pub struct Lease {
    /// The live-store key (e.g. `cleanup:leader`).
    pub key: String,
    /// This instance's id, as the holder's name.
    pub instance: String,
    /// How long leadership lasts without renewal.
    pub ttl: Duration,
    /// How often the holder renews, and the others try: well under `ttl`,
    /// so that one slow renewal does not cost the lease.
    pub renew: Duration,
}

/// This instance's candidacy for one lease.
pub struct Leadership {
    live: Arc<dyn LiveStore>,
    metrics: Metrics,
    lease: Lease,
    clock: Clock,
}

impl Leadership {
    pub fn new(live: Arc<dyn LiveStore>, metrics: Metrics, lease: Lease) -> Self {
        Self { live, metrics, lease, clock: Clock::System }
    }

    /// The same candidacy on another clock (tests on paused time).
    pub fn with_clock(self, clock: Clock) -> Self {
        Self { clock, ..self }
    }

    /// Competes for the lease every `renew` until `shutdown`. Each time this
    /// instance becomes the leader, `job` is spawned with a token that is
    /// cancelled when leadership ends (lost, or shutdown); `on_change` hears
    /// every change first. On shutdown a held lease is given up.
    pub async fn run_while_leading<J, F>(&self, shutdown: CancellationToken, on_change: impl Fn(bool), mut job: J)
    where
        J: FnMut(CancellationToken) -> F,
        F: Future<Output = ()> + Send + 'static,
    {
        let mut ticker = tokio::time::interval(self.lease.renew);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut running: Option<CancellationToken> = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ticker.tick() => {}
            }
            match (self.try_lead().await, running.take()) {
                (true, None) => {
                    on_change(true);
                    let token = shutdown.child_token();
                    tokio::spawn(job(token.clone()));
                    running = Some(token);
                }
                (false, Some(token)) => {
                    on_change(false);
                    token.cancel();
                }
                (_, still) => running = still,
            }
        }
        if let Some(token) = running {
            token.cancel();
            if let Err(e) = self.live.resign(&self.lease.key, &self.lease.instance).await {
                // The lease then simply runs out.
                tracing::warn!(key = %self.lease.key, error = %e, "cannot give up the lease");
            }
            on_change(false);
        }
    }

    /// Takes or renews the lease. Without the live store nobody can be sure
    /// who leads: an error counts as not leading.
    async fn try_lead(&self) -> bool {
        let Lease { key, instance, ttl, .. } = &self.lease;
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        match self.live.lead(key, instance, ttl_ms, self.clock.now_ms()).await {
            Ok(leads) => leads,
            Err(e) => {
                self.metrics.live_error("lead");
                tracing::warn!(%key, error = %e, "cannot take or renew the lease; not leading");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::task::JoinHandle;
    use tokio::time::{Instant, sleep};

    use super::*;
    use crate::store::VoteLimits;
    use crate::store::memory::MemoryLiveStore;

    const KEY: &str = "cleanup:leader";
    const TTL: Duration = Duration::from_secs(30);
    const RENEW: Duration = Duration::from_secs(10);

    /// What the contenders' jobs did, and when (tokio's clock).
    #[derive(Default)]
    struct Journal(Mutex<Vec<(&'static str, &'static str, Instant)>>);

    impl Journal {
        fn note(&self, who: &'static str, what: &'static str) {
            self.0.lock().unwrap().push((who, what, Instant::now()));
        }

        fn when(&self, who: &str, what: &str) -> Option<Instant> {
            self.0.lock().unwrap().iter().find(|(w, x, _)| *w == who && *x == what).map(|(_, _, at)| *at)
        }
    }

    struct Contender {
        task: JoinHandle<()>,
        shutdown: CancellationToken,
    }

    /// `who` competes for [`KEY`] on `live`; its job notes when it starts
    /// and when it is cancelled.
    fn contend(live: &Arc<MemoryLiveStore>, clock: Clock, who: &'static str, journal: &Arc<Journal>) -> Contender {
        let lease = Lease { key: KEY.into(), instance: who.into(), ttl: TTL, renew: RENEW };
        let metrics = Metrics::register(&mut prometheus_client::registry::Registry::default());
        let live: Arc<dyn LiveStore> = live.clone();
        let leadership = Leadership::new(live, metrics, lease).with_clock(clock);
        let shutdown = CancellationToken::new();
        let (journal, token) = (Arc::clone(journal), shutdown.clone());
        let task = tokio::spawn(async move {
            leadership
                .run_while_leading(
                    token,
                    |_| {},
                    |cancelled| {
                        let journal = Arc::clone(&journal);
                        async move {
                            journal.note(who, "started");
                            cancelled.cancelled().await;
                            journal.note(who, "cancelled");
                        }
                    },
                )
                .await;
        });
        Contender { task, shutdown }
    }

    fn store() -> Arc<MemoryLiveStore> {
        Arc::new(MemoryLiveStore::new(VoteLimits::default()))
    }

    #[tokio::test(start_paused = true)]
    async fn of_two_contenders_one_leads_and_the_other_takes_over_when_the_lease_runs_out() {
        let (live, clock, journal) = (store(), Clock::following_tokio(1_000_000), Arc::new(Journal::default()));
        let start = Instant::now();
        let a = contend(&live, clock, "a", &journal);
        sleep(Duration::from_millis(1)).await;
        let _b = contend(&live, clock, "b", &journal);
        sleep(Duration::from_secs(25) - Duration::from_millis(1)).await;
        assert_eq!(journal.when("a", "started"), Some(start), "the first to try leads at once");
        assert_eq!(journal.when("b", "started"), None, "one leader at a time");

        // `a` dies without a word at 25 s; it last renewed at 20 s.
        a.task.abort();
        sleep(Duration::from_secs(40)).await;

        let took_over = journal.when("b", "started").expect("b leads") - start;
        let lease_end = Duration::from_secs(20) + TTL;
        assert!(took_over > lease_end, "not before a's lease ran out: {took_over:?}");
        assert!(took_over <= lease_end + RENEW, "at b's first try after it: {took_over:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_leader_that_shuts_down_cancels_its_job_and_resigns_so_the_other_leads_at_its_next_try() {
        let (live, clock, journal) = (store(), Clock::following_tokio(1_000_000), Arc::new(Journal::default()));
        let start = Instant::now();
        let a = contend(&live, clock, "a", &journal);
        sleep(Duration::from_millis(1)).await;
        let _b = contend(&live, clock, "b", &journal);
        sleep(Duration::from_secs(25)).await;

        a.shutdown.cancel();
        a.task.await.unwrap();
        sleep(Duration::from_secs(10)).await;

        assert_eq!(journal.when("a", "cancelled").map(|at| at - start), Some(Duration::from_millis(25_001)));
        let took_over = journal.when("b", "started").expect("b leads") - start;
        assert_eq!(took_over, Duration::from_millis(30_001), "b's next try, long before a's lease would end");
    }

    #[tokio::test(start_paused = true)]
    async fn a_leader_whose_lease_was_taken_cancels_its_job_at_its_next_renewal() {
        let (live, clock, journal) = (store(), Clock::following_tokio(1_000_000), Arc::new(Journal::default()));
        let start = Instant::now();
        let changes = Arc::new(Mutex::new(Vec::new()));
        let lease = Lease { key: KEY.into(), instance: "a".into(), ttl: TTL, renew: RENEW };
        let metrics = Metrics::register(&mut prometheus_client::registry::Registry::default());
        let shared: Arc<dyn LiveStore> = live.clone();
        let leadership = Leadership::new(shared, metrics, lease).with_clock(clock);
        let (heard, log) = (Arc::clone(&changes), Arc::clone(&journal));
        let shutdown = CancellationToken::new();
        tokio::spawn(async move {
            let on_change = move |leads| heard.lock().unwrap().push(leads);
            let job = move |cancelled: CancellationToken| {
                let log = Arc::clone(&log);
                async move {
                    cancelled.cancelled().await;
                    log.note("a", "cancelled");
                }
            };
            leadership.run_while_leading(shutdown, on_change, job).await;
        });
        sleep(Duration::from_secs(5)).await;

        // Someone else holds the key now (as after a partition).
        live.resign(KEY, "a").await.unwrap();
        assert!(live.lead(KEY, "c", 60_000, clock.now_ms()).await.unwrap());
        sleep(Duration::from_secs(6)).await;

        assert_eq!(journal.when("a", "cancelled").map(|at| at - start), Some(Duration::from_secs(10)));
        assert_eq!(*changes.lock().unwrap(), [true, false]);
    }
}
