//! Tunnels: an `https://` origin forwarded to a local `http://` address, as
//! ngrok and similar tools do for a webhook receiver on a development
//! machine. Twitch only calls `https://…:443` callbacks (§5.1), and some
//! client libraries refuse anything else (pyTwitchAPI's `EventSubWebhook`
//! requires an `https` callback URL). With a tunnel such a receiver runs as
//! plain HTTP on loopback: the simulator checks and shows the `https`
//! callback as Twitch would, and sends the request to the local address.
//! Headers and body are unchanged, so signatures verify as usual.

use super::state::Tunnel;
use super::util::check_callback;
use super::{SimError, Simulator};

/// `https://host[:443][/]` → `https://host` (lower-case host).
fn public_origin(url: &str) -> Option<String> {
    let rest = url.strip_prefix("https://")?.trim_end_matches('/');
    let host = rest.strip_suffix(":443").unwrap_or(rest);
    let valid = !host.is_empty() && !host.contains(['/', '?', '#', '@', ':']);
    valid.then(|| format!("https://{}", host.to_ascii_lowercase()))
}

/// `http://<loopback>:port[/]` → `http://<loopback>:port`.
fn local_origin(url: &str) -> Option<String> {
    let origin = url.trim_end_matches('/');
    let rest = origin.strip_prefix("http://")?;
    let valid = !rest.contains(['/', '?', '#']) && check_callback(origin).is_ok();
    valid.then(|| origin.to_owned())
}

/// The origin (`https://host`) and the rest (`/path?query`) of a callback.
fn split_https(callback: &str) -> Option<(String, &str)> {
    let rest = callback.strip_prefix("https://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let host = authority.strip_suffix(":443").unwrap_or(authority);
    Some((format!("https://{}", host.to_ascii_lowercase()), path))
}

impl Simulator {
    /// Forwards `public_url` (`https://host`, port 443) to `local_url`
    /// (`http://127.0.0.1:port` or another loopback address). Replaces an
    /// earlier tunnel of the same origin. Also `POST /sim/tunnels`.
    pub fn add_tunnel(&self, public_url: &str, local_url: &str) -> Result<(), SimError> {
        let public_origin = public_origin(public_url)
            .ok_or_else(|| SimError::BadRequest("public_url must be https://<host> (port 443, no path)".into()))?;
        let local_origin = local_origin(local_url)
            .ok_or_else(|| SimError::BadRequest("local_url must be http://<loopback host>:<port> (no path)".into()))?;
        let mut state = self.state();
        state.tunnels.retain(|t| t.public_origin != public_origin);
        state.tunnels.push(Tunnel { public_origin, local_origin });
        Ok(())
    }

    /// Removes the tunnel of `public_url`. Also `DELETE /sim/tunnels?public_url=…`.
    pub fn remove_tunnel(&self, public_url: &str) -> Result<(), SimError> {
        let origin = public_origin(public_url)
            .ok_or_else(|| SimError::BadRequest("public_url must be https://<host> (port 443, no path)".into()))?;
        let mut state = self.state();
        let before = state.tunnels.len();
        state.tunnels.retain(|t| t.public_origin != origin);
        if state.tunnels.len() == before {
            return Err(SimError::NotFound(format!("tunnel {origin}")));
        }
        Ok(())
    }

    /// Where a request to `callback` really goes.
    pub(crate) fn tunnelled(&self, callback: &str) -> String {
        let Some((origin, rest)) = split_https(callback) else { return callback.to_owned() };
        let state = self.state();
        match state.tunnels.iter().find(|t| t.public_origin == origin) {
            Some(tunnel) => format!("{}{rest}", tunnel.local_origin),
            None => callback.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalised_and_checked() {
        assert_eq!(public_origin("https://Hooks.Example/").as_deref(), Some("https://hooks.example"));
        assert_eq!(public_origin("https://hooks.example:443").as_deref(), Some("https://hooks.example"));
        assert_eq!(public_origin("https://hooks.example:8443"), None);
        assert_eq!(public_origin("https://hooks.example/path"), None);
        assert_eq!(public_origin("http://hooks.example"), None);
        assert_eq!(local_origin("http://127.0.0.1:8099/").as_deref(), Some("http://127.0.0.1:8099"));
        assert_eq!(local_origin("http://localhost:8099").as_deref(), Some("http://localhost:8099"));
        assert_eq!(local_origin("http://10.0.0.1:8099"), None, "loopback only: not an open proxy");
        assert_eq!(local_origin("http://127.0.0.1:8099/x"), None);
    }

    #[test]
    fn a_callback_of_a_tunnelled_origin_goes_to_the_local_address() {
        let sim = Simulator::new(super::super::SimConfig::default());
        sim.add_tunnel("https://hooks.example", "http://127.0.0.1:8099").unwrap();
        assert_eq!(sim.tunnelled("https://HOOKS.example:443/callback?x=1"), "http://127.0.0.1:8099/callback?x=1");
        assert_eq!(sim.tunnelled("https://hooks.example"), "http://127.0.0.1:8099");
        assert_eq!(sim.tunnelled("https://other.example/callback"), "https://other.example/callback");
        assert_eq!(sim.tunnelled("http://127.0.0.1:9/x"), "http://127.0.0.1:9/x");
        sim.remove_tunnel("https://hooks.example/").unwrap();
        assert_eq!(sim.tunnelled("https://hooks.example/callback"), "https://hooks.example/callback");
        assert!(sim.remove_tunnel("https://hooks.example").is_err());
    }
}
