//! The Markdown report: one table for scenarios 1–4 (embedded and
//! distributed side by side, with their targets from docs/PERFORMANCE.md), one for scenario 5.

use std::time::Duration;

use crate::decay::Decay;
use crate::history::HistoryWrites;
use crate::scenarios::{Fanout, Idle, Ingest, Latency, Sizes};
use crate::side_by_side::SideBySide;
use crate::{line, ms, thousands};

type Outcome<T> = Option<Result<T, String>>;

#[derive(Default)]
pub struct ModeResults {
    pub name: &'static str,
    pub ingest: Outcome<Ingest>,
    pub latency: Outcome<Latency>,
    pub fanout: Outcome<Fanout>,
    pub idle: Outcome<Idle>,
    pub history: Outcome<HistoryWrites>,
    /// Scenario 4 at the smaller size (`Sizes::idle_small`).
    pub idle_small: Outcome<Idle>,
    /// Scenario 6: ingest of chat that matches no trigger.
    pub non_matching: Outcome<Ingest>,
    /// Scenario 7: frames while a bar decays.
    pub decay: Outcome<Decay>,
}

impl ModeResults {
    fn errors(&self) -> Vec<(&'static str, &String)> {
        fn err<T>(o: &Outcome<T>) -> Option<&String> {
            o.as_ref().and_then(|r| r.as_ref().err())
        }
        [
            ("ingest", err(&self.ingest)),
            ("latency", err(&self.latency)),
            ("fan-out", err(&self.fanout)),
            ("idle", err(&self.idle)),
            ("idle (small)", err(&self.idle_small)),
            ("non-matching chat", err(&self.non_matching)),
            ("decay frames", err(&self.decay)),
            ("history", err(&self.history)),
        ]
        .into_iter()
        .filter_map(|(what, e)| e.map(|e| (what, e)))
        .collect()
    }
}

pub struct Report {
    quick: bool,
    sizes: Sizes,
    modes: Vec<ModeResults>,
    pub side_by_side: Outcome<SideBySide>,
    pub errors: Vec<String>,
    pub duration: Duration,
}

/// Where and on what the run happened.
pub struct Machine {
    date: String,
    cpus: String,
    memory: String,
    kernel: String,
    commit: String,
    redis: String,
    postgres: String,
}

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(program).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

impl Machine {
    pub async fn probe(pg_url: &str) -> Self {
        let date = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
            .chars()
            .take(16)
            .collect::<String>()
            .replace('T', " ")
            + " UTC";
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned()))
            .unwrap_or_else(|| "unknown CPU".to_owned());
        let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kib: f64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        let commit = command_output("git", &["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
        let dirty = command_output("git", &["status", "--porcelain"]).is_some_and(|s| !s.is_empty());
        let redis = command_output("redis-server", &["--version"])
            .and_then(|v| v.split_whitespace().find_map(|w| w.strip_prefix("v=").map(str::to_owned)))
            .unwrap_or_else(|| "?".into());
        let postgres = postgres_version(pg_url).await.unwrap_or_else(|| "?".into());
        Self {
            date,
            cpus: format!("{nproc} × {model}"),
            memory: format!("{:.0} GiB RAM", mem_kib / 1024.0 / 1024.0),
            kernel: command_output("uname", &["-r"]).unwrap_or_default(),
            commit: if dirty { format!("{commit} (with uncommitted changes)") } else { commit },
            redis,
            postgres,
        }
    }
}

async fn postgres_version(url: &str) -> Option<String> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.ok()?;
    let task = tokio::spawn(connection);
    let row = client.query_one("SHOW server_version", &[]).await.ok()?;
    let version: String = row.try_get(0).ok()?;
    drop(client);
    let _ = task.await;
    Some(version.split_whitespace().next().unwrap_or_default().to_owned())
}

fn cell<T>(outcome: &Outcome<T>, f: impl Fn(&T) -> String) -> String {
    match outcome {
        None => "–".to_owned(),
        Some(Ok(v)) => f(v),
        Some(Err(_)) => "error".to_owned(),
    }
}

fn judged<T>(outcome: &Outcome<T>, f: impl Fn(&T) -> Option<bool>) -> Option<bool> {
    match outcome {
        Some(Ok(v)) => f(v),
        _ => None,
    }
}

fn pct(v: f64) -> String {
    format!("{v:.0} %")
}

