//! Overlay clients over real WebSockets, reading the frames the broadcaster
//! sends: each wait is for the next frame (or the close), never for time to
//! pass.

use std::time::{Duration, Instant};

use chatpulse::domain::OverlayId;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::TestApp;

impl TestApp {
    pub fn ws_url(&self, overlay: &OverlayId) -> String {
        format!("ws://{}/ws/overlay/{overlay}", self.addr)
    }

    pub async fn connect(&self, overlay: &OverlayId) -> OverlayClient {
        let (ws, _) = tokio_tungstenite::connect_async(self.ws_url(overlay)).await.expect("websocket connects");
        OverlayClient { ws }
    }

    pub async fn try_connect(&self, overlay: &OverlayId) -> Result<OverlayClient, tungstenite::Error> {
        tokio_tungstenite::connect_async(self.ws_url(overlay)).await.map(|(ws, _)| OverlayClient { ws })
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Frame {
    pub value: f64,
    pub status: &'static str,
}

pub struct OverlayClient {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What an overlay client saw next.
#[derive(Debug)]
pub enum Event {
    Frame(Frame),
    Closed(Option<CloseFrame>),
}

impl OverlayClient {
    pub async fn next_event(&mut self, within: Duration) -> Option<Event> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match tokio::time::timeout(left, self.ws.next()).await {
                Err(_) => return None,
                Ok(None) | Ok(Some(Err(_))) => return Some(Event::Closed(None)),
                Ok(Some(Ok(Message::Text(text)))) => {
                    let v: serde_json::Value = serde_json::from_str(&text).expect("frame is JSON");
                    let status = match v["status"].as_str().expect("status") {
                        "active" => "active",
                        "live" => "live",
                        "offline" => "offline",
                        "reconnecting" => "reconnecting",
                        "disconnected" => "disconnected",
                        other => panic!("unexpected status {other}"),
                    };
                    let value = v["value"].as_f64().expect("value is a number");
                    return Some(Event::Frame(Frame { value, status }));
                }
                Ok(Some(Ok(Message::Close(frame)))) => return Some(Event::Closed(frame)),
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    pub async fn next_frame(&mut self, within: Duration) -> Option<Frame> {
        match self.next_event(within).await? {
            Event::Frame(f) => Some(f),
            Event::Closed(c) => panic!("connection closed while waiting for a frame: {c:?}"),
        }
    }

    /// Reads frames until one satisfies `pred`.
    pub async fn wait_for(&mut self, within: Duration, pred: impl Fn(&Frame) -> bool) -> Option<Frame> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let frame = self.next_frame(left).await?;
            if pred(&frame) {
                return Some(frame);
            }
        }
    }

    /// The next frame that carries `field` (the labels after a settings
    /// change, say), as JSON; frames without it are skipped.
    pub async fn next_with(&mut self, field: &str, within: Duration) -> Option<serde_json::Value> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match tokio::time::timeout(left, self.ws.next()).await.ok()? {
                Some(Ok(Message::Text(text))) => {
                    let frame: serde_json::Value = serde_json::from_str(&text).expect("frame is JSON");
                    if frame.get(field).is_some() {
                        return Some(frame);
                    }
                }
                Some(Ok(_)) => continue,
                other => panic!("connection ended while waiting for a frame with {field}: {other:?}"),
            }
        }
    }

    /// Reads (and drops) frames until the server closes the connection.
    pub async fn wait_for_close(&mut self, within: Duration) -> Option<Option<CloseFrame>> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.next_event(left).await? {
                Event::Frame(_) => continue,
                Event::Closed(frame) => return Some(frame),
            }
        }
    }

    /// Waits until the server's close frame has arrived, without reading
    /// it: a client that reads answers the server's pings (the WebSocket
    /// library does), and one that does not read answers nothing. Peeks at
    /// the socket's receive buffer instead (plain `ws://` only).
    pub async fn close_arrived_unread(&self, within: Duration) -> bool {
        let MaybeTlsStream::Plain(tcp) = self.ws.get_ref() else { panic!("a plain ws:// connection") };
        super::eventually(within, || async {
            let mut buffered = vec![0; 64 * 1024];
            // Never empty: the initial frame is there.
            let n = tcp.peek(&mut buffered).await.unwrap_or(0);
            opcodes(&buffered[..n]).contains(&OPCODE_CLOSE)
        })
        .await
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
        let _ = self.ws.send(Message::Close(None)).await;
    }
}

const OPCODE_CLOSE: u8 = 0x8;

/// The opcodes of the WebSocket frames a server sent (unmasked, RFC 6455
/// §5.2), in order; the last one may still be incomplete.
fn opcodes(mut bytes: &[u8]) -> Vec<u8> {
    let mut opcodes = Vec::new();
    while bytes.len() >= 2 {
        let (length, header) = match bytes[1] & 0x7f {
            126 if bytes.len() >= 4 => (usize::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
            127 if bytes.len() >= 10 => {
                (usize::try_from(u64::from_be_bytes(bytes[2..10].try_into().unwrap())).unwrap(), 10)
            }
            126 | 127 => break,
            short => (usize::from(short), 2),
        };
        opcodes.push(bytes[0] & 0x0f);
        bytes = bytes.get(header + length..).unwrap_or_default();
    }
    opcodes
}
