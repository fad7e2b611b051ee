//! Where "now" comes from for the decisions that compare wall-clock times
//! with other processes or with stored times: leases in the live store
//! (compared with other instances' clocks), the broadcaster's reads (values
//! decay to "now") and Twitch's `Ratelimit-Reset` (an epoch second).
//!
//! Production reads the system clock. Tests on tokio's paused clock use
//! [`Clock::following_tokio`]: wall-clock milliseconds that move only when
//! tokio's clock moves, so `tokio::time::advance` ends leases and reaches
//! rate-limit resets exactly when the test says.

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, Default)]
pub enum Clock {
    /// [`crate::now_ms`]: the system's wall clock.
    #[default]
    System,
    /// `start_ms` at `start`, then moving with tokio's clock.
    FollowingTokio { start_ms: i64, start: Instant },
}

impl Clock {
    /// A clock that reads `start_ms` now and then follows tokio's clock.
    pub fn following_tokio(start_ms: i64) -> Self {
        Clock::FollowingTokio { start_ms, start: Instant::now() }
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        match self {
            Clock::System => crate::now_ms(),
            Clock::FollowingTokio { start_ms, start } => {
                let elapsed = i64::try_from(start.elapsed().as_millis()).unwrap_or(i64::MAX);
                start_ms.saturating_add(elapsed)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_clock_following_tokio_moves_only_when_tokio_time_moves() {
        let clock = Clock::following_tokio(1_000_000);
        assert_eq!(clock.now_ms(), 1_000_000);

        tokio::time::advance(Duration::from_millis(2_500)).await;

        assert_eq!(clock.now_ms(), 1_002_500);
    }

    #[test]
    fn the_system_clock_reads_the_wall_clock() {
        let before = crate::now_ms();
        let read = Clock::System.now_ms();
        assert!(read >= before && read - before < 60_000);
    }
}
