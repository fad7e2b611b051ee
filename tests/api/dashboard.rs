//! The streamer's dashboard over real HTTP with a cookie jar, in both
//! storage shapes: logging in through the Twitch simulator, the settings
//! form and the overlay actions, the tokens behind the login, the bot
//! account, and the limits and headers that keep accounts safe.

use std::time::Duration;

mod actions;
mod bot;
mod headers;
mod limits;
mod login;
mod settings;
mod tokens;

/// How long an overlay may take to show a change.
const WAIT: Duration = Duration::from_secs(3);
