//! The clock live state is stamped with: milliseconds since the Unix epoch.
//!
//! Components that decide by time (the broadcaster's decay reads, session
//! leases) take a [`Clock`] instead of reading the system clock, so their
//! unit tests run on tokio's paused clock: [`Clock::tokio`] follows
//! `tokio::time::Instant`, which `tokio::time::pause()` and `advance()`
//! control.

use std::time::SystemTime;

#[derive(Debug, Clone, Copy)]
pub enum Clock {
    /// The system clock: what every instance compares leases with.
    System,
    /// `origin_ms` at `origin`, then as tokio's clock moves.
    Tokio { origin_ms: i64, origin: tokio::time::Instant },
}

impl Clock {
    /// A clock that reads `origin_ms` now and advances with tokio's clock
    /// (paused in tests).
    pub fn tokio(origin_ms: i64) -> Self {
        Clock::Tokio { origin_ms, origin: tokio::time::Instant::now() }
    }

    pub fn now_ms(&self) -> i64 {
        match self {
            Clock::System => {
                let since = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
                i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
            }
            Clock::Tokio { origin_ms, origin } => {
                let elapsed = i64::try_from(origin.elapsed().as_millis()).unwrap_or(i64::MAX);
                origin_ms.saturating_add(elapsed)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn the_tokio_clock_moves_only_with_tokio_time() {
        let clock = Clock::tokio(1_000_000);
        assert_eq!(clock.now_ms(), 1_000_000);
        tokio::time::advance(Duration::from_millis(1_500)).await;
        assert_eq!(clock.now_ms(), 1_001_500);
    }

    #[test]
    fn the_system_clock_is_the_epoch_in_milliseconds() {
        let ms = Clock::System.now_ms();
        assert!(ms > 1_700_000_000_000, "after 2023: {ms}");
    }
}
