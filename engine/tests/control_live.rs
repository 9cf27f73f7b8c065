//! Platform call control against live calls on virtual time: every command through the JSON
//! path (`CallControl::control_json`), checked in the audio the caller got, the history, the
//! events and the status; and bad, unknown and rate-limited commands refused with the call
//! left running.

mod common;

use std::time::Duration;

use common::{agent_frames, drain, ms, providers, stt, AgentLog, PcmPort};
use serde_json::json;
use voxline_engine::call::{CallEvent, CallSettings, CallStatus, EndReason, EventRecord};
use voxline_engine::driver::{
    new_call, CallControl, CallOutcome, ControlRequestError, DriverOptions, EventStream,
};
use voxline_engine::platform::{CallControlResponse, ControlCommand, ControlError};
use voxline_engine::provider::{LlmRequest, Role};
use voxline_engine::testkit::{ScriptedLlm, ScriptedReply};

const GREETING: &str = "Hello, this is the clinic.";

/// The scripted model answers injected context it can see, and anything else generically.
fn model() -> ScriptedLlm {
    ScriptedLlm::new(|req: &LlmRequest| {
        let last = req.messages.last();
        match last {
            Some(m) if m.role == Role::System && m.content.contains("4821") => {
                vec![ScriptedReply::Text(
                    "I see your verification code has arrived.".into(),
                )]
            }
            _ => vec![ScriptedReply::Text("How can I help?".into())],
        }
    })
}

struct Live {
    control: CallControl,
    events: EventStream,
    agent: AgentLog,
    llm: ScriptedLlm,
    call: tokio::task::JoinHandle<CallOutcome>,
}

/// Starts a call with a greeting and a silent caller; returns once the greeting has played.
async fn live_call(options: DriverOptions) -> Live {
    let settings = CallSettings {
        system_prompt: "You are the clinic's receptionist.".into(),
        first_message: Some(GREETING.into()),
        ..Default::default()
    };
    let (port, agent) = PcmPort::new(Vec::new());
    let llm = model();
    let (task, control, events) = new_call(
        settings,
        providers(stt(Vec::<String>::new()), llm.clone()),
        port,
        options,
    );
    let call = tokio::spawn(task.run());
    tokio::time::sleep(ms(3000)).await;
    Live {
        control,
        events,
        agent,
        llm,
        call,
    }
}

fn sent() -> CallControlResponse {
    CallControlResponse::sent()
}

