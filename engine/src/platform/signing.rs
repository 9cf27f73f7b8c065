//! Webhook request headers and their HMAC-SHA256 signature.
//!
//! The signature is `sha256=<lowercase hex of HMAC-SHA256(secret, "{timestamp}.{raw body}")>` with the
//! timestamp in Unix seconds; verification is constant-time and bounds the timestamp's age.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::webhook::WebhookEventKind;

type HmacSha256 = Hmac<Sha256>;

/// Prefix of the signature header value.
pub const SIGNATURE_PREFIX: &str = "sha256=";
/// How far (either way) a timestamp may be from the verifier's clock by default, in seconds.
pub const DEFAULT_MAX_AGE_SECS: u64 = 300;
/// `User-Agent` the platform sends with webhooks.
pub const USER_AGENT: &str = "HMS-Sovereign/1.0";

/// Header names of a webhook request.
pub mod header {
    /// Always `application/json`.
    pub const CONTENT_TYPE: &str = "Content-Type";
    /// Identifies the sender.
    pub const USER_AGENT: &str = "User-Agent";
    /// The event name, e.g. `tool-calls`.
    pub const EVENT: &str = "X-Webhook-Event";
    /// Unix time in seconds, covered by the signature.
    pub const TIMESTAMP: &str = "X-Webhook-Timestamp";
    /// `sha256=<hex>`; sent only when a webhook secret is configured.
    pub const SIGNATURE: &str = "X-Webhook-Signature";
}

const SIGNATURE_HEX_LEN: usize = 64;

/// Why a webhook signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The verifier has no secret; an empty key would let anyone sign.
    #[error("webhook secret is empty; configure webhook_secret to verify signatures")]
    EmptySecret,
    /// No signature header value.
    #[error("X-Webhook-Signature is missing or empty")]
    MissingSignature,
    /// The signature is not 64 hex digits (after an optional `sha256=`).
    #[error("X-Webhook-Signature is malformed: {0}; expected sha256=<64 hex digits>")]
    MalformedSignature(&'static str),
    /// The timestamp header is not a whole number of seconds.
    #[error("X-Webhook-Timestamp `{0}` is not Unix time in whole seconds")]
    MalformedTimestamp(String),
    /// The request is older than allowed (replay protection).
    #[error("webhook timestamp is {age_secs} s old, more than the allowed {max_age_secs} s")]
    Stale {
        /// How old it is.
        age_secs: u64,
        /// The limit.
        max_age_secs: u64,
    },
    /// The timestamp lies further ahead than allowed (clock skew, or milliseconds sent as seconds).
    #[error("webhook timestamp is {ahead_secs} s in the future, more than the allowed {max_age_secs} s (is it in seconds?)")]
    FromFuture {
        /// How far ahead it is.
        ahead_secs: u64,
        /// The limit.
        max_age_secs: u64,
    },
    /// Well-formed but wrong: another secret signed it, or the body or timestamp were changed.
    #[error("webhook signature does not match the body and timestamp under the configured secret")]
    Mismatch,
}

fn mac(secret: &[u8], timestamp_secs: u64, raw_body: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match HmacSha256::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(timestamp_secs.to_string().as_bytes());
    mac.update(b".");
    mac.update(raw_body);
    mac
}

/// The `X-Webhook-Signature` value for `raw_body` sent at `timestamp_secs`: `sha256=<lowercase hex>`.
pub fn sign(secret: &[u8], timestamp_secs: u64, raw_body: &[u8]) -> String {
    let digest = mac(secret, timestamp_secs, raw_body)
        .finalize()
        .into_bytes();
    let mut out = String::with_capacity(SIGNATURE_PREFIX.len() + SIGNATURE_HEX_LEN);
    out.push_str(SIGNATURE_PREFIX);
    for byte in digest {
        out.push(hex_digit(byte >> 4));
        out.push(hex_digit(byte & 0x0f));
    }
    out
}

