//! Configuration parsing from an environment: `NAME=VALUE` lines (the first
//! `=` splits; a later line for the same name wins, as in a `.env` file read
//! after the process environment would not — here simply the last one).
#![no_main]

use std::collections::HashMap;

use chatpulse::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut env: HashMap<String, String> = HashMap::new();
    for line in text.lines() {
        if let Some((name, value)) = line.split_once('=') {
            env.insert(name.to_owned(), value.to_owned());
        }
    }
    let first = Config::from_lookup(|name| env.get(name).cloned());
    // The same environment always gives the same answer.
    let second = Config::from_lookup(|name| env.get(name).cloned());
    match (&first, &second) {
        (Ok(a), Ok(b)) => assert_eq!(format!("{a:?}"), format!("{b:?}")),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        _ => panic!("the same environment was read two ways"),
    }
});