/// CPU (% of one core) per 1,000 units a second.
fn per_thousand(cpu_percent: f64, per_s: f64) -> String {
    if per_s <= 0.0 {
        return "–".to_owned();
    }
    format!("{:.1} %", cpu_percent / per_s * 1000.0)
}

/// Redis commands (with those run inside the Functions) and `FCALL`s per
/// applied vote of an ingest run.
fn per_vote(i: &Ingest) -> String {
    let votes = i.applied_per_s * i.seconds;
    match i.redis_commands {
        Some(c) if votes > 0.0 => format!("{:.1} ({:.2} FCALL)", c.all as f64 / votes, c.fcall as f64 / votes),
        _ => "–".to_owned(),
    }
}

/// Redis commands per message of an ingest run.
fn per_message(i: &Ingest) -> Option<f64> {
    let messages = i.accepted_per_s * i.seconds;
    i.redis_commands.filter(|_| messages > 0.0).map(|c| c.all as f64 / messages)
}

impl Report {
    pub fn new(quick: bool, sizes: &Sizes) -> Self {
        Self {
            quick,
            sizes: sizes.clone(),
            modes: Vec::new(),
            side_by_side: None,
            errors: Vec::new(),
            duration: Duration::ZERO,
        }
    }

    pub fn mode(&mut self, name: &'static str) -> &mut ModeResults {
        self.modes.push(ModeResults { name, ..ModeResults::default() });
        let last = self.modes.len() - 1;
        &mut self.modes[last]
    }

    pub fn has_errors(&self) -> bool {
        let failed = |m: &ModeResults| !m.errors().is_empty();
        !self.errors.is_empty()
            || self.modes.iter().any(failed)
            || self.side_by_side.as_ref().is_some_and(Result::is_err)
    }

    /// The vote function's ceiling measured in this run (scenario 5).
    fn ceiling(&self) -> Option<f64> {
        match &self.side_by_side {
            Some(Ok(sbs)) => Some(sbs.ceiling_per_s),
            _ => None,
        }
    }

    fn get(&self, name: &str) -> Option<&ModeResults> {
        self.modes.iter().find(|m| m.name == name)
    }

    pub fn render(&self, machine: &Machine) -> String {
        let mut out = String::new();
        let kind = if self.quick { "quick (CI-sized; targets not judged)" } else { "full" };
        line(&mut out, format!("## ChatPulse benchmark — {} run", if self.quick { "quick" } else { "full" }));
        line(&mut out, "");
        line(&mut out, format!("- Date: {}", machine.date));
        line(&mut out, format!("- Machine: {}, {}, Linux {}", machine.cpus, machine.memory, machine.kernel));
        line(&mut out, format!("- Commit: {}", machine.commit));
        line(
            &mut out,
            format!(
                "- Server: release build, child process; Redis {} (private instance), PostgreSQL {}; \
                 load generator on the same machine",
                machine.redis, machine.postgres
            ),
        );
        line(&mut out, format!("- Run: {kind}, {:.0} s", self.duration.as_secs_f64()));
        line(&mut out, "");
        self.render_main(&mut out);
        line(&mut out, "");
        self.render_side_by_side(&mut out);
        let errors: Vec<String> = self
            .modes
            .iter()
            .flat_map(|m| m.errors().into_iter().map(|(what, r)| format!("{} {what}: {r}", m.name)))
            .chain(self.errors.iter().cloned())
            .chain(self.side_by_side.as_ref().and_then(|r| r.as_ref().err()).map(|e| format!("side by side: {e}")))
            .collect();
        if !errors.is_empty() {
            line(&mut out, "");
            line(&mut out, "Errors:");
            for e in errors {
                line(&mut out, format!("- {e}"));
            }
        }
        out
    }