/// The headers of a webhook request, in the platform's order.
///
/// The signature header is added only when `secret` is set and non-empty, as the platform does when a
/// `webhook_secret` is configured.
pub fn webhook_headers(
    event: WebhookEventKind,
    timestamp_secs: u64,
    raw_body: &[u8],
    secret: Option<&[u8]>,
) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        (header::CONTENT_TYPE, "application/json".to_owned()),
        (header::USER_AGENT, USER_AGENT.to_owned()),
        (header::EVENT, event.as_str().to_owned()),
        (header::TIMESTAMP, timestamp_secs.to_string()),
    ];
    if let Some(secret) = secret.filter(|s| !s.is_empty()) {
        headers.push((header::SIGNATURE, sign(secret, timestamp_secs, raw_body)));
    }
    headers
}

/// Checks a received webhook: timestamp within `max_age_secs` of `now_secs` (either direction), then
/// the signature (with or without `sha256=`) against `raw_body` in constant time.
///
/// Pass the body bytes exactly as received; re-serialized JSON will not match.
pub fn verify(
    secret: &[u8],
    signature_header: &str,
    timestamp_header: &str,
    raw_body: &[u8],
    now_secs: u64,
    max_age_secs: u64,
) -> Result<(), SignatureError> {
    if secret.is_empty() {
        return Err(SignatureError::EmptySecret);
    }
    let timestamp_text = timestamp_header.trim();
    if timestamp_text.is_empty() || !timestamp_text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignatureError::MalformedTimestamp(
            timestamp_header.to_owned(),
        ));
    }
    let timestamp_secs: u64 = timestamp_text
        .parse()
        .map_err(|_| SignatureError::MalformedTimestamp(timestamp_header.to_owned()))?;
    if now_secs >= timestamp_secs {
        let age_secs = now_secs - timestamp_secs;
        if age_secs > max_age_secs {
            return Err(SignatureError::Stale {
                age_secs,
                max_age_secs,
            });
        }
    } else {
        let ahead_secs = timestamp_secs - now_secs;
        if ahead_secs > max_age_secs {
            return Err(SignatureError::FromFuture {
                ahead_secs,
                max_age_secs,
            });
        }
    }

    let expected = decode_signature(signature_header)?;
    mac(secret, timestamp_secs, raw_body)
        .verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

/// Strips an optional `sha256=` (any case) and decodes 64 hex digits (any case).
fn decode_signature(header: &str) -> Result<[u8; 32], SignatureError> {
    let value = header.trim();
    if value.is_empty() {
        return Err(SignatureError::MissingSignature);
    }
    let hex = match value.get(..SIGNATURE_PREFIX.len()) {
        Some(prefix) if prefix.eq_ignore_ascii_case(SIGNATURE_PREFIX) => &value[prefix.len()..],
        _ => value,
    };
    if hex.len() != SIGNATURE_HEX_LEN {
        return Err(SignatureError::MalformedSignature(
            "wrong length for an HMAC-SHA256",
        ));
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
        let high = hex_value(pair[0]);
        let low = hex_value(pair[1]);
        match (high, low) {
            (Some(h), Some(l)) => *byte = (h << 4) | l,
            _ => return Err(SignatureError::MalformedSignature("not hexadecimal")),
        }
    }
    Ok(out)
}

fn hex_digit(nibble: u8) -> char {
    char::from(b"0123456789abcdef"[usize::from(nibble & 0x0f)])
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let signature = sign(b"k", 1, b"{}");
        let decoded = decode_signature(&signature).expect("own output decodes");
        let hex: String = decoded
            .iter()
            .flat_map(|b| [hex_digit(b >> 4), hex_digit(b & 0x0f)])
            .collect();
        assert_eq!(format!("{SIGNATURE_PREFIX}{hex}"), signature);
        assert_eq!(
            decode_signature(&signature.to_uppercase()).expect("case-insensitive"),
            decoded
        );
    }

    #[test]
    fn prefix_only_is_malformed() {
        assert_eq!(
            decode_signature("sha256="),
            Err(SignatureError::MalformedSignature(
                "wrong length for an HMAC-SHA256"
            ))
        );
        assert_eq!(
            decode_signature("  "),
            Err(SignatureError::MissingSignature)
        );
    }
}
