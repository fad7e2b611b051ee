//! Encryption at rest for streamers' Twitch access and refresh tokens.
//!
//! # Stored format
//!
//! Every value is sealed with AES-256-GCM under a fresh random 96-bit nonce
//! and stored as one opaque byte string:
//!
//! ```text
//! nonce (12 bytes) ‖ ciphertext (same length as the UTF-8 token) ‖ tag (16 bytes)
//! ```
//!
//! The `owner` (for example the streamer id) is passed as the GCM associated
//! data: it is authenticated but not stored, so a value copied into another
//! owner's row fails to decrypt instead of handing one streamer's token to
//! another. Equal tokens encrypt to different bytes because the nonce differs.
//!
//! # Key rotation
//!
//! A [`TokenCipher`] holds the current key and, optionally, the previous one.
//! New values are always sealed under the current key; [`TokenCipher::decrypt`]
//! tries the current key first and then the previous key, so rotating the key
//! does not log anyone out. [`TokenCipher::needs_reencryption`] reports values
//! that only open under the previous key, so callers can rewrite them under the
//! current key (for example on next use or in a background sweep); once none
//! are left, the previous key can be dropped from the configuration.
//!
//! Keys are 64 hex digits (256 bits). They never appear in `Debug` output or
//! in error messages.

use std::fmt;

use aes_gcm::aead::{Aead, Generate, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};

/// Length of the random nonce prefixed to every stored value (96 bits).
pub const NONCE_LEN: usize = 12;

/// Length of the GCM authentication tag that ends every stored value.
pub const TAG_LEN: usize = 16;

/// Length of a key in bytes (AES-256); the hex form is twice as long.
pub const KEY_LEN: usize = 32;

/// Which configured key an error is about (never the key itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRole {
    Current,
    Previous,
}

impl fmt::Display for KeyRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Current => "current",
            Self::Previous => "previous",
        })
    }
}

/// Failures to build a [`TokenCipher`] or to seal/open a value. Messages never
/// contain key material or plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("{0} token encryption key must be {expected} hex digits, got {1}", expected = KEY_LEN * 2)]
    KeyLength(KeyRole, usize),
    #[error("{0} token encryption key is not valid hexadecimal")]
    KeyHex(KeyRole),
    #[error("stored token is too short: {0} bytes, need at least {min}", min = NONCE_LEN + TAG_LEN)]
    TooShort(usize),
    /// Authentication failed under every configured key: wrong key, wrong
    /// owner or altered bytes (AES-GCM deliberately cannot tell these apart).
    #[error("stored token could not be decrypted (wrong key, wrong owner or corrupted value)")]
    Undecryptable,
    #[error("decrypted token is not valid UTF-8")]
    NotUtf8,
    #[error("system random number generator failed while generating a nonce")]
    Rng,
    #[error("token could not be encrypted (input too long)")]
    Encrypt,
}

/// AES-256-GCM sealing of stored tokens with an optional previous key for
/// rotation. See the [module docs](self) for the format.
#[derive(Clone)]
pub struct TokenCipher {
    current: Aes256Gcm,
    previous: Option<Aes256Gcm>,
}

