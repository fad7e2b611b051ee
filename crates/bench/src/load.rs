//! The load the harness puts on the server: signed EventSub chat
//! notifications over keep-alive HTTP/1.1 connections, overlay WebSocket
//! clients, and the readings taken from `/metrics`.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chatpulse::twitch::signature;
use futures_util::{SinkExt, StreamExt};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

use crate::procs::WEBHOOK_SECRET;

/// One keep-alive HTTP/1.1 connection, written by hand so that the load
/// generator spends as little of the shared CPU as possible.
pub struct HttpConn {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

/// Where `needle` first occurs in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl HttpConn {
    pub fn new(addr: SocketAddr) -> Self {
        Self { addr, stream: None, buf: Vec::with_capacity(4096) }
    }

    /// Sends one request and reads the whole response; returns the status.
    /// A broken connection is re-opened once.
    pub async fn request(&mut self, head: &str, body: &[u8]) -> anyhow::Result<u16> {
        match self.try_request(head, body).await {
            Ok(status) => Ok(status),
            Err(_) => {
                self.stream = None;
                self.try_request(head, body).await
            }
        }
    }

    async fn try_request(&mut self, head: &str, body: &[u8]) -> anyhow::Result<u16> {
        let stream = match &mut self.stream {
            Some(s) => s,
            None => {
                let s = TcpStream::connect(self.addr).await?;
                s.set_nodelay(true)?;
                self.stream.insert(s)
            }
        };
        let mut request = Vec::with_capacity(head.len() + body.len());
        request.extend_from_slice(head.as_bytes());
        request.extend_from_slice(body);
        stream.write_all(&request).await?;
        self.buf.clear();
        let header_end = loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                break end + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                bail!("connection closed");
            }
            self.buf.extend_from_slice(&chunk[..n]);
        };
        let head_text = String::from_utf8_lossy(&self.buf[..header_end]).to_ascii_lowercase();
        let status: u16 =
            head_text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).context("bad status line")?;
        let header = |name: &str| {
            head_text.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim_start_matches(':').trim().to_owned()))
        };
        let close = header("connection").is_some_and(|v| v == "close");
        if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
            while self.buf.len() < header_end + len {
                let mut chunk = [0u8; 4096];
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    bail!("connection closed mid-body");
                }
                self.buf.extend_from_slice(&chunk[..n]);
            }
        } else if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            while find(&self.buf[header_end..], b"0\r\n\r\n").is_none() {
                let mut chunk = [0u8; 4096];
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    bail!("connection closed mid-body");
                }
                self.buf.extend_from_slice(&chunk[..n]);
            }
        }
        if close {
            self.stream = None;
        }
        Ok(status)
    }
}

/// A `channel.chat.message` notification body in Twitch's shape (the same
/// shape the integration tests deliver).
pub fn chat_body(broadcaster: &str, chatter: &str, message_id: &str, text: &str) -> String {
    format!(
        concat!(
            r#"{{"subscription":{{"id":"0f3d9a52-8c71-4b9e-a1d4-6e2c7b5f3a10","status":"enabled","type":"channel.chat.message","version":"1","#,
            r#""condition":{{"broadcaster_user_id":"{b}","user_id":"99887766"}},"transport":{{"method":"conduit","conduit_id":"e3a1c9d2-58b4-4f0e-a7c6-2d9f81b0c4aa"}},"#,
            r#""created_at":"2026-03-14T18:59:42.117290301Z","cost":0}},"event":{{"broadcaster_user_id":"{b}","broadcaster_user_login":"bench{b}","#,
            r#""broadcaster_user_name":"Bench","chatter_user_id":"{c}","chatter_user_login":"viewer{c}","chatter_user_name":"Viewer","#,
            r#""message_id":"{m}","message":{{"text":"{t}","fragments":[{{"type":"text","text":"{t}","cheermote":null,"emote":null,"mention":null}}]}},"#,
            r##""message_type":"text","badges":[],"cheer":null,"color":"#1E90FF","reply":null,"channel_points_custom_reward_id":null,"##,
            r#""source_broadcaster_user_id":null,"source_broadcaster_user_login":null,"source_broadcaster_user_name":null,"#,
            r#""source_message_id":null,"source_badges":null}}}}"#
        ),
        b = broadcaster,
        c = chatter,
        m = message_id,
        t = text
    )
}

