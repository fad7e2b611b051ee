//! Scenario 7: how many frames one overlay receives while its bar decays
//! after three votes (docs/PERFORMANCE.md). Frames carry a trajectory, so the
//! overlay animates the decay itself; the server sends a frame when the
//! trajectory changes plus a rare keyframe.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::bail;
use tokio_util::sync::CancellationToken;

use crate::load::{self, ClientCounters, HttpConn, Signer};
use crate::scenarios::{Ctx, Mode};

#[derive(Debug, Default)]
pub struct Decay {
    /// Frames received from the first vote on, for the window.
    pub frames: u64,
}

pub async fn frames_after_votes(ctx: &Ctx, mode: &Mode) -> anyhow::Result<Decay> {
    let Some(streamer) = mode.streamers.first() else { bail!("no streamer") };
    let server = ctx.server(mode).await?;
    let stop = CancellationToken::new();
    let counters = Arc::new(ClientCounters::default());
    let task =
        load::connect_overlay(server.addr(), &streamer.overlay, Arc::clone(&counters), None, stop.clone()).await?;
    // Let the connection's set-up frames pass.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let frames0 = counters.frames.load(Ordering::Relaxed);
    let started = Instant::now();
    let mut conn = HttpConn::new(server.addr());
    let mut signer = Signer::new(server.addr(), format!("{}-decay-{}", mode.name, uuid::Uuid::new_v4().simple()));
    for _ in 0..3 {
        let (head, body) = signer.chat(&streamer.broadcaster, "yes");
        let status = conn.request(&head, body.as_bytes()).await?;
        anyhow::ensure!((200..300).contains(&status), "a vote was answered {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let window = ctx.sizes.decay_window;
    tokio::time::sleep(window.saturating_sub(started.elapsed())).await;
    let frames = counters.frames.load(Ordering::Relaxed) - frames0;
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    Ok(Decay { frames })
}
