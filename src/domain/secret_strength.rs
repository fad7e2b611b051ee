//! A simple guard against secrets nobody generated: production refuses a
//! secret made of a few distinct characters or repeating a short pattern
//! (`aaaa…`, `0000…1`, `abab…`). It cannot prove a secret random; it catches
//! the placeholders people type.

/// Fewer distinct bytes than this: not generated.
const MIN_DISTINCT: usize = 8;
/// Below this Shannon entropy (bits per character of the secret's own
/// character frequencies): not generated. 10 distinct characters give 3.3;
/// random hex gives close to 4, random base64 close to 6.
const MIN_BITS_PER_CHAR: f64 = 3.0;

/// Why `secret` looks like a placeholder rather than a generated value, or
/// `None` when it passes.
pub fn weakness(secret: &str) -> Option<String> {
    let bytes = secret.as_bytes();
    let mut counts = [0usize; 256];
    for &b in bytes {
        counts[usize::from(b)] += 1;
    }
    let distinct = counts.iter().filter(|&&n| n > 0).count();
    if distinct < MIN_DISTINCT {
        return Some(format!(
            "has only {distinct} distinct characters: generate a random value (e.g. `openssl rand -hex 32`)"
        ));
    }
    let len = bytes.len() as f64;
    let bits: f64 = counts
        .iter()
        .filter(|&&n| n > 0)
        .map(|&n| {
            let p = n as f64 / len;
            -p * p.log2()
        })
        .sum();
    (bits < MIN_BITS_PER_CHAR).then(|| {
        format!(
            "is too predictable ({bits:.1} bits per character): generate a random value (e.g. `openssl rand -hex 32`)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_refused() {
        for placeholder in [
            "a".repeat(64),
            format!("{}1", "0".repeat(63)),
            "ab".repeat(32),
            "password".repeat(8),
            format!("{}abcdefgh", "x".repeat(56)),
        ] {
            assert!(weakness(&placeholder).is_some(), "{placeholder}");
        }
    }

    #[test]
    fn generated_secrets_pass() {
        for generated in [
            "x7f3d9a0c2e4b6f8a1c3e5d7b9f0a2c4e6d8b0f1a3c5e7d9b2f4a6c8e0d1b3f5a7",
            "8e1f0a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7",
            "a-real-webhook-secret-42",
            "Zq8v1LmR0t",
            "kP3/9xQz+Lw2Tn7bHc5VdE1fGy0=",
        ] {
            assert_eq!(weakness(generated), None, "{generated}");
        }
    }
}
