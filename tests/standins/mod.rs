//! Scripted stand-ins for the example tests: the engine testkit's `ScriptedStt`, `ScriptedLlm`
//! and `ScriptedTts`, playing a dental booking call.
//!
//! They stand in for the offline providers (espeak-ng, PocketSphinx, the scripted agent) until
//! those are wired into `voxline::offline_standins()`; the tests that use them say so. The
//! recogniser hears utterances in the real caller audio (by energy) and returns the scripted
//! text for each; the voice renders a speech-like signal, 60 ms per character.

// Each test uses a part of this.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use voxline::engine::provider::{LlmRequest, Role};
use voxline::engine::testkit::{ScriptedLlm, ScriptedReply, ScriptedStt, ScriptedTts};
use voxline::Standins;

/// What the recogniser "hears" in the caller's first utterance.
pub const CALLER_REQUEST: &str =
    "Hi, I would like to book a cleaning on Tuesday at ten. My name is Alex Morgan.";
/// What it hears in the second.
pub const CALLER_THANKS: &str = "Thank you, that is all I needed.";
/// The agent's answer once the booking tool confirmed.
pub const CONFIRMATION: &str = "You are all set for a cleaning on Tuesday at ten with Doctor \
Lindqvist. Please arrive ten minutes early and bring your insurance card. Is there anything else?";
/// The agent's goodbye before it ends the call.
pub const GOODBYE: &str = "You are welcome, have a nice day.";
/// The structured data the post-call analysis "extracts".
pub const ANALYSIS: &str = r#"{"intent": "book", "appointment_booked": true, "day": "Tuesday", "time": "10:00", "patient_name": "Alex Morgan", "service": "cleaning", "follow_up_needed": false}"#;
/// The post-call summary.
pub const SUMMARY: &str =
    "Alex Morgan booked a cleaning on Tuesday at 10:00 and had no further questions.";

/// The model's rules: book when asked, confirm the tool's result, say goodbye and end the
/// call when thanked; post-call requests (no tools) get the summary or the JSON analysis.
pub fn dental_reply(request: &LlmRequest) -> Vec<ScriptedReply> {
    let text = |t: &str| vec![ScriptedReply::Text(t.to_string())];
    if request.tools.is_empty() {
        let prompt: String = request
            .messages
            .iter()
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        return if prompt.contains("JSON") || prompt.contains("schema") {
            text(ANALYSIS)
        } else {
            text(SUMMARY)
        };
    }
    let last = request.messages.last();
    if last.is_some_and(|m| m.role == Role::Tool && m.content.contains("\"confirmed\":true")) {
        return text(CONFIRMATION);
    }
    let said = ScriptedLlm::last_user(request).to_lowercase();
    if said.contains("thank") {
        return vec![
            ScriptedReply::Text(GOODBYE.to_string()),
            ScriptedReply::Tool {
                name: "end_call".into(),
                arguments: "{}".into(),
            },
        ];
    }
    if said.contains("book") {
        return vec![ScriptedReply::Tool {
            name: "book_appointment".into(),
            arguments: r#"{"day": "Tuesday", "time": "10:00", "name": "Alex Morgan", "service": "cleaning"}"#
                .into(),
        }];
    }
    text("Sorry, could you say that again?")
}

/// Stand-ins for a dental booking call whose caller says `heard`, in order; the voice speaks
/// 60 ms per character.
pub fn dental_standins(heard: &[&str]) -> Standins {
    dental_standins_at(heard, Duration::from_millis(60))
}

/// [`dental_standins`] with a voice that speaks `per_char` per character.
pub fn dental_standins_at(heard: &[&str], per_char: Duration) -> Standins {
    Standins {
        stt: Some(Arc::new(ScriptedStt::new(heard.iter().copied()))),
        llm: Some(Arc::new(ScriptedLlm::new(dental_reply))),
        tts: Some(Arc::new(ScriptedTts {
            per_char,
            ..ScriptedTts::default()
        })),
    }
}