impl fmt::Debug for TokenCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCipher")
            .field("current", &"<redacted>")
            .field("previous", &self.previous.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Decodes a 64-hex-digit key (surrounding whitespace ignored) into a cipher.
fn cipher_from_hex(hex_key: &str, role: KeyRole) -> Result<Aes256Gcm, CryptoError> {
    let hex_key = hex_key.trim();
    if hex_key.len() != KEY_LEN * 2 {
        return Err(CryptoError::KeyLength(role, hex_key.len()));
    }
    let mut key = [0u8; KEY_LEN];
    // The hex crate's error names the offending character, so it is dropped
    // rather than passed on: it would leak part of the key into logs.
    let decoded = hex::decode_to_slice(hex_key, &mut key).map_err(|_| CryptoError::KeyHex(role));
    let cipher = decoded.map(|()| Aes256Gcm::new(&key.into()));
    // Best effort: do not leave the raw key in this stack frame.
    key.fill(0);
    cipher
}

/// Opens `stored` (nonce ‖ ciphertext ‖ tag) with one key, returning the raw plaintext.
fn open(cipher: &Aes256Gcm, stored: &[u8], owner: &str) -> Result<Vec<u8>, CryptoError> {
    if stored.len() < NONCE_LEN + TAG_LEN {
        return Err(CryptoError::TooShort(stored.len()));
    }
    let (nonce, sealed) = stored.split_at(NONCE_LEN);
    let nonce = Nonce::try_from(nonce).map_err(|_| CryptoError::TooShort(stored.len()))?;
    cipher.decrypt(&nonce, Payload { msg: sealed, aad: owner.as_bytes() }).map_err(|_| CryptoError::Undecryptable)
}

impl TokenCipher {
    /// Builds a cipher from the current key and, during a rotation, the
    /// previous one. Each key is 64 hex digits (either case).
    ///
    /// # Errors
    /// [`CryptoError::KeyLength`] or [`CryptoError::KeyHex`] naming which key is bad.
    pub fn new(current_hex: &str, previous_hex: Option<&str>) -> Result<Self, CryptoError> {
        let current = cipher_from_hex(current_hex, KeyRole::Current)?;
        let previous = previous_hex.map(|hex_key| cipher_from_hex(hex_key, KeyRole::Previous)).transpose()?;
        Ok(Self { current, previous })
    }

    /// Seals `plaintext` under the current key with a fresh random nonce,
    /// binding it to `owner`. Returns nonce ‖ ciphertext ‖ tag.
    ///
    /// # Errors
    /// [`CryptoError::Rng`] if the system RNG fails; [`CryptoError::Encrypt`]
    /// if the input exceeds AES-GCM's limits (about 64 GiB), which tokens never do.
    pub fn encrypt(&self, plaintext: &str, owner: &str) -> Result<Vec<u8>, CryptoError> {
        let nonce = Nonce::try_generate().map_err(|_| CryptoError::Rng)?;
        let sealed = self
            .current
            .encrypt(&nonce, Payload { msg: plaintext.as_bytes(), aad: owner.as_bytes() })
            .map_err(|_| CryptoError::Encrypt)?;
        let mut stored = Vec::with_capacity(NONCE_LEN + sealed.len());
        stored.extend_from_slice(&nonce);
        stored.extend_from_slice(&sealed);
        Ok(stored)
    }

    /// Opens a stored value for `owner`, trying the current key and then the
    /// previous key.
    ///
    /// # Errors
    /// [`CryptoError::TooShort`] for input shorter than nonce + tag,
    /// [`CryptoError::Undecryptable`] when no configured key authenticates it
    /// for this owner, [`CryptoError::NotUtf8`] if the plaintext is not UTF-8.
    pub fn decrypt(&self, stored: &[u8], owner: &str) -> Result<String, CryptoError> {
        let plaintext = match open(&self.current, stored, owner) {
            Ok(plaintext) => plaintext,
            Err(CryptoError::Undecryptable) => match &self.previous {
                Some(previous) => open(previous, stored, owner)?,
                None => return Err(CryptoError::Undecryptable),
            },
            Err(other) => return Err(other),
        };
        String::from_utf8(plaintext).map_err(|_| CryptoError::NotUtf8)
    }

    /// True when `stored` opens only under the previous key, i.e. it should be
    /// rewritten with [`encrypt`](Self::encrypt). False when it opens under the
    /// current key, when no previous key is configured, or when it does not
    /// open at all.
    pub fn needs_reencryption(&self, stored: &[u8], owner: &str) -> bool {
        match &self.previous {
            Some(previous) => open(&self.current, stored, owner).is_err() && open(previous, stored, owner).is_ok(),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const KEY_B: &str = "f0e1d2c3b4a5968778695a4b3c2d1e0ff0e1d2c3b4a5968778695a4b3c2d1e0f";
    const TOKEN: &str = "oauth-access-token-0123456789abcdefghij";
    const OWNER: &str = "streamer-42";

    fn cipher(current: &str, previous: Option<&str>) -> TokenCipher {
        match TokenCipher::new(current, previous) {
            Ok(cipher) => cipher,
            Err(err) => panic!("test key rejected: {err}"),
        }
    }

    fn seal(cipher: &TokenCipher, plaintext: &str, owner: &str) -> Vec<u8> {
        match cipher.encrypt(plaintext, owner) {
            Ok(stored) => stored,
            Err(err) => panic!("encryption failed: {err}"),
        }
    }

    #[test]
    fn equal_tokens_encrypt_to_different_bytes_that_do_not_contain_the_plaintext() {
        let c = cipher(KEY_A, None);
        let first = seal(&c, TOKEN, OWNER);
        let second = seal(&c, TOKEN, OWNER);
        assert_ne!(first, second);
        assert_ne!(first[..NONCE_LEN], second[..NONCE_LEN]);
        assert_ne!(first, TOKEN.as_bytes());
        assert_eq!(first.len(), NONCE_LEN + TOKEN.len() + TAG_LEN);
        for stored in [&first, &second] {
            assert!(!stored.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()));
            // Not even a recognisable prefix of the token survives.
            assert!(!stored.windows(8).any(|w| w == &TOKEN.as_bytes()[..8]));
        }
    }

    #[test]
    fn a_token_round_trips() {
        let c = cipher(KEY_A, None);
        for token in [TOKEN, "", "ünïcødé-token ✓"] {
            let stored = seal(&c, token, OWNER);
            assert_eq!(c.decrypt(&stored, OWNER), Ok(token.to_owned()));
            assert!(!c.needs_reencryption(&stored, OWNER));
        }
    }

    #[test]
    fn decrypting_with_the_wrong_key_fails_cleanly() {
        let stored = seal(&cipher(KEY_A, None), TOKEN, OWNER);
        let other = cipher(KEY_B, None);
        assert_eq!(other.decrypt(&stored, OWNER), Err(CryptoError::Undecryptable));
        assert!(!other.needs_reencryption(&stored, OWNER));
    }

    #[test]
    fn a_value_copied_to_another_owner_fails_to_decrypt() {
        let c = cipher(KEY_A, Some(KEY_B));
        let stored = seal(&c, TOKEN, OWNER);
        assert_eq!(c.decrypt(&stored, "streamer-43"), Err(CryptoError::Undecryptable));
        assert_eq!(c.decrypt(&stored, ""), Err(CryptoError::Undecryptable));
        assert!(!c.needs_reencryption(&stored, "streamer-43"));
    }

    #[test]
    fn flipping_any_byte_makes_decryption_fail() {
        let c = cipher(KEY_A, Some(KEY_B));
        let stored = seal(&c, TOKEN, OWNER);
        for i in 0..stored.len() {
            let mut tampered = stored.clone();
            tampered[i] ^= 0x01;
            assert_eq!(c.decrypt(&tampered, OWNER), Err(CryptoError::Undecryptable), "byte {i}");
        }
        let mut extended = stored.clone();
        extended.push(0);
        assert_eq!(c.decrypt(&extended, OWNER), Err(CryptoError::Undecryptable));
    }

    #[test]
    fn truncated_input_fails_without_panicking() {
        let c = cipher(KEY_A, Some(KEY_B));
        let stored = seal(&c, TOKEN, OWNER);
        for len in 0..NONCE_LEN + TAG_LEN {
            assert_eq!(c.decrypt(&stored[..len], OWNER), Err(CryptoError::TooShort(len)));
            assert!(!c.needs_reencryption(&stored[..len], OWNER));
        }
        for len in NONCE_LEN + TAG_LEN..stored.len() {
            assert_eq!(c.decrypt(&stored[..len], OWNER), Err(CryptoError::Undecryptable));
        }
    }

    #[test]
    fn non_utf8_plaintext_is_reported_as_such() {
        let c = cipher(KEY_A, None);
        let nonce = [7u8; NONCE_LEN];
        let sealed = c.current.encrypt(&nonce.into(), Payload { msg: &[0xff, 0xfe], aad: OWNER.as_bytes() });
        let Ok(sealed) = sealed else { panic!("encryption failed") };
        let stored = [nonce.as_slice(), &sealed].concat();
        assert_eq!(c.decrypt(&stored, OWNER), Err(CryptoError::NotUtf8));
    }

    #[test]
    fn after_rotation_old_values_decrypt_with_the_previous_key_and_need_reencryption() {
        let old = seal(&cipher(KEY_A, None), TOKEN, OWNER);
        let rotated = cipher(KEY_B, Some(KEY_A));
        assert_eq!(rotated.decrypt(&old, OWNER), Ok(TOKEN.to_owned()));
        assert!(rotated.needs_reencryption(&old, OWNER));

        let fresh = seal(&rotated, TOKEN, OWNER);
        assert!(!rotated.needs_reencryption(&fresh, OWNER));
        assert_eq!(cipher(KEY_B, None).decrypt(&fresh, OWNER), Ok(TOKEN.to_owned()));
        assert_eq!(cipher(KEY_A, None).decrypt(&fresh, OWNER), Err(CryptoError::Undecryptable));
    }

    #[test]
    fn after_rotation_old_values_fail_when_no_previous_key_is_configured() {
        let old = seal(&cipher(KEY_A, None), TOKEN, OWNER);
        let rotated = cipher(KEY_B, None);
        assert_eq!(rotated.decrypt(&old, OWNER), Err(CryptoError::Undecryptable));
        assert!(!rotated.needs_reencryption(&old, OWNER));
    }

    #[test]
    fn bad_key_hex_or_length_is_rejected_and_names_the_key() {
        use KeyRole::{Current, Previous};
        let short = &KEY_A[..62];
        let long = format!("{KEY_A}00");
        let not_hex = format!("{}zz", &KEY_A[..62]);
        assert_eq!(TokenCipher::new(short, None).err(), Some(CryptoError::KeyLength(Current, 62)));
        assert_eq!(TokenCipher::new(&long, None).err(), Some(CryptoError::KeyLength(Current, 66)));
        assert_eq!(TokenCipher::new("", None).err(), Some(CryptoError::KeyLength(Current, 0)));
        assert_eq!(TokenCipher::new(&not_hex, None).err(), Some(CryptoError::KeyHex(Current)));
        assert_eq!(TokenCipher::new(KEY_A, Some(short)).err(), Some(CryptoError::KeyLength(Previous, 62)));
        assert_eq!(TokenCipher::new(KEY_A, Some(&not_hex)).err(), Some(CryptoError::KeyHex(Previous)));
        // Multi-byte characters count as bytes and never reach the hex decoder's indexing.
        let wide = "é".repeat(32);
        assert_eq!(TokenCipher::new(&wide, None).err(), Some(CryptoError::KeyHex(Current)));

        let message = CryptoError::KeyHex(Previous).to_string();
        assert!(message.contains("previous") && !message.contains(&KEY_A[..8]));
        // Upper-case digits and surrounding whitespace (e.g. from an env file) are accepted.
        let upper = cipher(&format!(" {}\n", KEY_A.to_uppercase()), None);
        assert_eq!(upper.decrypt(&seal(&cipher(KEY_A, None), TOKEN, OWNER), OWNER), Ok(TOKEN.to_owned()));
    }

    #[test]
    fn debug_output_does_not_reveal_the_keys() {
        for c in [cipher(KEY_A, None), cipher(KEY_A, Some(KEY_B))] {
            let shown = format!("{c:?} {c:#?}");
            assert!(shown.contains("redacted"), "{shown}");
            for key in [KEY_A, KEY_B] {
                assert!(!shown.to_lowercase().contains(&key[..8]), "{shown}");
            }
            // Nor the raw bytes as a decimal array.
            assert!(!shown.contains("0, 1, 2, 3"), "{shown}");
        }
        assert_eq!(format!("{:?}", cipher(KEY_A, None)), r#"TokenCipher { current: "<redacted>", previous: None }"#);
    }
}
