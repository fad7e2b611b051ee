//! The Helix call policy (twitch-protocol.md §2.3, §4.1), applied by
//! [`super::client::TwitchClient`] to every Helix call:
//!
//! - transient failures (5xx, network) are retried after `base`, 2 × `base`
//!   and 4 × `base` (1 s, 2 s, 4 s in production);
//! - a 429 whose bucket is exhausted (`Ratelimit-Remaining: 0`) waits until
//!   `Ratelimit-Reset`, plus up to `max_jitter` so instances waiting for the
//!   same reset spread out, and tries again (three times at most); a reset
//!   further away than `max_rate_limit_wait` is not waited for;
//! - a 429 with points left (a subscription limit) and every other 4xx are
//!   final: waiting does not fix them.
//!
//! A 401 is not this policy's: the client renews its app token once inside
//! one attempt.

use std::future::Future;
use std::time::Duration;

use super::client::TwitchError;

/// How many times a transient failure is retried.
const TRANSIENT_RETRIES: u32 = 3;
/// How many rate-limit resets one call waits for.
const RATE_LIMIT_WAITS: u32 = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first pause after a transient failure; it doubles each time.
    pub base: Duration,
    /// The longest wait for a rate-limit reset before giving up.
    pub max_rate_limit_wait: Duration,
    /// Upper bound of the random pause added after a reset.
    pub max_jitter: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            max_rate_limit_wait: Duration::from_secs(70),
            max_jitter: Duration::from_millis(250),
        }
    }
}

/// What one call has used up so far.
#[derive(Debug, Default, Clone, Copy)]
struct Spent {
    retries: u32,
    waits: u32,
}

impl RetryPolicy {
    /// Runs `attempt` until it succeeds or the policy gives up; returns its
    /// last result. `what` names the call in logs.
    pub async fn run<T, F, Fut>(&self, what: &str, mut attempt: F) -> Result<T, TwitchError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, TwitchError>>,
    {
        let mut spent = Spent::default();
        loop {
            let error = match attempt().await {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            let Some(pause) = self.pause_after(&error, &mut spent) else {
                if error.is_transient() {
                    tracing::warn!(call = what, error = %error, "Twitch call failed; giving up");
                } else {
                    tracing::debug!(call = what, error = %error, "Twitch refused the call");
                }
                return Err(error);
            };
            tracing::info!(call = what, error = %error, retry_in = ?pause, "Twitch call will be retried");
            tokio::time::sleep(pause).await;
        }
    }

    /// The pause before the next attempt, or `None` when `error` is final.
    fn pause_after(&self, error: &TwitchError, spent: &mut Spent) -> Option<Duration> {
        match error {
            TwitchError::Status { status: 429, retry_after, .. } => {
                let wait =
                    (*retry_after).filter(|w| *w <= self.max_rate_limit_wait && spent.waits < RATE_LIMIT_WAITS)?;
                spent.waits += 1;
                Some(wait + self.jitter())
            }
            e if e.is_transient() && spent.retries < TRANSIENT_RETRIES => {
                let pause = self.base * 2u32.pow(spent.retries);
                spent.retries += 1;
                Some(pause)
            }
            _ => None,
        }
    }

    /// A random pause in `0..=max_jitter`.
    fn jitter(&self) -> Duration {
        let byte = uuid::Uuid::new_v4().as_bytes()[0];
        self.max_jitter.mul_f64(f64::from(byte) / 255.0)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::time::Instant;

    use super::*;
    use crate::clock::Clock;
    use crate::secret::Secret;
    use crate::twitch::client::{Reply, TwitchClient};

    /// 2026-03-14T18:00:00Z, a whole second: resets are whole seconds.
    const START_MS: i64 = 1_773_511_200_000;

    fn policy(base_ms: u64) -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_millis(base_ms),
            max_rate_limit_wait: Duration::from_secs(70),
            max_jitter: Duration::ZERO,
        }
    }

    fn status(status: u16, retry_after: Option<Duration>) -> TwitchError {
        TwitchError::Status { status, message: String::new(), retry_after }
    }

    /// A stand-in for Twitch's HTTP API: the token endpoint always answers;
    /// Helix answers the scripted replies in order (then 200 `{"data":[]}`)
    /// and every Helix request's arrival on tokio's clock is kept.
    struct Twitch {
        helix: Mutex<std::collections::VecDeque<Reply>>,
        arrivals: Mutex<Vec<Instant>>,
        tokens: Mutex<u32>,
    }

    impl Twitch {
        fn scripted(replies: Vec<Reply>) -> Arc<Self> {
            Arc::new(Self { helix: Mutex::new(replies.into()), arrivals: Mutex::default(), tokens: Mutex::default() })
        }

        fn client(self: &Arc<Self>, policy: RetryPolicy) -> TwitchClient {
            let twitch = Arc::clone(self);
            let answer = move |url: &str| twitch.answer(url);
            TwitchClient::scripted(answer, Secret::new("secret"), policy, Clock::following_tokio(START_MS))
        }

