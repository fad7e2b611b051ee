//! The HTTP server: our own accept loop on hyper (HTTP/1.1), so that one
//! client cannot hold the service hostage (`ServerLimits`):
//!
//! - **Connection caps**, checked when a connection is accepted: over the
//!   global cap (`MAX_HTTP_CONNECTIONS`) the client gets `503` and the socket
//!   is closed; over the per-address cap (`MAX_HTTP_CONNECTIONS_PER_IP`, an
//!   IPv6 /64 counting as one address; trusted proxies exempt) it gets `429`.
//!   A connection counts until its socket closes, WebSockets included. The
//!   per-address cap is far below the global one, so other clients — the
//!   load balancer's health checks, Twitch's webhooks — still get in.
//! - **Timeouts**, watched per connection (`conn`): the request head must
//!   arrive within `HTTP_HEADER_TIMEOUT`, its body within
//!   `HTTP_BODY_TIMEOUT`, and a kept-alive connection may wait
//!   `HTTP_IDLE_TIMEOUT` for its next request. An upgraded connection (an
//!   overlay's WebSocket) leaves this watch: its own pings and idle rules
//!   apply, and it stays open for hours.
//! - **Declared bodies over the limit** are answered `413` before a byte of
//!   the body is read: `refuse_oversized` on each route with a body limit,
//!   and here for anything above the largest of them.
//!
//! Shutdown: when `stop` is cancelled the listener is closed, idle
//! connections are closed, requests in flight finish, and `serve` returns
//! once every HTTP connection is gone (upgraded ones are the broadcaster's
//! to close, as before).

mod conn;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::client_ip::TrustedProxies;
use crate::domain::net::limit_key;

/// How long a refused client gets to take its one-line answer.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause after a failed `accept` (such as "too many open files") before the
/// next one, so the loop does not spin while nothing can be accepted.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Serves `router` on `listener` until `stop` is cancelled, then drains (see
/// the module's documentation).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    proxies: TrustedProxies,
    stop: CancellationToken,
) {
    let counts = Arc::new(Counts::new(limits.max_connections, limits.max_connections_per_ip, proxies));
    let limits = Arc::new(limits);
    let connections = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot accept an HTTP connection");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        match counts.admit(peer.ip()) {
            Ok(permit) => {
                let (router, limits, stop) = (router.clone(), Arc::clone(&limits), stop.clone());
                connections.spawn(conn::serve_connection(stream, peer, permit, router, limits, stop));
            }
            Err(refusal) => {
                tracing::debug!(reason = refusal.reason(), "HTTP connection refused");
                tokio::spawn(refuse(stream, refusal));
            }
        }
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// The server's timeouts and caps (the composition root fills them from
/// `HTTP_*_TIMEOUT` and `MAX_HTTP_CONNECTIONS*`; `.env.example` explains each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    /// A request head must arrive within this long of the connection's
    /// opening, or of its first byte on a kept-alive connection.
    pub header_timeout: Duration,
    /// A request body must arrive whole within this long of its head.
    pub body_timeout: Duration,
    /// A kept-alive connection waiting this long for a request is closed.
    pub idle_timeout: Duration,
    /// Open connections at once.
    pub max_connections: usize,
    /// Open connections from one address (IPv6: one /64); trusted proxies exempt.
    pub max_connections_per_ip: usize,
}

/// Why a connection was turned away at the door.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `MAX_HTTP_CONNECTIONS` are open.
    Full,
    /// `MAX_HTTP_CONNECTIONS_PER_IP` are open from this address.
    PerAddress,
}

impl Refusal {
    fn reason(self) -> &'static str {
        match self {
            Refusal::Full => "server_full",
            Refusal::PerAddress => "per_address",
        }
    }

    fn answer(self) -> &'static [u8] {
        match self {
            Refusal::Full => {
                b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-type: text/plain\r\ncontent-length: 37\r\nconnection: close\r\n\r\nthe server has too many connections.\n"
            }
            Refusal::PerAddress => {
                b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 1\r\ncontent-type: text/plain\r\ncontent-length: 40\r\nconnection: close\r\n\r\ntoo many connections from your address.\n"
            }
        }
    }
}

