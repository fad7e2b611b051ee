//! The dashboard's settings form (`POST /dashboard/config`): an arbitrary
//! urlencoded body, decoded as the handler decodes it, laid over the default
//! config and over a saved one, and validated.
#![no_main]

use chatpulse::domain::{ConfigInput, OverlayConfig};
use chatpulse::http::read_settings_form;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let saved = OverlayConfig::default();
    let over_nothing = read_settings_form(data, None);
    let over_saved = read_settings_form(data, Some(&saved));
    // Decoding does not depend on what the fields are laid over.
    assert_eq!(over_nothing.is_ok(), over_saved.is_ok());
    if let Ok(Ok(config)) = over_saved {
        // A config the form accepted reads back as itself: what the
        // dashboard shows after a save is what was saved.
        let again = ConfigInput::from_config(&config).parse();
        assert_eq!(again.as_ref().ok(), Some(&config), "an accepted config does not read back as itself");
    }
});