fn spoken(events: &[EventRecord]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.event {
            CallEvent::AgentSpeechStopped { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

fn terminal(events: &[EventRecord]) -> Option<(CallStatus, Option<EndReason>)> {
    events.iter().rev().find_map(|e| match &e.event {
        CallEvent::Status {
            status, end_reason, ..
        } if status.is_terminal() => Some((*status, end_reason.clone())),
        _ => None,
    })
}

#[tokio::test(start_paused = true)]
async fn success_reply_is_the_platform_json() {
    let live = live_call(DriverOptions::default()).await;
    let reply = live
        .control
        .control_json(br#"{"type":"say","content":"One moment please."}"#)
        .await
        .expect("accepted");
    assert_eq!(
        serde_json::to_value(&reply).expect("serializes"),
        json!({"success": true, "message": "Command sent successfully"})
    );
    live.control.hang_up().expect("live");
    live.call.await.expect("call ran");
}

#[tokio::test(start_paused = true)]
async fn inject_context_without_response_stays_silent() {
    let mut live = live_call(DriverOptions::default()).await;
    assert!(spoken(&drain(&mut live.events)).contains(&GREETING.to_owned()));
    let body = br#"{"type":"inject-context","content":"The caller's verification code is 4821.","trigger_response":false}"#;
    assert_eq!(live.control.control_json(body).await.expect("ok"), sent());
    tokio::time::sleep(ms(4000)).await;
    let after = drain(&mut live.events);
    assert!(
        after.is_empty(),
        "injected context is neither spoken nor reported: {after:?}"
    );
    assert_eq!(agent_frames(&live.agent, ms(3000), ms(7000)), 0);
    assert!(live.llm.requests.lock().expect("lock").is_empty());

    live.control.hang_up().expect("live");
    let outcome = live.call.await.expect("call ran");
    let last = outcome.history.last().expect("history");
    assert_eq!(last.role, Role::System);
    assert_eq!(last.content, "The caller's verification code is 4821.");
}

#[tokio::test(start_paused = true)]
async fn inject_context_with_response_makes_the_agent_answer() {
    let mut live = live_call(DriverOptions::default()).await;
    drain(&mut live.events);
    let body = br#"{"type":"inject-context","content":"The caller's verification code is 4821.","trigger_response":true}"#;
    assert_eq!(live.control.control_json(body).await.expect("ok"), sent());
    tokio::time::sleep(ms(5000)).await;
    let after = drain(&mut live.events);
    let answer = "I see your verification code has arrived.";
    assert_eq!(spoken(&after), vec![answer.to_owned()]);
    assert!(after.iter().any(|e| matches!(&e.event,
        CallEvent::Message { role: Role::Assistant, content } if content == answer)));
    // About 60 ms of audio per character: 41 characters ≈ 2.5 s ≈ 120 frames.
    let frames = agent_frames(&live.agent, ms(3000), ms(8000));
    assert!((100..=140).contains(&frames), "agent frames {frames}");
    {
        let requests = live.llm.requests.lock().expect("lock");
        assert_eq!(requests.len(), 1);
        let last = requests[0].messages.last().expect("messages");
        assert_eq!(last.role, Role::System);
        assert!(last.content.contains("4821"));
    }

    live.control.hang_up().expect("live");
    let outcome = live.call.await.expect("call ran");
    let n = outcome.history.len();
    assert_eq!(outcome.history[n - 2].role, Role::System);
    assert_eq!(outcome.history[n - 1].role, Role::Assistant);
    assert_eq!(outcome.history[n - 1].content, answer);
}

#[tokio::test(start_paused = true)]
async fn say_with_end_after_speaks_then_hangs_up() {
    let mut live = live_call(DriverOptions::default()).await;
    drain(&mut live.events);
    let text = "Your appointment is confirmed for Monday.";
    let body = json!({"type": "say", "content": text, "end_after": true}).to_string();
    assert_eq!(
        live.control
            .control_json(body.as_bytes())
            .await
            .expect("ok"),
        sent()
    );
    let outcome = live.call.await.expect("call ends by itself");
    assert_eq!(outcome.end_reason, EndReason::HostEnded);
    let after = drain(&mut live.events);
    assert_eq!(spoken(&after), vec![text.to_owned()]);
    assert_eq!(
        terminal(&after),
        Some((CallStatus::Ended, Some(EndReason::HostEnded)))
    );
    let frames = agent_frames(&live.agent, ms(3000), ms(60_000));
    assert!((110..=140).contains(&frames), "agent frames {frames}");
    let last = outcome.history.last().expect("history");
    assert_eq!((last.role, last.content.as_str()), (Role::Assistant, text));
    // The call is gone: further commands are refused as not active.
    let err = live
        .control
        .control_json(br#"{"type":"end-call"}"#)
        .await
        .expect_err("ended");
    assert!(matches!(err, ControlRequestError::CallEnded));
    assert!(err.to_string().contains("not active"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn end_call_with_message_says_goodbye_first() {
    let mut live = live_call(DriverOptions::default()).await;
    drain(&mut live.events);
    let goodbye = "Thank you for calling, goodbye.";
    let body = json!({"type": "end-call", "message": goodbye}).to_string();
    assert_eq!(
        live.control
            .control_json(body.as_bytes())
            .await
            .expect("ok"),
        sent()
    );
    let outcome = live.call.await.expect("call ends by itself");
    assert_eq!(outcome.end_reason, EndReason::HostEnded);
    let after = drain(&mut live.events);
    assert_eq!(spoken(&after), vec![goodbye.to_owned()]);
    let stopped = after
        .iter()
        .position(|e| matches!(e.event, CallEvent::AgentSpeechStopped { .. }))
        .expect("goodbye played");
    let ended = after
        .iter()
        .position(|e| {
            matches!(
                e.event,
                CallEvent::Status {
                    status: CallStatus::Ended,
                    ..
                }
            )
        })
        .expect("ended");
    assert!(stopped < ended, "the goodbye plays before the hang-up");
    let frames = agent_frames(&live.agent, ms(3000), ms(60_000));
    assert!((80..=110).contains(&frames), "agent frames {frames}");
}

#[tokio::test(start_paused = true)]
async fn transfer_with_message_announces_then_transfers() {
    let mut live = live_call(DriverOptions::default()).await;
    drain(&mut live.events);
    let announcement = "Connecting you to our front desk.";
    let body = json!({"type": "transfer", "destination": "+31201234567", "message": announcement})
        .to_string();
    assert_eq!(
        live.control
            .control_json(body.as_bytes())
            .await
            .expect("ok"),
        sent()
    );
    let outcome = live.call.await.expect("call ends by itself");
    assert_eq!(outcome.end_reason, EndReason::Transferred);
    let after = drain(&mut live.events);
    assert_eq!(spoken(&after), vec![announcement.to_owned()]);
    let transfer = after
        .iter()
        .position(|e| matches!(&e.event, CallEvent::Transfer { destination } if destination == "+31201234567"))
        .expect("transfer event");
    let stopped = after
        .iter()
        .position(|e| matches!(e.event, CallEvent::AgentSpeechStopped { .. }))
        .expect("announcement played");
    assert!(stopped < transfer);
    assert_eq!(
        terminal(&after),
        Some((CallStatus::Transferred, Some(EndReason::Transferred)))
    );
    let frames = agent_frames(&live.agent, ms(3000), ms(60_000));
    assert!((90..=120).contains(&frames), "agent frames {frames}");
}

#[tokio::test(start_paused = true)]
async fn typed_commands_take_the_same_path() {
    let mut live = live_call(DriverOptions::default()).await;
    drain(&mut live.events);
    let reply = live
        .control
        .control(ControlCommand::EndCall { message: None })
        .await
        .expect("ok");
    assert_eq!(reply, sent());
    let outcome = live.call.await.expect("ends");
    assert_eq!(outcome.end_reason, EndReason::HostEnded);
    assert!(spoken(&drain(&mut live.events)).is_empty());
}

#[tokio::test(start_paused = true)]
async fn bad_commands_are_refused_and_leave_the_call_running() {
    let mut live = live_call(DriverOptions::default()).await;
    drain(&mut live.events);
    let cases: [(&[u8], &str); 6] = [
        (br#"{"type":"say","content":"#, "not valid JSON"),
        (br#"{"type":"mute"}"#, "unknown control command type `mute`"),
        (br#"{"type":"say"}"#, "missing the required field `content`"),
        (br#"{"content":"hi"}"#, "no string `type`"),
        (
            br#"{"type":"transfer","destination":"front desk"}"#,
            "invalid `destination`",
        ),
        (
            br#"{"type":"say","content":"hi","endCallAfterSpoken":true}"#,
            "unknown field `endCallAfterSpoken`",
        ),
    ];
    for (body, expected) in cases {
        let err = live.control.control_json(body).await.expect_err("refused");
        assert!(matches!(err, ControlRequestError::Invalid(_)), "{err:?}");
        assert!(err.to_string().contains(expected), "{err} ≠ {expected}");
        assert_eq!(err.http_status(), 400);
        let response = live.control.control_response(body).await;
        assert!(!response.success);
        assert_eq!(response.message.as_deref(), Some(err.to_string().as_str()));
    }
    let err = live
        .control
        .control_json(br#"{"type":"say"}"#)
        .await
        .expect_err("refused");
    assert!(matches!(
        err,
        ControlRequestError::Invalid(ControlError::MissingField {
            command: "say",
            field: "content"
        })
    ));
    // The core refuses a destination it cannot dial, which the parser let through.
    let err = live
        .control
        .control_json(br#"{"type":"transfer","destination":"+12"}"#)
        .await
        .expect_err("refused");
    assert!(matches!(err, ControlRequestError::Refused(_)), "{err:?}");

    // None of it touched the call.
    tokio::time::sleep(ms(2000)).await;
    assert!(drain(&mut live.events).is_empty());
    assert_eq!(agent_frames(&live.agent, ms(3000), ms(5000)), 0);

    // The call still runs and still obeys.
    let text = "Still here.";
    let body = json!({"type": "say", "content": text}).to_string();
    live.control
        .control_json(body.as_bytes())
        .await
        .expect("accepted");
    tokio::time::sleep(ms(2000)).await;
    assert_eq!(spoken(&drain(&mut live.events)), vec![text.to_owned()]);
    live.control.hang_up().expect("live");
    let outcome = live.call.await.expect("call ran");
    assert_eq!(outcome.end_reason, EndReason::UserHangup);
    assert_eq!(outcome.media.late_ticks, 0);
}

#[tokio::test(start_paused = true)]
async fn eleventh_command_within_a_minute_is_rate_limited() {
    let mut live = live_call(DriverOptions::default()).await;
    drain(&mut live.events);
    let body = br#"{"type":"inject-context","content":"Note number 4821."}"#;
    for i in 0..10 {
        tokio::time::sleep(ms(1000)).await;
        assert_eq!(
            live.control
                .control_json(body)
                .await
                .expect("within budget"),
            sent(),
            "command {i}"
        );
    }
    // Commands went out at 4 s … 13 s of call time; the 11th comes at 14 s.
    tokio::time::sleep(ms(1000)).await;
    let err = live.control.control_json(body).await.expect_err("limited");
    let ControlRequestError::RateLimited(limited) = &err else {
        panic!("expected rate limiting, got {err:?}");
    };
    assert_eq!(limited.limit, 10);
    assert_eq!(err.http_status(), 429);
    // The oldest command leaves the window at 64 s.
    assert_eq!(err.retry_after(), Some(Duration::from_secs(50)));
    assert_eq!(limited.retry_after_secs(), 50);
    let response = err.response();
    assert!(!response.success);
    assert!(response
        .message
        .as_deref()
        .is_some_and(|m| m.contains("rate limited") && m.contains("retry after")));
    // Malformed bodies are refused before the limit is looked at.
    let err = live
        .control
        .control_json(b"not json")
        .await
        .expect_err("malformed");
    assert!(matches!(err, ControlRequestError::Invalid(_)));

    // Refused commands changed nothing; the call keeps going on its clock.
    let ticks_before = live.agent.lock().expect("lock").len();
    tokio::time::sleep(ms(50_000)).await;
    let ticks_after = live.agent.lock().expect("lock").len();
    let frames = ticks_after - ticks_before;
    assert!(
        (2499..=2501).contains(&frames),
        "one frame per 20 ms: {frames}"
    );
    assert_eq!(
        live.control.control_json(body).await.expect("budget back"),
        sent()
    );
    live.control.hang_up().expect("live");
    let outcome = live.call.await.expect("call ran");
    let injected = outcome
        .history
        .iter()
        .filter(|m| m.role == Role::System && m.content == "Note number 4821.")
        .count();
    assert_eq!(
        injected, 11,
        "ten accepted, one refused, one after the window"
    );
}

#[tokio::test(start_paused = true)]
async fn rate_limit_can_be_turned_off() {
    let live = live_call(DriverOptions {
        control_rate_limit: None,
        ..DriverOptions::default()
    })
    .await;
    for _ in 0..25 {
        live.control
            .control_json(br#"{"type":"inject-context","content":"x"}"#)
            .await
            .expect("no limit");
    }
    live.control.hang_up().expect("live");
    live.call.await.expect("call ran");
}

#[tokio::test(start_paused = true)]
async fn a_ringing_call_is_not_active() {
    let (port, _agent) = PcmPort::new(Vec::new());
    let (task, control, _events) = new_call(
        CallSettings::default(),
        providers(stt(Vec::<String>::new()), model()),
        port,
        DriverOptions {
            auto_answer: false,
            ..DriverOptions::default()
        },
    );
    let call = tokio::spawn(task.run());
    tokio::time::sleep(ms(500)).await;
    let err = control
        .control_json(br#"{"type":"say","content":"Hello?"}"#)
        .await
        .expect_err("ringing");
    assert!(matches!(
        err,
        ControlRequestError::NotActive(CallStatus::Ringing)
    ));
    assert!(err.to_string().contains("status ringing"), "{err}");
    control.answer().expect("live");
    tokio::time::sleep(ms(100)).await;
    control
        .control_json(br#"{"type":"end-call"}"#)
        .await
        .expect("answered now");
    assert_eq!(call.await.expect("ran").end_reason, EndReason::HostEnded);
}
