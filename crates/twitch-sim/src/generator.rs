//! Synthetic chat for demos and benchmarks: a crowd of simulated viewers
//! voting in one channel at a steady rate. Bounded in count and time.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::util::Rng;
use super::{ChatInput, SimUser, Simulator};

/// Hard limits, whatever the request says.
pub const MAX_MESSAGES: u64 = 1_000_000;
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
pub const MAX_PER_SECOND: f64 = 20_000.0;
pub const MAX_VIEWERS: u32 = 100_000;

/// How often the generator wakes up to send what is due.
const TICK: Duration = Duration::from_millis(10);

const CHATTER: [&str; 12] = [
    "hi chat",
    "LUL",
    "what is the vote about?",
    "hello from the simulator",
    "Kappa",
    "first time here",
    "this stream is cozy",
    "gg",
    "PogChamp",
    "o7",
    "lol",
    "can't decide tbh",
];

/// A crowd of `viewers` simulated chatters in `broadcaster_user_id`'s channel.
/// Each message is `for_word` with probability `for_share`, other chatter
/// with probability `other_share`, else `against_word`.
#[derive(Debug, Clone)]
pub struct ChatGenerator {
    pub broadcaster_user_id: String,
    pub viewers: u32,
    pub for_share: f64,
    pub for_word: String,
    pub against_word: String,
    pub other_share: f64,
    /// Messages per second across the whole crowd.
    pub per_second: f64,
    pub duration: Duration,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GeneratorReport {
    pub sent: u64,
    pub for_votes: u64,
    pub against_votes: u64,
    pub other: u64,
    /// Messages the simulator refused (e.g. unknown broadcaster).
    pub failed: u64,
    pub elapsed: Duration,
}

fn share(value: f64) -> f64 {
    if value.is_finite() { value.clamp(0.0, 1.0) } else { 0.0 }
}

impl ChatGenerator {
    pub fn effective_rate(&self) -> f64 {
        if self.per_second.is_finite() { self.per_second.clamp(0.0, MAX_PER_SECOND) } else { 0.0 }
    }

    fn effective_duration(&self) -> Duration {
        self.duration.min(MAX_DURATION)
    }

    /// How many messages a full run sends.
    pub fn planned_messages(&self) -> u64 {
        let planned = (self.effective_rate() * self.effective_duration().as_secs_f64()).floor();
        // Bounded by MAX_PER_SECOND × MAX_DURATION, well inside u64.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let planned = planned.max(0.0) as u64;
        if self.viewers == 0 { 0 } else { planned.min(MAX_MESSAGES) }
    }

    /// Sends the planned messages, paced evenly over `duration`, then returns.
    pub async fn run(&self, sim: &Simulator) -> GeneratorReport {
        let started = Instant::now();
        let mut report = GeneratorReport::default();
        let planned = self.planned_messages();
        if planned == 0 {
            return report;
        }
        let viewers: Vec<SimUser> = (0..self.viewers.min(MAX_VIEWERS))
            .map(|i| sim.create_user(&format!("sim_viewer_{i:05}"), &format!("SimViewer{i:05}")))
            .collect();
        let (for_share, other_share) = (share(self.for_share), share(self.other_share));
        let rate = self.effective_rate();
        let deadline = self.effective_duration() + Duration::from_secs(1);
        let mut rng = Rng::new();
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        while report.sent + report.failed < planned && started.elapsed() < deadline {
            ticker.tick().await;
            // Due so far, counting the message at t = 0.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let due = ((started.elapsed().as_secs_f64() * rate) as u64 + 1).min(planned);
            while report.sent + report.failed < due {
                let viewer = &viewers[rng.below(viewers.len())];
                let roll = rng.unit();
                let (text, bucket) = if roll < for_share {
                    (self.for_word.clone(), 0)
                } else if roll < for_share + other_share {
                    (CHATTER[rng.below(CHATTER.len())].to_owned(), 1)
                } else {
                    (self.against_word.clone(), 2)
                };
                let input = ChatInput {
                    broadcaster_user_id: self.broadcaster_user_id.clone(),
                    chatter_user_id: viewer.id.clone(),
                    chatter_login: Some(viewer.login.clone()),
                    text,
                };
                match sim.post_chat(input).await {
                    Ok(_) => {
                        report.sent += 1;
                        match bucket {
                            0 => report.for_votes += 1,
                            1 => report.other += 1,
                            _ => report.against_votes += 1,
                        }
                    }
                    Err(_) => report.failed += 1,
                }
            }
        }
        report.elapsed = started.elapsed();
        report
    }
}
