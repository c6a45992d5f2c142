//! HMAC-SHA256 (RFC 2104) over `sha2`, and webhook signatures in the Standard Webhooks
//! scheme (<https://www.standardwebhooks.com>): `webhook-signature: v1,<base64 HMAC-SHA256(key,
//! "<webhook-id>.<webhook-timestamp>.<body>")>`, so a signature binds the body to its event id
//! and send time and a captured request cannot be replayed outside the receiver's tolerance.
//! The key is the secret's bytes; a secret written `whsec_<base64>` is decoded first.

use sha2::{Digest, Sha256};

pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (RFC 4648 §4).
pub fn base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            out.push(if i <= c.len() { B64[(n >> shift) as usize & 63] as char } else { '=' });
        }
    }
    out
}

/// Decode standard base64 (padding optional); `None` on any other character.
pub fn unbase64(text: &str) -> Option<Vec<u8>> {
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for ch in text.trim_end_matches('=').bytes() {
        let v = B64.iter().position(|&b| b == ch)? as u32;
        bits = bits << 6 | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    Some(out)
}

/// The signing key of a secret: `whsec_<base64>` decoded, any other secret as it is.
pub fn signing_key(secret: &[u8]) -> Vec<u8> {
    std::str::from_utf8(secret)
        .ok()
        .and_then(|s| s.strip_prefix("whsec_"))
        .and_then(unbase64)
        .unwrap_or_else(|| secret.to_vec())
}

/// The `webhook-signature` header for an event id, a send time (Unix seconds) and a body.
pub fn webhook_signature(secret: &[u8], id: &str, timestamp: u64, body: &[u8]) -> String {
    let mut msg = format!("{id}.{timestamp}.").into_bytes();
    msg.extend_from_slice(body);
    format!("v1,{}", base64(&hmac_sha256(&signing_key(secret), &msg)))
}

/// A receiver's check: one of the header's space-separated signatures matches, and the
/// timestamp is within `tolerance_s` of `now` (Unix seconds). Compared in constant time.
pub fn verify_webhook(
    secret: &[u8],
    id: &str,
    timestamp: &str,
    body: &[u8],
    header: &str,
    now: u64,
    tolerance_s: u64,
) -> bool {
    let Ok(ts) = timestamp.parse::<u64>() else { return false };
    if ts.abs_diff(now) > tolerance_s {
        return false;
    }
    let want = webhook_signature(secret, id, ts, body);
    header.split(' ').any(|sig| constant_time_eq(sig.as_bytes(), want.as_bytes()))
}

/// Equality whose time depends only on the lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_and_matches_rfc4648() {
        for (raw, enc) in [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foobar", "Zm9vYmFy")] {
            assert_eq!(base64(raw.as_bytes()), enc);
            assert_eq!(unbase64(enc).unwrap(), raw.as_bytes());
        }
        assert_eq!(unbase64("a*b"), None);
    }

    #[test]
    fn the_standard_webhooks_example_verifies_and_a_replay_does_not() {
        // The example of the Standard Webhooks specification.
        let secret = b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let body = br#"{"test": 2432232314}"#;
        let sig = webhook_signature(secret, id, 1614265330, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(verify_webhook(secret, id, "1614265330", body, &sig, 1614265330 + 60, 300));
        assert!(!verify_webhook(secret, id, "1614265330", body, &sig, 1614265330 + 3600, 300), "too old: a replay");
        assert!(!verify_webhook(secret, "msg_other", "1614265330", body, &sig, 1614265330, 300));
        assert!(!verify_webhook(secret, id, "1614265330", b"{}", &sig, 1614265330, 300));
    }

    #[test]
    fn rfc4231_test_vectors() {
        // Test case 1.
        assert_eq!(
            hex(&hmac_sha256(&[0x0b; 20], b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        // Test case 2: short key.
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: key longer than the block.
        assert_eq!(
            hex(&hmac_sha256(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First")),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }
}
