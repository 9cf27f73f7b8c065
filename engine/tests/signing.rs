//! Webhook signing: the HMAC-SHA256 primitive against RFC 4231, signatures recomputed independently,
//! the header set, and every way verification must fail.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use voxline_engine::platform::signing::{
    header, sign, verify, webhook_headers, SignatureError, DEFAULT_MAX_AGE_SECS, SIGNATURE_PREFIX,
    USER_AGENT,
};
use voxline_engine::platform::WebhookEventKind;

const SECRET: &[u8] = b"whsec_test_secret";
const TS: u64 = 1_765_627_530;
const BODY: &[u8] = br#"{"message":{"type":"status-update"}}"#;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hmac_hex(key: &[u8], data: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(data);
    hex(&mac.finalize().into_bytes())
}

/// RFC 4231 §4 test cases 1–4, 6 and 7 (case 5 tests truncated output, which signing does not use).
#[test]
fn hmac_sha256_matches_rfc_4231() {
    let key_25: Vec<u8> = (1..=25).collect();
    let cases: [(&[u8], &[u8], &str); 6] = [
        (
            &[0x0b; 20],
            b"Hi There",
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
        ),
        (
            b"Jefe",
            b"what do ya want for nothing?",
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        ),
        (
            &[0xaa; 20],
            &[0xdd; 50],
            "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
        ),
        (
            &key_25,
            &[0xcd; 50],
            "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
        ),
        (
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
        ),
        (
            &[0xaa; 131],
            b"This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.",
            "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
        ),
    ];
    for (i, (key, data, expected)) in cases.iter().enumerate() {
        assert_eq!(hmac_hex(key, data), *expected, "RFC 4231 case {i}");
    }
}