        fn answer(&self, url: &str) -> Reply {
            if url.ends_with("/token") {
                let mut n = self.tokens.lock().unwrap();
                *n += 1;
                let body = format!(r#"{{"access_token":"app-token-{n}","expires_in":5000000,"token_type":"bearer"}}"#);
                return reply(200, body.as_str());
            }
            self.arrivals.lock().unwrap().push(Instant::now());
            self.helix.lock().unwrap().pop_front().unwrap_or_else(|| reply(200, r#"{"data":[]}"#))
        }

        /// The pauses between consecutive Helix requests.
        fn gaps(&self) -> Vec<Duration> {
            let at = self.arrivals.lock().unwrap();
            at.windows(2).map(|w| w[1] - w[0]).collect()
        }
    }

    fn reply(status: u16, body: &str) -> Reply {
        Reply { status, ratelimit_remaining: None, ratelimit_reset: None, body: body.as_bytes().to_vec() }
    }

    /// A 429 as Twitch sends it: points left and the reset (epoch seconds).
    fn too_many(remaining: u32, reset_secs: i64) -> Reply {
        Reply {
            ratelimit_remaining: Some(remaining.to_string()),
            ratelimit_reset: Some(reset_secs.to_string()),
            ..reply(429, r#"{"message":"Too Many Requests"}"#)
        }
    }

    const SECS: i64 = START_MS / 1000;

    #[tokio::test(start_paused = true)]
    async fn server_errors_are_retried_after_one_two_and_four_times_the_base() {
        let twitch = Twitch::scripted(vec![reply(500, "{}"), reply(502, "{}"), reply(503, "{}")]);
        let client = twitch.client(policy(1000));

        let conduits = client.conduits().await;

        assert!(conduits.is_ok(), "the fourth attempt succeeds: {conduits:?}");
        assert_eq!(twitch.gaps(), [1, 2, 4].map(Duration::from_secs));
    }

    #[tokio::test(start_paused = true)]
    async fn a_fourth_server_error_is_final() {
        let twitch = Twitch::scripted(vec![reply(500, "{}"); 4]);
        let client = twitch.client(policy(50));

        let result = client.conduits().await;

        assert_eq!(result.err().and_then(|e| e.status()), Some(500));
        assert_eq!(twitch.gaps(), [50, 100, 200].map(Duration::from_millis));
    }

    #[tokio::test(start_paused = true)]
    async fn an_exhausted_rate_limit_waits_exactly_until_the_reset() {
        let twitch = Twitch::scripted(vec![too_many(0, SECS + 3)]);
        let client = twitch.client(policy(1000));

        let result = client.conduits().await;

        assert!(result.is_ok(), "{result:?}");
        assert_eq!(twitch.gaps(), [Duration::from_secs(3)]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_jitter_after_a_reset_is_at_most_a_quarter_second() {
        let twitch = Twitch::scripted(vec![too_many(0, SECS + 2)]);
        let client = twitch.client(RetryPolicy { max_jitter: Duration::from_millis(250), ..policy(1000) });

        client.conduits().await.unwrap();

        let gap = twitch.gaps()[0];
        assert!(gap >= Duration::from_secs(2) && gap <= Duration::from_millis(2250), "{gap:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_reset_further_away_than_the_longest_wait_is_not_waited_for() {
        let twitch = Twitch::scripted(vec![too_many(0, SECS + 71)]);
        let client = twitch.client(policy(1000));
        let started = Instant::now();

        let result = client.conduits().await;

        assert_eq!(result.err().and_then(|e| e.status()), Some(429));
        assert_eq!(started.elapsed(), Duration::ZERO, "gave up at once");
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_limit_with_points_left_is_a_subscription_limit_and_final() {
        let twitch = Twitch::scripted(vec![too_many(5, SECS + 1)]);
        let client = twitch.client(policy(1000));

        let result = client.conduits().await;

        assert_eq!(result.err().and_then(|e| e.status()), Some(429));
        assert_eq!(twitch.arrivals.lock().unwrap().len(), 1, "not tried again");
    }

    #[tokio::test(start_paused = true)]
    async fn client_errors_are_final() {
        for code in [400, 403, 404, 409] {
            let twitch = Twitch::scripted(vec![reply(code, r#"{"message":"no"}"#)]);
            let client = twitch.client(policy(1000));

            let result = client.conduits().await;

            assert_eq!(result.err().and_then(|e| e.status()), Some(code));
            assert_eq!(twitch.arrivals.lock().unwrap().len(), 1, "{code} is not retried");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_401_renews_the_app_token_once_without_waiting() {
        let twitch = Twitch::scripted(vec![reply(401, "{}"), reply(401, "{}")]);
        let client = twitch.client(policy(1000));
        let started = Instant::now();

        let result = client.conduits().await;

        assert_eq!(result.err().and_then(|e| e.status()), Some(401), "a second 401 is final");
        assert_eq!(*twitch.tokens.lock().unwrap(), 2, "the token was fetched again once");
        assert_eq!(twitch.arrivals.lock().unwrap().len(), 2);
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[test]
    fn each_call_waits_for_three_resets_at_most() {
        let policy = policy(1000);
        let mut spent = Spent::default();
        let limited = status(429, Some(Duration::from_secs(1)));
        let waits: Vec<_> = (0..4).map(|_| policy.pause_after(&limited, &mut spent)).collect();
        assert_eq!(
            waits,
            [Some(Duration::from_secs(1)), Some(Duration::from_secs(1)), Some(Duration::from_secs(1)), None]
        );
        // Rate-limit waits do not use up the transient retries.
        assert_eq!(policy.pause_after(&status(500, None), &mut spent), Some(Duration::from_secs(1)));
    }

    #[test]
    fn a_network_failure_is_transient() {
        let mut spent = Spent::default();
        let down = TwitchError::Transport("connection refused".into());
        assert_eq!(policy(10).pause_after(&down, &mut spent), Some(Duration::from_millis(10)));
        let garbled = TwitchError::Malformed("not json".into());
        assert_eq!(policy(10).pause_after(&garbled, &mut spent), None);
    }
}
