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

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
        let _ = self.ws.send(Message::Close(None)).await;
    }
}
