//! Call-control commands: parsing, aliases, validation errors, and the per-call rate limit on virtual time.

use std::num::NonZeroUsize;
use std::time::Duration;

use serde_json::json;
use voxline_engine::platform::{
    CallControlResponse, ControlCommand, ControlError, RateLimited, RateLimiter,
};

fn parse(body: &str) -> Result<ControlCommand, ControlError> {
    ControlCommand::from_slice(body.as_bytes())
}

#[test]
fn every_command_parses() {
    assert_eq!(
        parse(r#"{"type":"inject-context","content":"Code is 4821","trigger_response":true}"#)
            .expect("valid"),
        ControlCommand::InjectContext {
            content: "Code is 4821".into(),
            trigger_response: true
        }
    );
    assert_eq!(
        parse(r#"{"type":"say","content":"Goodbye!","end_after":true}"#).expect("valid"),
        ControlCommand::Say {
            content: "Goodbye!".into(),
            end_after: true
        }
    );
    assert_eq!(
        parse(r#"{"type":"end-call"}"#).expect("valid"),
        ControlCommand::EndCall { message: None }
    );
    assert_eq!(
        parse(r#"{"type":"end-call","message":"Bye"}"#).expect("valid"),
        ControlCommand::EndCall {
            message: Some("Bye".into())
        }
    );
    assert_eq!(
        parse(r#"{"type":"transfer","destination":"sip:desk@pbx.example.com"}"#).expect("valid"),
        ControlCommand::Transfer {
            destination: "sip:desk@pbx.example.com".into(),
            message: None
        }
    );
    assert_eq!(
        parse(r#"{"type":"transfer","destination":" +31201234567 ","message":"Connecting you."}"#)
            .expect("valid"),
        ControlCommand::Transfer {
            destination: "+31201234567".into(),
            message: Some("Connecting you.".into())
        }
    );
}

#[test]
fn flags_default_to_false_and_accept_camel_case() {
    assert_eq!(
        parse(r#"{"type":"inject-context","content":"x"}"#).expect("valid"),
        ControlCommand::InjectContext {
            content: "x".into(),
            trigger_response: false
        }
    );
    assert_eq!(
        parse(r#"{"type":"inject-context","content":"x","triggerResponse":true}"#).expect("valid"),
        ControlCommand::InjectContext {
            content: "x".into(),
            trigger_response: true
        }
    );
    assert_eq!(
        parse(r#"{"type":"say","content":"x","endAfter":true}"#).expect("valid"),
        ControlCommand::Say {
            content: "x".into(),
            end_after: true
        }
    );
    assert_eq!(
        parse(r#"{"type":"say","content":"x","end_after":null}"#).expect("valid"),
        ControlCommand::Say {
            content: "x".into(),
            end_after: false
        }
    );
}

#[test]
fn serializes_in_the_platform_form() {
    let say = ControlCommand::Say {
        content: "Hello".into(),
        end_after: false,
    };
    assert_eq!(
        serde_json::to_string(&say).expect("serializes"),
        r#"{"type":"say","content":"Hello","end_after":false}"#
    );
    let inject = ControlCommand::InjectContext {
        content: "ctx".into(),
        trigger_response: true,
    };
    assert_eq!(
        serde_json::to_value(&inject).expect("serializes"),
        json!({"type": "inject-context", "content": "ctx", "trigger_response": true})
    );
    assert_eq!(
        serde_json::to_value(ControlCommand::EndCall { message: None }).expect("serializes"),
        json!({"type": "end-call"})
    );
    // serde's own entry point runs the same validation.
    let err = serde_json::from_str::<ControlCommand>(r#"{"type":"say","content":""}"#)
        .expect_err("empty text");
    assert!(err.to_string().contains("content"), "{err}");
    let camel: ControlCommand =
        serde_json::from_str(r#"{"type":"say","content":"x","endAfter":true}"#).expect("alias");
    assert_eq!(
        serde_json::to_value(&camel).expect("serializes"),
        json!({"type": "say", "content": "x", "end_after": true})
    );
}

#[test]
fn command_properties() {
    let commands = [
        (
            r#"{"type":"inject-context","content":"x"}"#,
            "inject-context",
            false,
        ),
        (r#"{"type":"say","content":"x"}"#, "say", false),
        (
            r#"{"type":"say","content":"x","end_after":true}"#,
            "say",
            true,
        ),
        (r#"{"type":"end-call"}"#, "end-call", true),
        (
            r#"{"type":"transfer","destination":"+31201234567"}"#,
            "transfer",
            true,
        ),
    ];
    for (body, command_type, ends) in commands {
        let command = parse(body).expect(body);
        assert_eq!(command.command_type(), command_type);
        assert_eq!(command.ends_call(), ends, "{body}");
    }
}

#[test]
fn malformed_json_is_reported() {
    let err = parse(r#"{"type":"say","content":"#).expect_err("truncated");
    assert!(matches!(err, ControlError::MalformedJson(_)), "{err}");
    assert!(err
        .to_string()
        .starts_with("control command is not valid JSON"));
    let err = parse(r#"["say","hello"]"#).expect_err("array");
    assert!(matches!(err, ControlError::NotAnObject), "{err}");
}

#[test]
fn unknown_or_missing_type_is_named() {
    let err = parse(r#"{"type":"mute","content":"x"}"#).expect_err("unknown");
    assert!(matches!(err, ControlError::UnknownType(ref t) if t == "mute"));
    let text = err.to_string();
    assert!(
        text.contains("`mute`") && text.contains("inject-context"),
        "{text}"
    );
    // Another platform's spelling is not silently accepted.
    let err = parse(r#"{"type":"add-message","message":{}}"#).expect_err("unknown");
    assert!(err.to_string().contains("add-message"));

    for body in [r#"{"content":"x"}"#, r#"{"type":3}"#, r#"{"type":null}"#] {
        let err = parse(body).expect_err(body);
        assert!(matches!(err, ControlError::MissingType), "{body}: {err}");
    }
}

#[test]
fn missing_fields_are_named() {
    for (body, command, field) in [
        (r#"{"type":"inject-context"}"#, "inject-context", "content"),
        (r#"{"type":"say","end_after":true}"#, "say", "content"),
        (
            r#"{"type":"transfer","message":"hi"}"#,
            "transfer",
            "destination",
        ),
    ] {
        match parse(body) {
            Err(ControlError::MissingField {
                command: c,
                field: f,
            }) => {
                assert_eq!((c, f), (command, field), "{body}");
            }
            other => panic!("{body}: expected missing field, got {other:?}"),
        }
        let text = parse(body).expect_err(body).to_string();
        assert!(text.contains(command) && text.contains(field), "{text}");
    }
}

#[test]
fn invalid_fields_are_named() {
    let cases = [
        (
            r#"{"type":"say","content":""}"#,
            "content",
            "must not be empty",
        ),
        (
            r#"{"type":"say","content":"   "}"#,
            "content",
            "must not be empty",
        ),
        (
            r#"{"type":"say","content":42}"#,
            "content",
            "must be a string",
        ),
        (
            r#"{"type":"inject-context","content":"x","trigger_response":"yes"}"#,
            "trigger_response",
            "true or false",
        ),
        (
            r#"{"type":"say","content":"x","endAfter":1}"#,
            "endAfter",
            "true or false",
        ),
        (
            r#"{"type":"say","content":"x","end_after":true,"endAfter":false}"#,
            "end_after",
            "given twice",
        ),
        (
            r#"{"type":"end-call","message":7}"#,
            "message",
            "string or null",
        ),
        (
            r#"{"type":"transfer","destination":"0612345678"}"#,
            "destination",
            "E.164",
        ),
        (
            r#"{"type":"transfer","destination":"+31 20 123 4567"}"#,
            "destination",
            "E.164",
        ),
        (
            r#"{"type":"transfer","destination":"https://pbx.example.com"}"#,
            "destination",
            "SIP URI",
        ),
        (
            r#"{"type":"transfer","destination":"sip:"}"#,
            "destination",
            "SIP URI",
        ),
        (
            r#"{"type":"transfer","destination":""}"#,
            "destination",
            "must not be empty",
        ),
    ];
    for (body, field, reason) in cases {
        let err = parse(body).expect_err(body);
        match &err {
            ControlError::InvalidField { field: f, .. } => assert_eq!(f, field, "{body}"),
            other => panic!("{body}: expected invalid field, got {other:?}"),
        }
        assert!(err.to_string().contains(reason), "{body}: {err}");
    }
}

#[test]
fn unknown_fields_are_rejected() {
    // Another platform's spelling would otherwise be ignored and the call would not hang up.
    let err = parse(r#"{"type":"say","content":"x","endCallAfterSpoken":true}"#).expect_err("typo");
    match err {
        ControlError::UnknownField { command, ref field } => {
            assert_eq!(command, "say");
            assert_eq!(field, "endCallAfterSpoken");
        }
        ref other => panic!("expected unknown field, got {other:?}"),
    }
    assert!(err.to_string().contains("endCallAfterSpoken"));
}

#[test]
fn blank_optional_messages_mean_none() {
    assert_eq!(
        parse(r#"{"type":"end-call","message":"  "}"#).expect("valid"),
        ControlCommand::EndCall { message: None }
    );
    assert_eq!(
        parse(r#"{"type":"transfer","destination":"+31201234567","message":null}"#).expect("valid"),
        ControlCommand::Transfer {
            destination: "+31201234567".into(),
            message: None
        }
    );
}

#[test]
fn control_response() {
    assert_eq!(
        serde_json::to_string(&CallControlResponse::sent()).expect("serializes"),
        r#"{"success":true,"message":"Command sent successfully"}"#
    );
    let failed = CallControlResponse::failed(parse("{}").expect_err("no type").to_string());
    assert!(!failed.success);
    let bare: CallControlResponse = serde_json::from_str(r#"{"success":false}"#).expect("parses");
    assert_eq!(bare.message, None);
    assert_eq!(
        serde_json::to_string(&bare).expect("ok"),
        r#"{"success":false}"#
    );
}

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn rate_limiter_allows_ten_per_minute() {
    let mut limiter = RateLimiter::default();
    assert_eq!(limiter.limit(), 10);
    assert_eq!(limiter.window(), Duration::from_secs(60));
    // Ten commands one second apart, starting 5 s into the call.
    for i in 0..10u64 {
        let now = Duration::from_secs(5 + i);
        assert_eq!(limiter.try_acquire(now), Ok(()), "command {i}");
    }
    assert_eq!(limiter.remaining(Duration::from_secs(14)), 0);

    // The 11th, at 20 s, waits until the first (at 5 s) leaves the window at 65 s.
    let limited = limiter
        .try_acquire(Duration::from_secs(20))
        .expect_err("11th command in a minute");
    assert_eq!(limited.retry_after, Duration::from_secs(45));
    assert_eq!(limited.retry_after_secs(), 45);
    assert_eq!(limited.limit, 10);
    let text = limited.to_string();
    assert!(
        text.contains("rate limited") && text.contains("45s"),
        "{text}"
    );

    // Rejected commands use no budget: still blocked just before 65 s, with a shorter wait.
    let limited = limiter
        .try_acquire(Duration::from_millis(64_500))
        .expect_err("still full");
    assert_eq!(limited.retry_after, Duration::from_millis(500));
    assert_eq!(limited.retry_after_secs(), 1);

    // At 65 s one slot is free again (the command from 5 s expired), and only one.
    assert_eq!(limiter.try_acquire(Duration::from_secs(65)), Ok(()));
    assert_eq!(
        limiter.try_acquire(Duration::from_secs(65)),
        Err(RateLimited {
            retry_after: SECOND,
            limit: 10,
            window: Duration::from_secs(60)
        })
    );

    // After a full quiet window everything is available again.
    assert_eq!(limiter.remaining(Duration::from_secs(200)), 10);
    for _ in 0..10 {
        assert_eq!(limiter.try_acquire(Duration::from_secs(200)), Ok(()));
    }
    assert!(limiter.try_acquire(Duration::from_secs(200)).is_err());
}

#[test]
fn rate_limiter_burst_then_recovery() {
    let mut limiter = RateLimiter::default();
    let start = Duration::ZERO;
    for _ in 0..10 {
        assert_eq!(limiter.try_acquire(start), Ok(()));
    }
    let limited = limiter.try_acquire(start).expect_err("burst over");
    assert_eq!(limited.retry_after, Duration::from_secs(60));
    assert!(limiter.try_acquire(Duration::from_secs(59)).is_err());
    assert_eq!(limiter.try_acquire(Duration::from_secs(60)), Ok(()));
}

#[test]
fn rate_limiter_ignores_clock_steps_backwards() {
    let mut limiter = RateLimiter::new(
        NonZeroUsize::new(2).expect("non-zero"),
        Duration::from_secs(10),
    );
    assert_eq!(limiter.try_acquire(Duration::from_secs(100)), Ok(()));
    assert_eq!(limiter.try_acquire(Duration::from_secs(105)), Ok(()));
    // A reading from before the last command is treated as "now = 105 s", not as a fresh window.
    let limited = limiter
        .try_acquire(Duration::from_secs(1))
        .expect_err("still full");
    assert_eq!(limited.retry_after, Duration::from_secs(5));
    assert_eq!(limiter.try_acquire(Duration::from_secs(110)), Ok(()));
}

#[test]
fn rate_limiter_custom_limits() {
    let mut one_per_second = RateLimiter::new(NonZeroUsize::MIN, SECOND);
    for i in 0..5u64 {
        let now = Duration::from_secs(i);
        assert_eq!(one_per_second.try_acquire(now), Ok(()));
        assert_eq!(
            one_per_second
                .try_acquire(now + Duration::from_millis(250))
                .map_err(|e| e.retry_after),
            Err(Duration::from_millis(750))
        );
    }
    let mut unlimited = RateLimiter::new(NonZeroUsize::MIN, Duration::ZERO);
    for _ in 0..100 {
        assert_eq!(unlimited.try_acquire(Duration::from_secs(3)), Ok(()));
    }
}