#[test]
fn signature_is_hmac_of_timestamp_dot_body() {
    let signature = sign(SECRET, TS, BODY);
    let mut message = format!("{TS}.").into_bytes();
    message.extend_from_slice(BODY);
    assert_eq!(
        signature,
        format!("{SIGNATURE_PREFIX}{}", hmac_hex(SECRET, &message))
    );
    // Known answer computed with a separate HMAC implementation (Python's hmac module).
    assert_eq!(
        signature,
        "sha256=37bee4a262e12cf20b1effea904a4c3701d1941203d94a5d1d04e4c57721e047"
    );
    assert!(signature[SIGNATURE_PREFIX.len()..]
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
}

#[test]
fn signed_payload_verifies() {
    let signature = sign(SECRET, TS, BODY);
    assert_eq!(
        verify(
            SECRET,
            &signature,
            &TS.to_string(),
            BODY,
            TS,
            DEFAULT_MAX_AGE_SECS
        ),
        Ok(())
    );
    // Within the window on both sides, including the edges.
    for now in [TS - DEFAULT_MAX_AGE_SECS, TS + DEFAULT_MAX_AGE_SECS, TS + 1] {
        assert_eq!(
            verify(
                SECRET,
                &signature,
                &TS.to_string(),
                BODY,
                now,
                DEFAULT_MAX_AGE_SECS
            ),
            Ok(()),
            "now = {now}"
        );
    }
}

#[test]
fn prefix_is_optional_and_case_is_ignored() {
    let signature = sign(SECRET, TS, BODY);
    let bare = &signature[SIGNATURE_PREFIX.len()..];
    let ts = TS.to_string();
    assert_eq!(verify(SECRET, bare, &ts, BODY, TS, 300), Ok(()));
    assert_eq!(
        verify(SECRET, &bare.to_uppercase(), &ts, BODY, TS, 300),
        Ok(())
    );
    assert_eq!(
        verify(SECRET, &signature.to_uppercase(), &ts, BODY, TS, 300),
        Ok(())
    );
    assert_eq!(
        verify(SECRET, &format!(" {signature} "), &ts, BODY, TS, 300),
        Ok(())
    );
}

#[test]
fn tampered_body_is_rejected() {
    let signature = sign(SECRET, TS, BODY);
    let tampered = br#"{"message":{"type":"status-update","x":1}}"#;
    assert_eq!(
        verify(SECRET, &signature, &TS.to_string(), tampered, TS, 300),
        Err(SignatureError::Mismatch)
    );
    // Whitespace changes count as tampering too: the signature covers the raw bytes.
    let reformatted = br#"{"message": {"type": "status-update"}}"#;
    assert_eq!(
        verify(SECRET, &signature, &TS.to_string(), reformatted, TS, 300),
        Err(SignatureError::Mismatch)
    );
}

#[test]
fn wrong_secret_and_moved_timestamp_are_rejected() {
    let signature = sign(SECRET, TS, BODY);
    assert_eq!(
        verify(
            b"another_secret",
            &signature,
            &TS.to_string(),
            BODY,
            TS,
            300
        ),
        Err(SignatureError::Mismatch)
    );
    // Replaying the same signature with a fresh timestamp fails: the timestamp is signed.
    let later = TS + 60;
    assert_eq!(
        verify(SECRET, &signature, &later.to_string(), BODY, later, 300),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        verify(b"", &signature, &TS.to_string(), BODY, TS, 300),
        Err(SignatureError::EmptySecret)
    );
}

#[test]
fn stale_and_future_timestamps_are_rejected() {
    let signature = sign(SECRET, TS, BODY);
    let ts = TS.to_string();
    assert_eq!(
        verify(
            SECRET,
            &signature,
            &ts,
            BODY,
            TS + 301,
            DEFAULT_MAX_AGE_SECS
        ),
        Err(SignatureError::Stale {
            age_secs: 301,
            max_age_secs: 300
        })
    );
    assert_eq!(
        verify(
            SECRET,
            &signature,
            &ts,
            BODY,
            TS - 301,
            DEFAULT_MAX_AGE_SECS
        ),
        Err(SignatureError::FromFuture {
            ahead_secs: 301,
            max_age_secs: 300
        })
    );
    // A millisecond timestamp lands far in the future, and the message hints at the unit.
    let millis = (TS * 1000).to_string();
    let err = verify(
        SECRET,
        &sign(SECRET, TS * 1000, BODY),
        &millis,
        BODY,
        TS,
        300,
    )
    .expect_err("milliseconds");
    assert!(matches!(err, SignatureError::FromFuture { .. }));
    assert!(err.to_string().contains("seconds"), "{err}");
    // A custom window applies.
    assert!(verify(SECRET, &signature, &ts, BODY, TS + 61, 60).is_err());
}

#[test]
fn malformed_headers_are_rejected() {
    let signature = sign(SECRET, TS, BODY);
    let ts = TS.to_string();
    for bad in [
        "sha256=",
        "sha256=abc",
        "md5=37bee4a262e12cf20b1effea904a4c3701d1941203d94a5d1d04e4c57721e047",
        "sha256=37bee4a262e12cf20b1effea904a4c3701d1941203d94a5d1d04e4c57721e04",
        "sha256=37bee4a262e12cf20b1effea904a4c3701d1941203d94a5d1d04e4c57721e0477",
        "sha256=zzbee4a262e12cf20b1effea904a4c3701d1941203d94a5d1d04e4c57721e047",
        "sha256=37bee4a262e12cf20b1effea904a4c3701d1941203d94a5d1d04e4c57721é04",
    ] {
        let err = verify(SECRET, bad, &ts, BODY, TS, 300).expect_err(bad);
        assert!(
            matches!(err, SignatureError::MalformedSignature(_)),
            "{bad}: {err}"
        );
        assert!(err.to_string().contains("sha256=<64 hex digits>"));
    }
    assert_eq!(
        verify(SECRET, "", &ts, BODY, TS, 300),
        Err(SignatureError::MissingSignature)
    );
    for bad_ts in [
        "",
        "abc",
        "-5",
        "1765627530.5",
        "1e9",
        "99999999999999999999999",
    ] {
        assert_eq!(
            verify(SECRET, &signature, bad_ts, BODY, TS, 300),
            Err(SignatureError::MalformedTimestamp(bad_ts.to_owned())),
            "{bad_ts:?}"
        );
    }
}

#[test]
fn headers_with_and_without_secret() {
    let headers = webhook_headers(WebhookEventKind::ToolCalls, TS, BODY, Some(SECRET));
    let names: Vec<&str> = headers.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        names,
        [
            "Content-Type",
            "User-Agent",
            "X-Webhook-Event",
            "X-Webhook-Timestamp",
            "X-Webhook-Signature"
        ]
    );
    let value = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(value(header::CONTENT_TYPE), Some("application/json"));
    assert_eq!(value(header::USER_AGENT), Some(USER_AGENT));
    assert_eq!(USER_AGENT, "HMS-Sovereign/1.0");
    assert_eq!(value(header::EVENT), Some("tool-calls"));
    assert_eq!(value(header::TIMESTAMP), Some("1765627530"));
    let signature = value(header::SIGNATURE).expect("signed");
    assert_eq!(
        verify(SECRET, signature, "1765627530", BODY, TS, 300),
        Ok(())
    );

    for secret in [None, Some(&b""[..])] {
        let unsigned = webhook_headers(WebhookEventKind::EndOfCallReport, TS, BODY, secret);
        assert_eq!(unsigned.len(), 4);
        assert!(unsigned.iter().all(|(name, _)| *name != header::SIGNATURE));
        assert!(unsigned
            .iter()
            .any(|(name, value)| *name == header::EVENT && value == "end-of-call-report"));
    }
}
