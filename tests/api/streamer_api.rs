//! The streamer API (`/api/v1`) and its personal tokens: the tokens' storage
//! contract on every durable backend, the `chatpulse api-tokens` commands,
//! and the routes over real HTTP in both shapes.

use crate::helpers::*;

mod cli;
mod contract;
mod dashboard;
mod history;
mod routes;

/// A fresh token for `app`'s streamer, created as the dashboard or the CLI
/// would (through the repository the app uses).
async fn token_for(app: &TestApp, streamer: chatpulse::domain::StreamerId) -> String {
    let name = chatpulse::domain::TokenName::parse("tests").unwrap();
    let created = chatpulse::app::api::create_token(app.repo.as_ref(), streamer, name).await.unwrap();
    created.secret.expose().to_owned()
}