/// Builds signed deliveries with unique message ids and chatters.
pub struct Signer {
    head_prefix: String,
    prefix: String,
    next: u64,
}

impl Signer {
    /// `prefix` makes ids unique across workers and runs.
    pub fn new(addr: SocketAddr, prefix: String) -> Self {
        let head_prefix = format!(
            "POST /webhooks/eventsub HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Twitch-Eventsub-Message-Retry: 0\r\nTwitch-Eventsub-Message-Type: notification\r\n\
             Twitch-Eventsub-Subscription-Type: channel.chat.message\r\nTwitch-Eventsub-Subscription-Version: 1\r\n"
        );
        Self { head_prefix, prefix, next: 0 }
    }

    /// The request head and body of one chat message from a chatter never
    /// seen before (so the per-chatter debounce never applies).
    pub fn chat(&mut self, broadcaster: &str, text: &str) -> (String, String) {
        self.next += 1;
        let message_id = format!("{}-{}", self.prefix, self.next);
        // Chatter ids are numeric on Twitch; unique per worker and message.
        let chatter = format!("{}{:09}", chatter_base(&self.prefix), self.next);
        let body = chat_body(broadcaster, &chatter, &message_id, text);
        let timestamp = OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default();
        let sig = signature::sign(WEBHOOK_SECRET, &message_id, &timestamp, body.as_bytes());
        let head = format!(
            "{}Twitch-Eventsub-Message-Id: {message_id}\r\nTwitch-Eventsub-Message-Timestamp: {timestamp}\r\n\
             Twitch-Eventsub-Message-Signature: {sig}\r\nContent-Length: {}\r\n\r\n",
            self.head_prefix,
            body.len()
        );
        (head, body)
    }
}

/// A numeric prefix derived from the worker prefix, so chatters of different
/// workers never collide.
fn chatter_base(prefix: &str) -> u64 {
    prefix.bytes().fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))) % 9_000 + 1_000
}

/// Latency samples in microseconds, with percentiles.
#[derive(Debug, Default, Clone)]
pub struct Samples(pub Vec<u64>);