    fn render_main(&self, out: &mut String) {
        let s = &self.sizes;
        let (e, d) = (self.get("embedded"), self.get("distributed"));
        line(out, "| # | Scenario | Metric | Embedded | Distributed | Target | Verdict |");
        line(out, "|---|---|---|---|---|---|---|");
        let verdict = |e: Option<bool>, d: Option<bool>| -> String {
            if self.quick {
                return "–".to_owned();
            }
            let word = |v: Option<bool>| match v {
                Some(true) => "met",
                Some(false) => "**missed**",
                None => "–",
            };
            match (e, d) {
                (None, None) => "–".to_owned(),
                (e, None) => format!("E {}", word(e)),
                (None, d) => format!("D {}", word(d)),
                (e, d) => format!("E {} · D {}", word(e), word(d)),
            }
        };
        let mut row = |n: &str, scenario: &str, metric: &str, cells: (String, String), target: &str, v: String| {
            line(out, format!("| {n} | {scenario} | {metric} | {} | {} | {target} | {v} |", cells.0, cells.1));
        };
        let both = |f: &dyn Fn(&ModeResults) -> String| {
            (e.map_or_else(|| "–".to_owned(), f), d.map_or_else(|| "–".to_owned(), f))
        };

        let sc = format!(
            "Vote ingest ({} sessions, {} keep-alive connections, {} s)",
            s.ingest_sessions,
            s.ingest_connections,
            s.ingest_duration.as_secs()
        );
        let d_ingest = d.and_then(|m| judged(&m.ingest, |i| Some(i.accepted_per_s >= 15_000.0)));
        row(
            "1",
            &sc,
            "notifications/s accepted (2xx)",
            both(&|m| cell(&m.ingest, |i| thousands(i.accepted_per_s))),
            "≥ 15,000 (distributed)",
            verdict(None, d_ingest),
        );
        row(
            "1",
            "",
            "votes/s applied (server counter)",
            both(&|m| cell(&m.ingest, |i| thousands(i.applied_per_s))),
            "",
            "–".into(),
        );
        row(
            "1",
            "",
            "HTTP latency p50 / p99 (non-2xx; failed)",
            both(&|m| {
                cell(&m.ingest, |i| {
                    format!("{} / {} ({}; {})", ms(i.http_p50_ms), ms(i.http_p99_ms), i.rejected, i.failed)
                })
            }),
            "",
            "–".into(),
        );
        row(
            "1",
            "",
            "vote outcomes (server counter)",
            both(&|m| cell(&m.ingest, |i| i.outcomes.clone())),
            "",
            "–".into(),
        );
        row(
            "1",
            "",
            "server CPU (% of one core); Redis CPU",
            both(&|m| {
                cell(&m.ingest, |i| match i.redis_cpu_percent {
                    Some(r) => format!("{}; Redis {}", pct(i.cpu_percent), pct(r)),
                    None => pct(i.cpu_percent),
                })
            }),
            "",
            "–".into(),
        );
        row(
            "1",
            "",
            "server RSS at end (peak)",
            both(&|m| cell(&m.ingest, |i| format!("{:.0} MiB ({:.0} MiB)", i.rss_mib, i.peak_rss_mib))),
            "",
            "–".into(),
        );
        let ceiling = self.ceiling();
        let share = |m: &ModeResults| match (&m.ingest, ceiling) {
            (Some(Ok(i)), Some(c)) if c > 0.0 => Some(i.accepted_per_s / c),
            _ => None,
        };
        let d_share = d.and_then(share).map(|r| r >= 0.70);
        row(
            "1",
            "",
            "share of the vote function's ceiling (scenario 5, same run)",
            both(&|m| match (share(m), ceiling) {
                (Some(r), Some(c)) => format!("{r:.2} (ceiling {}/s)", thousands(c)),
                _ => "–".to_owned(),
            }),
            "≥ 0.70 (distributed)",
            verdict(None, d_share),
        );
        row(
            "1",
            "",
            "server CPU per 1,000 notifications/s; Redis commands per vote",
            both(&|m| {
                cell(&m.ingest, |i| format!("{}; {}", per_thousand(i.cpu_percent, i.accepted_per_s), per_vote(i)))
            }),
            "",
            "–".into(),
        );

        let sc = format!(
            "Non-matching chat ({} sessions, {} keep-alive connections, {} s, no trigger word)",
            s.ingest_sessions,
            s.ingest_connections,
            s.ingest_duration.as_secs()
        );
        let ratio = |m: &ModeResults| match (&m.non_matching, &m.ingest) {
            (Some(Ok(n)), Some(Ok(i))) if i.accepted_per_s > 0.0 => Some(n.accepted_per_s / i.accepted_per_s),
            _ => None,
        };
        // Judged in distributed mode, where a vote is a Redis round trip; in
        // embedded mode both paths are bound by HTTP and the shared cores.
        let ratio_ok = |m: Option<&ModeResults>| m.and_then(ratio).map(|r| r >= 2.0);
        row(
            "6",
            &sc,
            "notifications/s accepted (2xx); ÷ matching rate (scenario 1)",
            both(&|m| {
                cell(&m.non_matching, |n| match ratio(m) {
                    Some(r) => format!("{}; {r:.2}×", thousands(n.accepted_per_s)),
                    None => thousands(n.accepted_per_s),
                })
            }),
            "≥ 2× matching (distributed)",
            verdict(None, ratio_ok(d)),
        );
        row(
            "6",
            "",
            "HTTP latency p50 / p99 (non-2xx; failed); outcomes",
            both(&|m| {
                cell(&m.non_matching, |i| {
                    format!(
                        "{} / {} ({}; {}); {}",
                        ms(i.http_p50_ms),
                        ms(i.http_p99_ms),
                        i.rejected,
                        i.failed,
                        i.outcomes
                    )
                })
            }),
            "",
            "–".into(),
        );
        // The channel → session cache is refreshed every 5 s per channel,
        // and the instance's own upkeep runs: a few commands a second, none
        // per message.
        let untouched =
            |m: Option<&ModeResults>| m.and_then(|m| judged(&m.non_matching, |n| per_message(n).map(|c| c < 0.01)));
        row(
            "6",
            "",
            "server CPU; per 1,000 notifications/s; Redis commands per message",
            both(&|m| {
                cell(&m.non_matching, |n| {
                    let redis = per_message(n).map_or_else(|| "–".to_owned(), |c| format!("{c:.4}"));
                    format!("{}; {}; {redis}", pct(n.cpu_percent), per_thousand(n.cpu_percent, n.accepted_per_s))
                })
            }),
            "Redis < 0.01 per message",
            verdict(None, untouched(d)),
        );

        let sc = format!(
            "Chat to bar ({} votes/s over {} sessions, 1 overlay each, {} s)",
            thousands(s.latency_rate),
            s.latency_sessions,
            s.latency_duration.as_secs()
        );
        row(
            "2",
            &sc,
            "votes/s sent (failed)",
            both(&|m| cell(&m.latency, |l| format!("{} ({})", thousands(l.votes_per_s), l.failed))),
            "2,000",
            "–".into(),
        );
        let lat_ok = |m: Option<&ModeResults>| {
            m.and_then(|m| judged(&m.latency, |l| l.p99_ms.map(|p| p <= 60.0 && l.votes_per_s >= 1_900.0)))
        };
        row(
            "2",
            "",
            "send → first frame p50 / p99 / max",
            both(&|m| cell(&m.latency, |l| format!("{} / {} / {}", ms(l.p50_ms), ms(l.p99_ms), ms(l.max_ms)))),
            "p99 ≤ 60 ms",
            verdict(lat_ok(e), lat_ok(d)),
        );
        row(
            "2",
            "",
            "votes measured (never seen in a frame)",
            both(&|m| cell(&m.latency, |l| format!("{} ({})", thousands(l.samples as f64), l.unreflected))),
            "",
            "–".into(),
        );
        row(
            "2",
            "",
            "server CPU (% of one core); Redis CPU; Redis commands/s",
            both(&|m| {
                cell(&m.latency, |l| match (l.redis_cpu_percent, l.redis_commands_per_s) {
                    (Some(r), Some(c)) => format!("{}; Redis {}; {}", pct(l.cpu_percent), pct(r), thousands(c)),
                    _ => pct(l.cpu_percent),
                })
            }),
            "",
            "–".into(),
        );

        let sc = format!(
            "Fan-out ({} sessions × {} overlays, {} votes/s over all sessions, {} s)",
            thousands(s.fanout_sessions as f64),
            s.fanout_clients,
            thousands(s.fanout_rate),
            s.fanout_duration.as_secs()
        );
        row(
            "3",
            &sc,
            "overlays connected; votes/s sent",
            both(&|m| cell(&m.fanout, |f| format!("{}; {}", thousands(f.connected as f64), thousands(f.votes_per_s)))),
            "",
            "–".into(),
        );
        let tick_ok = |m: Option<&ModeResults>| {
            m.and_then(|m| judged(&m.fanout, |f| f.tick_p99_ms.map(|p| p <= 15.0 && f.sessions >= 5_000)))
        };
        row(
            "3",
            "",
            "broadcaster tick p50 / p99 (server histogram)",
            both(&|m| cell(&m.fanout, |f| format!("{} / {}", ms(f.tick_p50_ms), ms(f.tick_p99_ms)))),
            "p99 ≤ 15 ms at 5,000 sessions",
            verdict(tick_ok(e), tick_ok(d)),
        );
        row(
            "3",
            "",
            "ticks/s (nominal 20)",
            both(&|m| cell(&m.fanout, |f| format!("{:.1}", f.ticks_per_s))),
            "",
            "–".into(),
        );
        let lag_ok = |m: Option<&ModeResults>| {
            m.and_then(|m| judged(&m.fanout, |f| f.lag_p99_ms.map(|p| p <= 100.0 && f.sessions >= 5_000)))
        };
        row("3", "", "frames/s delivered", both(&|m| cell(&m.fanout, |f| thousands(f.frames_per_s))), "", "–".into());
        row(
            "3",
            "",
            "chat-to-frame lag (vote sent → frame) p50 / p99",
            both(&|m| cell(&m.fanout, |f| format!("{} / {}", ms(f.lag_p50_ms), ms(f.lag_p99_ms)))),
            "p99 ≤ 100 ms at 5,000 sessions",
            verdict(lag_ok(e), lag_ok(d)),
        );
        row(
            "3",
            "",
            "evictions (server); sockets closed",
            both(&|m| cell(&m.fanout, |f| format!("{:.0}; {}", f.evictions, f.closed))),
            "0",
            "–".into(),
        );
        row(
            "3",
            "",
            "RSS per connection",
            both(&|m| cell(&m.fanout, |f| format!("{:.1} KiB", f.rss_per_conn_kib))),
            "",
            "–".into(),
        );
        row(
            "3",
            "",
            "server CPU (% of one core); Redis CPU",
            both(&|m| {
                cell(&m.fanout, |f| match f.redis_cpu_percent {
                    Some(r) => format!("{}; Redis {}", pct(f.cpu_percent), pct(r)),
                    None => pct(f.cpu_percent),
                })
            }),
            "",
            "–".into(),
        );
        row(
            "3",
            "",
            "server CPU per 1,000 moving overlays; Redis commands per tick",
            both(&|m| {
                cell(&m.fanout, |f| {
                    let per_tick = match f.redis_commands {
                        Some(c) if f.ticks > 0.0 => format!("{:.0}", c.all as f64 / f.ticks),
                        _ => "–".to_owned(),
                    };
                    format!("{}; {per_tick}", per_thousand(f.cpu_percent, f.connected as f64))
                })
            }),
            "",
            "–".into(),
        );

        let small = s.idle_small.filter(|n| *n < s.idle_overlays);
        type Pick = fn(&ModeResults) -> &Outcome<Idle>;
        let (pick_small, pick_big): (Pick, Pick) = (|m| &m.idle_small, |m| &m.idle);
        let idles: Vec<(usize, Pick)> =
            small.map(|n| (n, pick_small)).into_iter().chain([(s.idle_overlays, pick_big)]).collect();
        for (size, pick) in idles {
            let sc = format!(
                "Idle ({} overlays, 1 per session, values at rest, {} s)",
                thousands(size as f64),
                s.idle_duration.as_secs()
            );
            // The targets: 10,000 connections at ≤ 16 KiB; ≤ 5 % of a core
            // and no frames at any size; Redis ≤ 50 commands/s at 1,000
            // resting overlays, ≤ 200/s at 10,000.
            let full = size >= 10_000;
            let redis_target = if size >= 10_000 { 200.0 } else { 50.0 };
            let conn_ok = |m: Option<&ModeResults>| {
                m.and_then(|m| judged(pick(m), |i| full.then_some(i.connected >= 10_000 && i.rss_per_conn_kib <= 16.0)))
            };
            row(
                "4",
                &sc,
                "overlays connected; RSS per idle connection",
                both(&|m| {
                    cell(pick(m), |i| format!("{}; {:.1} KiB", thousands(i.connected as f64), i.rss_per_conn_kib))
                }),
                if full { "10,000; ≤ 16 KiB" } else { "" },
                verdict(conn_ok(e), conn_ok(d)),
            );
            let idle_ok = |m: Option<&ModeResults>| {
                m.and_then(|m| judged(pick(m), |i| Some(i.cpu_percent <= 5.0 && i.frames == 0 && i.connected >= size)))
            };
            row(
                "4",
                "",
                "server CPU (% of one core); frames sent",
                both(&|m| cell(pick(m), |i| format!("{:.1} %; {}", i.cpu_percent, i.frames))),
                "≤ 5 %; 0",
                verdict(idle_ok(e), idle_ok(d)),
            );
            let redis_ok = |m: Option<&ModeResults>| {
                m.and_then(|m| {
                    judged(pick(m), |i| i.redis_commands_per_s.map(|r| r <= redis_target && i.connected >= size))
                })
            };
            row(
                "4",
                "",
                "Redis commands/s (INFO commandstats)",
                both(&|m| {
                    cell(pick(m), |i| match i.redis_commands_per_s {
                        Some(r) if i.redis_top.is_empty() => thousands(r),
                        Some(r) => format!("{} ({})", thousands(r), i.redis_top),
                        None => "–".to_owned(),
                    })
                }),
                &format!("≤ {} (distributed)", thousands(redis_target)),
                verdict(None, redis_ok(d)),
            );
            row("4", "", "server RSS", both(&|m| cell(pick(m), |i| format!("{:.0} MiB", i.rss_mib))), "", "–".into());
        }

        let frames_ok = |m: Option<&ModeResults>| m.and_then(|m| judged(&m.decay, |f| Some(f.frames <= 15)));
        row(
            "7",
            &format!("Decay (1 overlay, 3 votes, then {} s)", s.decay_window.as_secs()),
            "frames received from the first vote on",
            both(&|m| cell(&m.decay, |f| f.frames.to_string())),
            "≤ 15",
            verdict(frames_ok(e), frames_ok(d)),
        );
        let sc = format!(
            "History writes ({} sessions, 1 overlay and 1 vote per 10 s bucket each, {} s window)",
            thousands(s.history_sessions as f64),
            s.history_window.as_secs()
        );
        let writes_ok = |m: Option<&ModeResults>| {
            m.and_then(|m| {
                judged(&m.history, |h| {
                    (h.sessions >= 10_000).then_some(h.row_writes_per_s() <= 1_000.0 && h.batches_per_s < h.rows_per_s)
                })
            })
        };
        row(
            "8",
            &sc,
            "history row writes/s (PostgreSQL table; server counter)",
            both(&|m| {
                cell(&m.history, |h| match h.table_rows_per_s {
                    Some(t) => format!("{}; {}", thousands(t), thousands(h.rows_per_s)),
                    None => format!("–; {}", thousands(h.rows_per_s)),
                })
            }),
            "≤ 1,000 at 10,000 sessions (distributed)",
            verdict(None, writes_ok(d)),
        );
        row(
            "8",
            "",
            "batched writes/s (rows per batch)",
            both(&|m| {
                cell(&m.history, |h| {
                    format!("{:.2} ({})", h.batches_per_s, thousands(h.rows_per_s / h.batches_per_s.max(1e-9)))
                })
            }),
            "batched",
            "–".into(),
        );
        row(
            "8",
            "",
            "overlays connected; votes/s sent; server CPU",
            both(&|m| {
                cell(&m.history, |h| {
                    format!("{}; {}; {}", thousands(h.connected as f64), thousands(h.votes_per_s), pct(h.cpu_percent))
                })
            }),
            "",
            "–".into(),
        );
    }

