//! Turn-taking, tools, timers, consent and the realtime pipeline with real audio through
//! the real media path (RTP → jitter → decode → VAD → core → encode → RTP), on virtual time.

mod support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use support::*;
use voxline_engine::call::{
    CallEvent, CallSettings, CallTool, Direction, EndReason, SilenceSettings, ToolKind,
};
use voxline_engine::driver::{CallControl, DriverOptions, EventStream, ProviderSet};
use voxline_engine::provider::{RealtimeControl, Role, ToolSpec};
use voxline_engine::testkit::{
    ScriptedLlm, ScriptedRealtime, ScriptedReply, ScriptedStt, ScriptedTts,
};

fn pipeline(stt: ScriptedStt, llm: ScriptedLlm) -> ProviderSet {
    ProviderSet {
        stt: Some(Arc::new(stt)),
        llm: Some(Arc::new(llm)),
        tts: Some(Arc::new(ScriptedTts::default())),
        realtime: None,
    }
}

fn spoken(events: &[CallEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            CallEvent::AgentSpeechStopped { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn recording_consent_by_rfc4733_key_press() {
    let settings = CallSettings {
        recording_consent: Some(
            "This call may be recorded. Press 1 to agree or 2 to decline.".into(),
        ),
        first_message: Some("Thanks! How can I help?".into()),
        ..Default::default()
    };
    let call = run_rtp_call(
        opus_config(),
        settings,
        pipeline(ScriptedStt::new(["hello"]), ScriptedLlm::always("Hi.")),
        CallerScript {
            keys: vec![(ms(5000), '1')],
            until: ms(9000),
            ..Default::default()
        },
        collect,
    )
    .await;
    assert!(call
        .events
        .iter()
        .any(|e| matches!(e, CallEvent::Dtmf { digit: '1' })));
    let said = spoken(&call.events);
    assert!(said[0].starts_with("This call may be recorded"));
    assert!(
        said.iter().any(|s| s == "Thanks! How can I help?"),
        "{said:?}"
    );

    // Declining ends the call.
    let settings = CallSettings {
        recording_consent: Some("Press 1 to agree or 2 to decline.".into()),
        ..Default::default()
    };
    let call = run_rtp_call(
        pcmu_config(),
        settings,
        pipeline(ScriptedStt::new(["hello"]), ScriptedLlm::always("Hi.")),
        CallerScript {
            keys: vec![(ms(4000), '2')],
            until: ms(6000),
            ..Default::default()
        },
        collect,
    )
    .await;
    assert_eq!(call.outcome.end_reason, EndReason::ConsentDeclined);
}

fn booking_tool() -> CallTool {
    CallTool {
        spec: ToolSpec {
            name: "book_appointment".into(),
            description: "Book a dental appointment".into(),
            parameters: json!({"type": "object", "properties": {"day": {"type": "string"}}}),
        },
        kind: ToolKind::Function {
            is_async: false,
            message: Some("Let me check the calendar.".into()),
            timeout: Duration::from_secs(10),
        },
    }
}

fn booking_llm() -> ScriptedLlm {
    ScriptedLlm::new(|req| {
        let answered = req.messages.iter().any(|m| m.role == Role::Tool);
        if answered {
            let result = req
                .messages
                .iter()
                .rev()
                .find(|m| m.role == Role::Tool)
                .map(|m| m.content.clone())
                .unwrap_or_default();
            if result.contains("confirmed") {
                vec![ScriptedReply::Text(
                    "You're booked for Tuesday at ten.".into(),
                )]
            } else {
                vec![ScriptedReply::Text("I couldn't book that.".into())]
            }
        } else {
            vec![ScriptedReply::Tool {
                name: "book_appointment".into(),
                arguments: r#"{"day":"tuesday"}"#.into(),
            }]
        }
    })
}

/// A host that answers every tool call with a confirmation, after a short think.
async fn tool_host(control: CallControl, mut events: EventStream) -> Vec<CallEvent> {
    let mut all = Vec::new();
    while let Some(e) = events.next().await {
        if let CallEvent::ToolCall { id, arguments, .. } = &e.event {
            assert_eq!(arguments["day"], "tuesday");
            tokio::time::sleep(ms(500)).await;
            control
                .tool_result(id.clone(), json!({"status": "confirmed", "time": "10:00"}))
                .unwrap();
        }
        all.push(e.event);
    }
    all
}

#[tokio::test(start_paused = true)]
async fn tool_call_round_trip_through_the_host() {
    let settings = CallSettings {
        tools: vec![booking_tool()],
        ..Default::default()
    };
    let call = run_rtp_call(
        opus_config(),
        settings,
        pipeline(
            ScriptedStt::new(["Book me for Tuesday please"]),
            booking_llm(),
        ),
        CallerScript {
            speech: vec![(ms(1000), ms(2500))],
            until: ms(10_000),
            ..Default::default()
        },
        tool_host,
    )
    .await;
    let said = spoken(&call.events);
    assert!(
        said.iter().any(|s| s == "Let me check the calendar."),
        "{said:?}"
    );
    assert!(
        said.iter()
            .any(|s| s == "You're booked for Tuesday at ten."),
        "{said:?}"
    );
    assert!(call.events.iter().any(|e| matches!(
        e,
        CallEvent::ToolResult {
            timed_out: false,
            ..
        }
    )));
    let tool_msg = call
        .outcome
        .history
        .iter()
        .find(|m| m.role == Role::Tool)
        .unwrap();
    assert!(tool_msg.content.contains("confirmed"));
}

#[tokio::test(start_paused = true)]
async fn tool_timeout_speaks_the_fallback() {
    let settings = CallSettings {
        tools: vec![booking_tool()],
        ..Default::default()
    };
    let call = run_rtp_call(
        pcmu_config(),
        settings,
        pipeline(
            ScriptedStt::new(["Book me for Tuesday please"]),
            booking_llm(),
        ),
        CallerScript {
            speech: vec![(ms(1000), ms(2500))],
            until: ms(18_000),
            ..Default::default()
        },
        collect, // the host never answers
    )
    .await;
    assert!(call.events.iter().any(|e| matches!(
        e,
        CallEvent::ToolResult {
            timed_out: true,
            ..
        }
    )));
    let said = spoken(&call.events);
    assert!(
        said.iter().any(|s| s.contains("longer than expected")),
        "{said:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn false_interruption_pauses_and_resumes_over_rtp() {
    let settings = CallSettings {
        first_message: Some(
            "Good morning and welcome to the clinic, we are open every weekday from eight until six."
                .into(),
        ),
        ..Default::default()
    };
    // A 140 ms blip (a cough) during the greeting: voiced long enough for VAD, no words.
    let call = run_rtp_call(
        opus_config(),
        settings,
        pipeline(
            ScriptedStt::new(Vec::<String>::new()),
            ScriptedLlm::always("Hm?"),
        ),
        CallerScript {
            speech: vec![(ms(1500), ms(1640))],
            until: ms(9000),
            ..Default::default()
        },
        collect,
    )
    .await;
    let paused = call
        .events
        .iter()
        .position(|e| matches!(e, CallEvent::AgentPaused { .. }));
    let resumed = call
        .events
        .iter()
        .position(|e| matches!(e, CallEvent::AgentResumed { .. }));
    assert!(
        paused.is_some() && resumed > paused,
        "paused then resumed: {:#?}",
        call.events
    );
    assert!(!call
        .events
        .iter()
        .any(|e| matches!(e, CallEvent::AgentInterrupted { .. })));
    assert_eq!(
        call.outcome.history[0].content,
        "Good morning and welcome to the clinic, we are open every weekday from eight until six.",
        "the whole greeting was played after resuming"
    );
}

#[tokio::test(start_paused = true)]
async fn voicemail_on_an_outbound_call() {
    let settings = CallSettings {
        direction: Direction::Outbound,
        voicemail: Some(Some("Hi, this is the clinic. Please call us back.".into())),
        ..Default::default()
    };
    let call = run_rtp_call(
        pcmu_config(),
        settings,
        pipeline(
            ScriptedStt::new([
                "You have reached the voicemail of Sam, please leave a message after the beep",
            ]),
            ScriptedLlm::always("Hello?"),
        ),
        CallerScript {
            speech: vec![(ms(500), ms(3500))],
            until: ms(12_000),
            ..Default::default()
        },
        collect,
    )
    .await;
    assert!(call
        .events
        .iter()
        .any(|e| matches!(e, CallEvent::VoicemailDetected { .. })));
    assert_eq!(call.outcome.end_reason, EndReason::Voicemail);
    assert!(spoken(&call.events)
        .iter()
        .any(|s| s.contains("call us back")));
}

#[tokio::test(start_paused = true)]
async fn silence_handling_ends_a_silent_call() {
    let settings = CallSettings {
        first_message: Some("Hello?".into()),
        silence: Some(SilenceSettings {
            first_check: Duration::from_secs(3),
            interval: Duration::from_secs(4),
            max_attempts: 2,
            messages: vec!["Are you still there?".into()],
            final_message: Some("I'll hang up now. Goodbye.".into()),
        }),
        ..Default::default()
    };
    let call = run_rtp_call(
        opus_config(),
        settings,
        pipeline(
            ScriptedStt::new(Vec::<String>::new()),
            ScriptedLlm::always("?"),
        ),
        CallerScript {
            until: ms(30_000),
            ..Default::default()
        },
        collect,
    )
    .await;
    assert_eq!(call.outcome.end_reason, EndReason::SilenceTimeout);
    let said = spoken(&call.events);
    assert_eq!(
        said,
        vec![
            "Hello?",
            "Are you still there?",
            "I'll hang up now. Goodbye."
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn max_duration_over_rtp() {
    let settings = CallSettings {
        first_message: Some("Hello, how can I help?".into()),
        max_duration: Some(Duration::from_secs(4)),
        ..Default::default()
    };
    let call = run_rtp_call(
        pcmu_config(),
        settings,
        pipeline(
            ScriptedStt::new(["Tell me everything"]),
            ScriptedLlm::always("Sure."),
        ),
        CallerScript {
            speech: vec![(ms(2500), ms(6000))],
            until: ms(8000),
            ..Default::default()
        },
        collect,
    )
    .await;
    assert_eq!(call.outcome.end_reason, EndReason::MaxDuration);
}

#[tokio::test(start_paused = true)]
async fn realtime_pipeline_barge_in_truncates_the_item() {
    let realtime = ScriptedRealtime::new([
        (
            "What services do you offer",
            "We offer cleanings, whitening, fillings, crowns, braces, implants and emergency care.",
        ),
        ("Thanks", "You're welcome."),
    ]);
    let controls = realtime.controls.clone();
    let settings = CallSettings {
        realtime: true,
        ..Default::default()
    };
    let call = run_rtp_call(
        opus_config(),
        settings,
        ProviderSet {
            realtime: Some(Arc::new(realtime)),
            ..Default::default()
        },
        CallerScript {
            // Ask, then talk over the answer about 1.5 s into it.
            speech: vec![(ms(500), ms(2000)), (ms(4500), ms(5500))],
            until: ms(12_000),
            ..Default::default()
        },
        collect,
    )
    .await;
    let controls = controls.lock().unwrap().clone();
    assert!(controls.contains(&RealtimeControl::Cancel), "{controls:?}");
    let played = controls.iter().find_map(|c| match c {
        RealtimeControl::Truncate { item_id, played } => Some((item_id.clone(), *played)),
        _ => None,
    });
    let (item, played) = played.expect("truncate sent");
    assert_eq!(item, "agent_1");
    assert!(played > ms(500) && played < ms(3500), "played {played:?}");
    let interrupted = call
        .events
        .iter()
        .find_map(|e| match e {
            CallEvent::AgentInterrupted { spoken, full, .. } => {
                Some((spoken.clone(), full.clone()))
            }
            _ => None,
        })
        .expect("interrupted");
    assert!(interrupted.0.len() < interrupted.1.len());
    let users: Vec<&str> = call
        .outcome
        .history
        .iter()
        .filter(|m| m.role == Role::User)
        .map(|m| m.content.as_str())
        .collect();
    assert_eq!(users, vec!["What services do you offer", "Thanks"]);
    let first_answer = call
        .outcome
        .history
        .iter()
        .find(|m| m.role == Role::Assistant)
        .unwrap();
    assert_eq!(
        first_answer.content, interrupted.0,
        "history holds what was heard"
    );
}

#[tokio::test(start_paused = true)]
async fn caller_with_silence_suppression_still_ends_its_turn() {
    // The caller's phone sends nothing between talk-spurts: the engine must hear the pause,
    // also when it catches up in pauses (nothing arrives to take ahead there).
    for catch_up_in_pauses in [false, true] {
        let call = run_rtp_call_with(
            pcmu_config(),
            CallSettings::default(),
            pipeline(
                ScriptedStt::new(["Do you take new patients"]),
                ScriptedLlm::always("Yes, we do."),
            ),
            CallerScript {
                speech: vec![(ms(1000), ms(2500))],
                until: ms(8000),
                silence_suppression: true,
                ..Default::default()
            },
            DriverOptions {
                catch_up_in_pauses,
                ..Default::default()
            },
            collect,
        )
        .await;
        assert!(call
            .events
            .iter()
            .any(|e| matches!(e, CallEvent::CallerSpeechStopped)));
        assert!(
            spoken(&call.events).iter().any(|s| s == "Yes, we do."),
            "catching up {catch_up_in_pauses}: {:?}",
            spoken(&call.events)
        );
    }
}

#[tokio::test(start_paused = true)]
async fn min_words_rule_keeps_the_agent_talking_over_a_backchannel() {
    let mut settings = CallSettings {
        first_message: Some(
            "Our clinic offers cleanings, whitening, fillings, crowns, bridges, braces and implants, and we are open every weekday."
                .into(),
        ),
        ..Default::default()
    };
    settings.turn.interruption_min_words = 3;
    // A long "mm hmm" over the greeting: voiced for 800 ms, but only two words.
    let call = run_rtp_call(
        opus_config(),
        settings,
        pipeline(
            ScriptedStt::new(["mm hmm"]),
            ScriptedLlm::always("Anything else?"),
        ),
        CallerScript {
            speech: vec![(ms(1500), ms(2300))],
            until: ms(12_000),
            ..Default::default()
        },
        collect,
    )
    .await;
    assert!(!call
        .events
        .iter()
        .any(|e| matches!(e, CallEvent::AgentInterrupted { .. })));
    assert!(call
        .events
        .iter()
        .any(|e| matches!(e, CallEvent::AgentResumed { .. })));
    assert!(
        call.outcome.history[0].content.ends_with("every weekday."),
        "greeting completed"
    );
}

#[tokio::test(start_paused = true)]
async fn endpointing_min_delay_is_honoured_over_rtp() {
    let mut settings = CallSettings::default();
    settings.turn.endpointing_min_delay = Duration::from_millis(1200);
    let call = run_rtp_call(
        pcmu_config(),
        settings,
        pipeline(
            ScriptedStt::new(["When are you open"]),
            ScriptedLlm::always("Nine to five."),
        ),
        CallerScript {
            speech: vec![(ms(1000), ms(2500))],
            until: ms(9000),
            ..Default::default()
        },
        collect,
    )
    .await;
    let latency = call
        .events
        .iter()
        .find_map(|e| match e {
            CallEvent::Latency { latency, .. } => Some(latency.clone()),
            _ => None,
        })
        .expect("a turn");
    // The wait after the caller stopped covers the STT final (500 ms gap + 150 ms) and the
    // 1.2 s minimum after it; never more than the 2 s maximum.
    assert!(latency.endpointing_ms >= 1200, "{latency:?}");
    assert!(latency.endpointing_ms <= 2020, "{latency:?}");
    assert!(spoken(&call.events).iter().any(|s| s == "Nine to five."));
}

fn with_tool(settings: &mut CallSettings, name: &str, kind: ToolKind) {
    settings.tools.push(CallTool {
        spec: ToolSpec {
            name: name.into(),
            description: name.into(),
            parameters: json!({"type": "object"}),
        },
        kind,
    });
}

#[tokio::test(start_paused = true)]
async fn async_tool_end_call_and_transfer_over_rtp() {
    // Async tool: the host is told, the model carries on without waiting.
    let mut settings = CallSettings::default();
    with_tool(
        &mut settings,
        "send_sms",
        ToolKind::Function {
            is_async: true,
            message: None,
            timeout: Duration::from_secs(10),
        },
    );
    let llm = ScriptedLlm::new(|req| {
        if req.messages.iter().any(|m| m.role == Role::Tool) {
            vec![ScriptedReply::Text("I've sent you a text.".into())]
        } else {
            vec![ScriptedReply::Tool {
                name: "send_sms".into(),
                arguments: "{}".into(),
            }]
        }
    });
    let call = run_rtp_call(
        opus_config(),
        settings,
        pipeline(ScriptedStt::new(["Text me the address"]), llm),
        CallerScript {
            speech: vec![(ms(1000), ms(2500))],
            until: ms(8000),
            ..Default::default()
        },
        collect, // never answers the tool
    )
    .await;
    assert!(call
        .events
        .iter()
        .any(|e| matches!(e, CallEvent::ToolCall { is_async: true, .. })));
    assert!(spoken(&call.events)
        .iter()
        .any(|s| s == "I've sent you a text."));

    // end_call: the goodbye is spoken, then the agent hangs up.
    let mut settings = CallSettings {
        end_call_message: Some("Goodbye!".into()),
        ..Default::default()
    };
    with_tool(&mut settings, "end_call", ToolKind::EndCall);
    let llm = ScriptedLlm::new(|_| {
        vec![ScriptedReply::Tool {
            name: "end_call".into(),
            arguments: "{}".into(),
        }]
    });
    let call = run_rtp_call(
        pcmu_config(),
        settings,
        pipeline(ScriptedStt::new(["That's all, thanks"]), llm),
        CallerScript {
            speech: vec![(ms(1000), ms(2500))],
            until: ms(10_000),
            ..Default::default()
        },
        collect,
    )
    .await;
    assert_eq!(call.outcome.end_reason, EndReason::AssistantEnded);
    assert!(spoken(&call.events).iter().any(|s| s == "Goodbye!"));

    // transfer_call: announced, then handed to the host's SIP layer.
    let mut settings = CallSettings::default();
    with_tool(
        &mut settings,
        "transfer_call",
        ToolKind::Transfer {
            destinations: vec![voxline_engine::call::TransferDestination {
                number: "+31201234567".into(),
                description: "front desk".into(),
                message: Some("Connecting you to the front desk.".into()),
            }],
        },
    );
    let llm = ScriptedLlm::new(|_| {
        vec![ScriptedReply::Tool {
            name: "transfer_call".into(),
            arguments: r#"{"destination":"+31201234567"}"#.into(),
        }]
    });
    let call = run_rtp_call(
        opus_config(),
        settings,
        pipeline(ScriptedStt::new(["Can I talk to a person"]), llm),
        CallerScript {
            speech: vec![(ms(1000), ms(2500))],
            until: ms(10_000),
            ..Default::default()
        },
        collect,
    )
    .await;
    assert_eq!(call.outcome.end_reason, EndReason::Transferred);
    assert!(call.events.iter().any(
        |e| matches!(e, CallEvent::Transfer { destination } if destination == "+31201234567")
    ));
    assert!(spoken(&call.events)
        .iter()
        .any(|s| s == "Connecting you to the front desk."));
}

#[tokio::test(start_paused = true)]
async fn rejected_assistant_request_over_rtp() {
    use voxline_engine::config::{resolve_assistant, Resolution};
    let Resolution::Reject { message } = resolve_assistant(
        r#"{"error": "Sorry, this number is not in service."}"#,
        None,
        |_| None,
    )
    .unwrap() else {
        panic!("a rejection");
    };
    let options = DriverOptions {
        reject_with: Some(message),
        ..Default::default()
    };
    let call = run_rtp_call_with(
        pcmu_config(),
        CallSettings::default(),
        pipeline(ScriptedStt::new(["hello"]), ScriptedLlm::always("Hi.")),
        CallerScript {
            speech: vec![(ms(500), ms(1500))],
            until: ms(8000),
            ..Default::default()
        },
        options,
        collect,
    )
    .await;
    assert_eq!(call.outcome.end_reason, EndReason::Rejected);
    assert_eq!(
        spoken(&call.events),
        vec!["Sorry, this number is not in service."]
    );
    assert!(
        !call
            .events
            .iter()
            .any(|e| matches!(e, CallEvent::Transcript { .. })),
        "nothing heard"
    );
    let heard = call
        .log
        .lock()
        .unwrap()
        .agent_packets
        .iter()
        .filter(|(_, a)| *a)
        .count();
    assert!(heard > 20, "the caller heard the message");
}