impl Samples {
    pub fn push(&mut self, d: Duration) {
        self.0.push(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    pub fn extend(&mut self, other: Samples) {
        self.0.extend(other.0);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The `q` quantile (0..=1) in milliseconds; `None` without samples.
    pub fn quantile_ms(&mut self, q: f64) -> Option<f64> {
        if self.0.is_empty() {
            return None;
        }
        self.0.sort_unstable();
        let rank = ((self.0.len() as f64 - 1.0) * q).round() as usize;
        Some(self.0[rank.min(self.0.len() - 1)] as f64 / 1000.0)
    }

    pub fn max_ms(&self) -> Option<f64> {
        self.0.iter().max().map(|m| *m as f64 / 1000.0)
    }
}

/// The model of one session's value as the harness drives it, used to tell
/// which frame first reflects which vote.
///
/// Votes of one session are sent one at a time, so the harness knows their
/// order and each value the server computes (same decay math, evaluated at
/// send time; the error of that estimate is a few hundredths). Votes follow a
/// sawtooth between -75 and +75, so consecutive states differ by about 10
/// points. A frame reflects the newest vote whose value, decayed anywhere
/// between the vote and the frame's arrival, is the frame's value; that frame
/// is the first to reflect that vote and every earlier vote not yet reflected.
pub struct Tracker {
    decay: f64,
    votes: VecDeque<Vote>,
    next_seq: u64,
    /// Every vote with a smaller sequence number has been seen in a frame.
    reflected_upto: u64,
    up: bool,
    last_value: f64,
    last_at: Option<Instant>,
    pub latencies: Samples,
}

struct Vote {
    seq: u64,
    at: Instant,
    value: f64,
}

/// How far a frame's value may be from the model: frames carry hundredths,
/// and the model's time of application is known to within milliseconds.
const MATCH_TOLERANCE: f64 = 0.6;
/// How many recent votes a frame is compared with.
const MATCH_WINDOW: usize = 64;

impl Tracker {
    pub fn new(decay: f64) -> Self {
        Self {
            decay,
            votes: VecDeque::new(),
            next_seq: 0,
            reflected_upto: 0,
            up: true,
            last_value: 0.0,
            last_at: None,
            latencies: Samples::default(),
        }
    }

    fn decayed(&self, value: f64, since: Instant, now: Instant) -> f64 {
        value * (-self.decay * now.saturating_duration_since(since).as_secs_f64()).exp()
    }

    /// Records a vote about to be sent at `now`; returns its trigger direction
    /// (`true` = "for").
    pub fn next_vote(&mut self, now: Instant) -> bool {
        let current = match self.last_at {
            Some(at) => self.decayed(self.last_value, at, now),
            None => 0.0,
        };
        if self.up && current >= 75.0 {
            self.up = false;
        } else if !self.up && current <= -75.0 {
            self.up = true;
        }
        let value = (current + if self.up { 10.0 } else { -10.0 }).clamp(-100.0, 100.0);
        self.votes.push_back(Vote { seq: self.next_seq, at: now, value });
        self.next_seq += 1;
        self.last_value = value;
        self.last_at = Some(now);
        if self.votes.len() > 4 * MATCH_WINDOW {
            self.votes.pop_front();
        }
        self.up
    }

    /// A frame with `value` arrived at `at`.
    pub fn on_frame(&mut self, value: f64, at: Instant) {
        let matched = self.votes.iter().rev().take(MATCH_WINDOW).find(|v| {
            let decayed = self.decayed(v.value, v.at, at);
            let (lo, hi) = if decayed < v.value { (decayed, v.value) } else { (v.value, decayed) };
            value >= lo - MATCH_TOLERANCE && value <= hi + MATCH_TOLERANCE
        });
        let Some(seq) = matched.map(|v| v.seq) else { return };
        if seq < self.reflected_upto {
            return;
        }
        for v in self.votes.iter().filter(|v| v.seq >= self.reflected_upto && v.seq <= seq) {
            self.latencies.push(at.saturating_duration_since(v.at));
        }
        self.reflected_upto = seq + 1;
        while self.votes.front().is_some_and(|v| v.seq < seq) {
            self.votes.pop_front();
        }
    }

    /// Votes sent but never seen in a frame.
    pub fn unreflected(&self) -> u64 {
        self.next_seq - self.reflected_upto
    }
}

pub type SharedTracker = Arc<Mutex<Tracker>>;

pub fn lock(t: &SharedTracker) -> MutexGuard<'_, Tracker> {
    t.lock().unwrap_or_else(|p| p.into_inner())
}

/// What all overlay clients of a run saw.
#[derive(Default)]
pub struct ClientCounters {
    pub frames: AtomicU64,
    pub closed: AtomicU64,
    /// Closed by the server with 1013 (too slow).
    pub evicted: AtomicU64,
}

#[derive(serde::Deserialize)]
struct FrameValue {
    value: f64,
}

/// Overlay clients receive small frames only: a 4 KiB read buffer instead of
/// tungstenite's default 128 KiB keeps 10,000 of them cheap for the harness.
fn client_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(4 * 1024).write_buffer_size(4 * 1024)
}

/// Opens one overlay WebSocket and keeps reading it in a task until `stop`.
/// With a tracker, every frame is matched against the session's votes.
pub async fn connect_overlay(
    addr: SocketAddr,
    overlay: &str,
    counters: Arc<ClientCounters>,
    tracker: Option<SharedTracker>,
    stop: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let url = format!("ws://{addr}/ws/overlay/{overlay}");
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(15),
        tokio_tungstenite::connect_async_with_config(url.as_str(), Some(client_config()), true),
    )
    .await
    .context("overlay connect timed out")??;
    // The first frame is the session's state at connection time.
    match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
        Ok(Some(Ok(Message::Text(_)))) => {}
        other => bail!("no first frame from the overlay socket: {other:?}"),
    }
    Ok(tokio::spawn(async move {
        loop {
            let message = tokio::select! {
                _ = stop.cancelled() => break,
                message = ws.next() => message,
            };
            match message {
                Some(Ok(Message::Text(text))) => {
                    let at = Instant::now();
                    counters.frames.fetch_add(1, Ordering::Relaxed);
                    if let Some(tracker) = &tracker
                        && let Ok(frame) = serde_json::from_str::<FrameValue>(&text)
                    {
                        lock(tracker).on_frame(frame.value, at);
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    counters.closed.fetch_add(1, Ordering::Relaxed);
                    if frame.is_some_and(|f| u16::from(f.code) == 1013) {
                        counters.evicted.fetch_add(1, Ordering::Relaxed);
                    }
                    return;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    counters.closed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
        let _ = tokio::time::timeout(Duration::from_millis(200), ws.flush()).await;
    }))
}

/// Connects `overlays.len()` clients, `concurrency` at a time. Returns the
/// reader tasks and how many connections failed.
pub async fn connect_many(
    addr: SocketAddr,
    overlays: Vec<(String, Option<SharedTracker>)>,
    counters: &Arc<ClientCounters>,
    stop: &CancellationToken,
    concurrency: usize,
) -> (Vec<tokio::task::JoinHandle<()>>, usize, Option<String>) {
    let semaphore = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut connecting = Vec::with_capacity(overlays.len());
    for (overlay, tracker) in overlays {
        let (semaphore, counters, stop) = (Arc::clone(&semaphore), Arc::clone(counters), stop.clone());
        connecting.push(tokio::spawn(async move {
            let _permit = semaphore.acquire_owned().await?;
            connect_overlay(addr, &overlay, counters, tracker, stop).await
        }));
    }
    let (mut tasks, mut failed, mut first_error) = (Vec::new(), 0, None);
    for c in connecting {
        match c.await {
            Ok(Ok(task)) => tasks.push(task),
            Ok(Err(e)) => {
                failed += 1;
                first_error.get_or_insert(format!("{e:#}"));
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    (tasks, failed, first_error)
}

/// The samples of one `/metrics` scrape, by full sample name (with labels).
#[derive(Debug, Default, Clone)]
pub struct Scrape(pub HashMap<String, f64>);

impl Scrape {
    pub async fn take(http: &reqwest::Client, base: &str) -> anyhow::Result<Self> {
        let text = http.get(format!("{base}/metrics")).send().await?.error_for_status()?.text().await?;
        Ok(Self::parse(&text))
    }

    /// The samples of a Prometheus text exposition; comments and lines
    /// without a number are passed over.
    pub fn parse(text: &str) -> Self {
        Self(
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| {
                    let (name, value) = l.rsplit_once(' ')?;
                    Some((name.to_owned(), value.trim().parse().ok()?))
                })
                .collect(),
        )
    }

    pub fn get(&self, sample: &str) -> f64 {
        self.0.get(sample).copied().unwrap_or(0.0)
    }
}

/// A histogram's observations between two scrapes.
pub struct HistogramDelta {
    /// (upper bound in seconds, cumulative count), ascending; `+Inf` last.
    buckets: Vec<(f64, f64)>,
    pub count: f64,
}

impl HistogramDelta {
    pub fn between(before: &Scrape, after: &Scrape, name: &str) -> Self {
        let prefix = format!("{name}_bucket{{le=\"");
        let mut buckets: Vec<(f64, f64)> = after
            .0
            .iter()
            .filter_map(|(k, v)| {
                let le = k.strip_prefix(&prefix)?.strip_suffix("\"}")?;
                let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
                Some((le, v - before.get(k)))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let count = after.get(&format!("{name}_count")) - before.get(&format!("{name}_count"));
        Self { buckets, count }
    }

    /// The `q` quantile in milliseconds, interpolated linearly inside its
    /// bucket (the buckets double: 0.1 ms, 0.2 ms, … so this is an estimate).
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        if self.count <= 0.0 {
            return None;
        }
        let target = q * self.count;
        let mut lower = (0.0, 0.0);
        for &(le, cumulative) in &self.buckets {
            if cumulative >= target {
                if le.is_infinite() {
                    return Some(lower.0 * 1000.0);
                }
                let width = cumulative - lower.1;
                let within = if width > 0.0 { (target - lower.1) / width } else { 1.0 };
                return Some((lower.0 + (le - lower.0) * within) * 1000.0);
            }
            lower = (le, cumulative);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_quantiles_are_nearest_rank_in_milliseconds() {
        let mut samples = Samples::default();
        assert_eq!(samples.quantile_ms(0.5), None);
        assert_eq!(samples.max_ms(), None);
        for ms in (1..=100).rev() {
            samples.push(Duration::from_millis(ms));
        }
        assert_eq!(samples.len(), 100);
        assert_eq!(samples.quantile_ms(0.0), Some(1.0));
        assert_eq!(samples.quantile_ms(0.5), Some(51.0));
        assert_eq!(samples.quantile_ms(0.99), Some(99.0));
        assert_eq!(samples.quantile_ms(1.0), Some(100.0));
        assert_eq!(samples.max_ms(), Some(100.0));
        let mut more = Samples::default();
        more.push(Duration::from_micros(250_500));
        samples.extend(more);
        assert_eq!(samples.max_ms(), Some(250.5));
    }

    #[test]
    fn a_scrape_reads_samples_with_their_labels_and_skips_comments() {
        let scrape = Scrape::parse(
            "# HELP chatpulse_votes_total Votes.\n# TYPE chatpulse_votes_total counter\n\
             chatpulse_votes_total{outcome=\"applied\"} 42\n\
             chatpulse_votes_total{outcome=\"rate limited\"} 3\n\
             chatpulse_ws_clients 10000\nnot a sample\n",
        );
        assert_eq!(scrape.get("chatpulse_votes_total{outcome=\"applied\"}"), 42.0);
        assert_eq!(scrape.get("chatpulse_votes_total{outcome=\"rate limited\"}"), 3.0, "a label with a space");
        assert_eq!(scrape.get("chatpulse_ws_clients"), 10_000.0);
        assert_eq!(scrape.get("missing"), 0.0);
        assert_eq!(scrape.0.len(), 3);
    }

    fn histogram(buckets: &[(&str, f64)], count: f64) -> Scrape {
        let mut text = String::new();
        for (le, n) in buckets {
            text.push_str(&format!("tick_bucket{{le=\"{le}\"}} {n}\n"));
        }
        text.push_str(&format!("tick_count {count}\n"));
        Scrape::parse(&text)
    }

    #[test]
    fn histogram_quantiles_interpolate_inside_the_bucket_between_two_scrapes() {
        let before = histogram(&[("0.001", 5.0), ("0.002", 5.0), ("0.004", 5.0), ("+Inf", 5.0)], 5.0);
        let after = histogram(&[("0.001", 15.0), ("0.002", 35.0), ("0.004", 45.0), ("+Inf", 45.0)], 45.0);
        let delta = HistogramDelta::between(&before, &after, "tick");
        assert_eq!(delta.count, 40.0, "only what was observed in between");
        let close = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() < 1e-9);
        // 10 observations ≤ 1 ms, 20 in (1, 2] ms, 10 in (2, 4] ms.
        assert!(close(delta.quantile_ms(0.25), 1.0), "{:?}", delta.quantile_ms(0.25));
        assert!(close(delta.quantile_ms(0.5), 1.5), "{:?}", delta.quantile_ms(0.5));
        assert!(close(delta.quantile_ms(0.875), 3.0), "{:?}", delta.quantile_ms(0.875));
        assert!(close(delta.quantile_ms(1.0), 4.0));
    }

    #[test]
    fn a_histogram_quantile_in_the_open_bucket_is_its_lower_bound_and_none_without_observations() {
        let empty = histogram(&[("0.001", 0.0), ("+Inf", 0.0)], 0.0);
        assert_eq!(HistogramDelta::between(&empty, &empty, "tick").quantile_ms(0.5), None);
        let slow = histogram(&[("0.001", 1.0), ("+Inf", 10.0)], 10.0);
        let delta = HistogramDelta::between(&empty, &slow, "tick");
        assert_eq!(delta.quantile_ms(0.99), Some(1.0), "no upper bound: the bucket's floor");
    }

    #[test]
    fn the_tracker_matches_a_frame_to_the_newest_vote_it_reflects() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut tracker = Tracker::new(0.5);
        assert!(tracker.next_vote(at(0)), "the sawtooth starts upwards");
        // The server's frame: the vote's +10, decayed for 20 ms, in hundredths.
        let shown = |v: f64, ms: f64| (v * (-0.5 * ms / 1000.0f64).exp() * 100.0).round() / 100.0;
        tracker.on_frame(shown(10.0, 20.0), at(20));
        assert_eq!(tracker.unreflected(), 0);
        assert_eq!(tracker.latencies.clone().quantile_ms(0.5), Some(20.0));

        // Two more votes; one frame showing the second reflects both.
        tracker.next_vote(at(100));
        tracker.next_vote(at(110));
        assert_eq!(tracker.unreflected(), 2);
        let second = shown(shown(10.0, 100.0) + 10.0, 10.0) + 10.0;
        tracker.on_frame(shown(second, 40.0), at(150));
        assert_eq!(tracker.unreflected(), 0);
        assert_eq!(tracker.latencies.0.iter().map(|us| us / 1000).collect::<Vec<_>>(), [20, 50, 40]);

        // A frame matching no vote, or an older one again, records nothing.
        tracker.on_frame(-50.0, at(160));
        tracker.on_frame(shown(10.0, 170.0), at(170));
        assert_eq!(tracker.latencies.len(), 3);
    }

    #[test]
    fn the_tracker_votes_in_a_sawtooth_between_minus_and_plus_75() {
        let now = Instant::now();
        let mut tracker = Tracker::new(0.5);
        // No time passes: no decay, +10 a vote up to 80, then down.
        let directions: Vec<bool> = (0..25).map(|_| tracker.next_vote(now)).collect();
        assert!(directions[..8].iter().all(|up| *up), "{directions:?}");
        assert!(directions[8..24].iter().all(|up| !up), "down from 80 to -80: {directions:?}");
        assert!(directions[24], "and up again below -75: {directions:?}");
    }

    #[test]
    fn a_signed_delivery_verifies_and_parses_as_a_chat_notification() {
        let mut signer = Signer::new("127.0.0.1:8080".parse().unwrap(), "w1".into());
        let (head, body) = signer.chat("41245007", "yes");
        let (_, second_body) = signer.chat("41245007", "no");
        let header = |name: &str| {
            head.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                .unwrap_or_else(|| panic!("{name} in {head}"))
                .to_owned()
        };
        assert!(head.starts_with("POST /webhooks/eventsub HTTP/1.1\r\n") && head.ends_with("\r\n\r\n"));
        assert_eq!(header("Content-Length"), body.len().to_string());
        let (id, ts) = (header("Twitch-Eventsub-Message-Id"), header("Twitch-Eventsub-Message-Timestamp"));
        signature::verify(WEBHOOK_SECRET, &id, &ts, body.as_bytes(), &header("Twitch-Eventsub-Message-Signature"))
            .expect("the server's own check accepts it");
        let parsed: chatpulse::twitch::eventsub::Notification<chatpulse::twitch::eventsub::ChatMessageEvent> =
            serde_json::from_str(&body).expect("Twitch's shape");
        assert_eq!(parsed.event.broadcaster_user_id.as_str(), "41245007");
        assert_eq!(parsed.event.message.text, "yes");
        assert_eq!(parsed.event.message_id, id);
        let second: serde_json::Value = serde_json::from_str(&second_body).unwrap();
        assert_ne!(second["event"]["message_id"], parsed.event.message_id.as_str(), "unique message ids");
        assert_ne!(second["event"]["chatter_user_id"], parsed.event.chatter_user_id.as_str(), "and chatters");
    }
}