    fn render_side_by_side(&self, out: &mut String) {
        let Some(Ok(sbs)) = &self.side_by_side else {
            line(out, "Side by side: not run.");
            return;
        };
        line(out, "| 5 · Sessions read per tick | One round trip per session | One pipelined batch | Batch speed-up |");
        line(out, "|---|---|---|---|");
        for r in &sbs.rows {
            line(
                out,
                format!(
                    "| {} | {} | {} | {:.0}× |",
                    thousands(r.sessions as f64),
                    ms(Some(r.per_session_ms)),
                    ms(Some(r.pipelined_ms)),
                    r.per_session_ms / r.pipelined_ms.max(1e-6)
                ),
            );
        }
        line(out, "");
        let p50 = sbs.ceiling_p50_ms.map(|p| format!(", p50 {p:.2} ms")).unwrap_or_default();
        line(
            out,
            format!(
                "Vote function alone (`FCALL chatpulse_vote`, {}): **{}/s**{p50}.",
                sbs.ceiling_source,
                thousands(sbs.ceiling_per_s)
            ),
        );
        for name in ["distributed", "embedded"] {
            if let Some(Some(Ok(i))) = self.get(name).map(|m| &m.ingest) {
                line(
                    out,
                    format!(
                        "Ingest ÷ ceiling ({name}): {} ÷ {} = **{:.0} %**.",
                        thousands(i.accepted_per_s),
                        thousands(sbs.ceiling_per_s),
                        i.accepted_per_s / sbs.ceiling_per_s.max(1.0) * 100.0
                    ),
                );
            }
        }
    }
}