/// Tells a refused client why (best effort, briefly) and closes.
async fn refuse(mut stream: TcpStream, refusal: Refusal) {
    let answer = async {
        stream.write_all(refusal.answer()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, answer).await;
}

/// Open connections, in total and per address.
pub struct Counts {
    max_total: usize,
    max_per_address: usize,
    proxies: TrustedProxies,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

impl Counts {
    pub fn new(max_total: usize, max_per_address: usize, proxies: TrustedProxies) -> Self {
        Self { max_total, max_per_address, proxies, open: Mutex::new(Open::default()) }
    }

    /// A permit for one more connection from `peer`, or why not.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Permit, Refusal> {
        // A trusted proxy carries many clients: only the global cap applies.
        let key = (!self.proxies.trusts(peer.to_canonical())).then(|| limit_key(peer));
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.total >= self.max_total {
            return Err(Refusal::Full);
        }
        if let Some(key) = key {
            let from_here = open.per_address.entry(key).or_insert(0);
            if *from_here >= self.max_per_address {
                return Err(Refusal::PerAddress);
            }
            *from_here += 1;
        }
        open.total += 1;
        Ok(Permit { counts: Arc::clone(self), key })
    }

    /// Connections open now.
    pub fn total(&self) -> usize {
        self.open.lock().unwrap_or_else(PoisonError::into_inner).total
    }
}

/// One admitted connection; released when dropped (when its socket closes).
pub struct Permit {
    counts: Arc<Counts>,
    key: Option<IpAddr>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut open = self.counts.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.total = open.total.saturating_sub(1);
        if let Some(key) = self.key
            && let Some(n) = open.per_address.get_mut(&key)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.per_address.remove(&key);
            }
        }
    }
}

/// Middleware for a route with a body limit: a request whose
/// `Content-Length` declares more is answered `413` at once, without reading
/// the body, and the connection is closed (its body is never read).
pub async fn refuse_oversized(State(limit): State<usize>, request: Request, next: Next) -> Response {
    if declared_length(&request).is_some_and(|length| length > limit as u64) {
        return too_large();
    }
    next.run(request).await
}

fn declared_length<B>(request: &axum::http::Request<B>) -> Option<u64> {
    request.headers().get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

fn too_large() -> Response {
    (StatusCode::PAYLOAD_TOO_LARGE, [(header::CONNECTION, "close")], "request body too large\n").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_per_address_cap_refuses_one_address_but_not_the_next() {
        let counts = Arc::new(Counts::new(10, 2, TrustedProxies::default()));
        let a = [counts.admit(ip("192.0.2.1")).unwrap(), counts.admit(ip("192.0.2.1")).unwrap()];
        assert_eq!(counts.admit(ip("192.0.2.1")).err(), Some(Refusal::PerAddress));
        let other = counts.admit(ip("192.0.2.2")).unwrap();
        assert_eq!(counts.total(), 3);
        drop(a);
        assert!(counts.admit(ip("192.0.2.1")).is_ok(), "a closed connection frees its place");
        drop(other);
        assert_eq!(counts.total(), 0);
    }

    #[test]
    fn one_ipv6_network_shares_its_cap() {
        let counts = Arc::new(Counts::new(10, 1, TrustedProxies::default()));
        let _first = counts.admit(ip("2001:db8::1")).unwrap();
        assert_eq!(counts.admit(ip("2001:db8::2")).err(), Some(Refusal::PerAddress));
        assert!(counts.admit(ip("2001:db8:0:1::1")).is_ok());
    }

    #[test]
    fn the_global_cap_applies_to_everyone_and_trusted_proxies_only_to_it() {
        let proxies = TrustedProxies::new(&[crate::domain::IpNet::parse("10.0.0.0/8").unwrap()]);
        let counts = Arc::new(Counts::new(3, 1, proxies));
        let held: Vec<Permit> = (0..3).map(|_| counts.admit(ip("10.1.2.3")).unwrap()).collect();
        assert_eq!(counts.admit(ip("192.0.2.1")).err(), Some(Refusal::Full));
        drop(held);
        assert!(counts.admit(ip("192.0.2.1")).is_ok());
    }

    proptest::proptest! {
        #[test]
        fn every_address_of_one_ipv6_64_shares_a_key(network: u64, a: u64, b: u64, other: u64) {
            let at = |host: u64, net: u64| IpAddr::V6(std::net::Ipv6Addr::from((u128::from(net) << 64) | u128::from(host)));
            proptest::prop_assert_eq!(limit_key(at(a, network)), limit_key(at(b, network)));
            if other != network {
                proptest::prop_assert_ne!(limit_key(at(a, network)), limit_key(at(a, other)));
            }
        }

        #[test]
        fn ipv4_addresses_are_their_own_key(bits: u32) {
            let v4 = IpAddr::V4(std::net::Ipv4Addr::from(bits));
            proptest::prop_assert_eq!(limit_key(v4), v4);
        }
    }

    #[test]
    fn refusal_answers_are_well_formed_http() {
        for refusal in [Refusal::Full, Refusal::PerAddress] {
            let text = std::str::from_utf8(refusal.answer()).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            let length = head.lines().find_map(|l| l.strip_prefix("content-length: ")).unwrap();
            assert_eq!(length.parse::<usize>().unwrap(), body.len(), "{text}");
        }
    }

    #[test]
    fn a_declared_length_over_the_limit_is_recognised() {
        let request = |length: &str| axum::http::Request::builder().header("content-length", length).body(()).unwrap();
        assert_eq!(declared_length(&request("99999999")), Some(99_999_999));
        assert_eq!(declared_length(&request("12")), Some(12));
        assert_eq!(declared_length(&request("lots")), None);
        assert_eq!(declared_length(&axum::http::Request::new(())), None);
    }
}
