//! The `local_call` example end to end: a whole simulated call on 127.0.0.1 with the dental
//! assistant, checked through the files it writes.
//!
//! Providers: the real offline ones, as a newcomer without keys gets them — PocketSphinx
//! hears the repository's caller WAVs (sent over RTP/Opus) with the assistant's domain
//! language model, the scripted agent answers and books, espeak-ng speaks. Needs the Debian
//! packages `scripts/setup.sh` installs.

#[allow(dead_code)]
#[path = "../examples/local_call.rs"]
mod local_call;

use std::path::Path;

use serde_json::Value;
use voxline::engine::call::EndReason;

fn events(dir: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join("events.jsonl")).expect("events.jsonl");
    text.lines()
        .map(|l| serde_json::from_str(l).expect("one JSON event per line"))
        .collect()
}

fn json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_call_books_gets_interrupted_and_ends() {
    let dir = std::env::temp_dir().join(format!("voxline-local-call-{}", std::process::id()));
    let args = local_call::Args {
        out: dir.clone(),
        ..local_call::Args::default()
    };
    let done = local_call::run(&args, voxline::offline_standins())
        .await
        .expect("the call runs to its end");

    // The agent ended the call itself after the caller said thanks.
    assert_eq!(done.outcome.end_reason, EndReason::AssistantEnded);
    let report = &done.followed.report;
    assert!(
        (10..=40).contains(&report.report.duration_seconds),
        "{} s",
        report.report.duration_seconds
    );

    let events = events(&dir);
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    let said = |role: &str, text: &str| {
        events.iter().any(|e| {
            e["type"] == "message" && e["role"] == role && e["content"].as_str() == Some(text)
        })
    };
    // What the recogniser heard of the caller's WAVs (see assets/README.md).
    // A turn the caller continued before the answer is retracted and said again whole.
    let mut heard: Vec<&str> = Vec::new();
    for e in events.iter().filter(|e| e["role"] == "user") {
        let content = e["content"].as_str().unwrap_or_default();
        if e["type"] == "message" {
            heard.push(content);
        } else if e["type"] == "message-retracted" {
            let at = heard.iter().rposition(|h| *h == content);
            heard.remove(at.expect("a retraction follows its message"));
        }
    }
    // The request (one turn, or the last of the turns it was heard in) and the goodbye.
    let has_all = |text: &str| {
        ["book", "cleaning", "tuesday", "ten", "john"]
            .iter()
            .all(|word| text.split_whitespace().any(|w| w == *word))
    };
    let asked = *heard
        .iter()
        .rfind(|h| has_all(h))
        .unwrap_or_else(|| panic!("the booking request was heard: {heard:?}"));
    let goodbye = heard.last().copied().unwrap_or_default();
    assert!(goodbye.contains("that's all"), "{heard:?}");
    assert!(heard.len() <= 3, "{heard:?}");
    assert!(!said("user", ""), "no empty caller turn");
    let tool_call = events
        .iter()
        .find(|e| e["type"] == "tool-call")
        .expect("the model called the booking tool");
    assert_eq!(tool_call["name"], "book_appointment");
    assert_eq!(tool_call["arguments"]["day"], "Tuesday");
    assert_eq!(tool_call["arguments"]["time"], "10:00");
    assert_eq!(tool_call["arguments"]["service"], "cleaning");
    let tool_result = events
        .iter()
        .find(|e| e["type"] == "tool-result")
        .expect("the host answered");
    assert_eq!(tool_result["result"]["confirmed"], true);
    // The caller talked over the confirmation: it was cut, and only what was heard counts.
    let interrupted = events
        .iter()
        .find(|e| {
            e["type"] == "agent-interrupted"
                && e["full"]
                    .as_str()
                    .is_some_and(|f| f.starts_with("You're booked in for a cleaning on Tuesday"))
        })
        .expect("the caller barged in on the confirmation");
    let full = interrupted["full"].as_str().unwrap_or_default();
    let spoken = interrupted["spoken"].as_str().unwrap_or_default();
    assert!(
        !spoken.is_empty() && spoken.len() < full.len(),
        "{spoken:?}"
    );
    // The agent closed, and the engine said the assistant's end_call_message.
    assert!(said(
        "assistant",
        "Thanks for calling Bright Smile Dental. Goodbye!"
    ));
    assert!(kinds.contains(&"latency"), "{kinds:?}");
    // Sequence numbers have no gaps.
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["seq"], i as u64);
    }

    // The webhook bodies.
    let request = json(&dir.join("assistant-request.json"));
    assert_eq!(request["message"]["type"], "assistant-request");
    let first = json(&dir.join("status-update-1.json"));
    assert_eq!(first["message"]["call"]["status"], "in-progress");
    let last = json(&dir.join("status-update-2.json"));
    assert_eq!(last["message"]["call"]["status"], "ended");
    assert_eq!(last["message"]["end_reason"], "assistant_ended");
    let tools = json(&dir.join("tool-calls-1.json"));
    assert_eq!(
        tools["message"]["tool_call_list"][0]["function"]["name"],
        "book_appointment"
    );
    assert_eq!(
        tools["message"]["assistant"]["name"], "Bright Smile Dental - front desk",
        "the webhooks echo the assistant"
    );
    let eocr = json(&dir.join("end-of-call-report.json"));
    let m = &eocr["message"];
    assert_eq!(m["type"], "end-of-call-report");
    let summary = m["summary"].as_str().expect("a summary");
    assert!(summary.contains(asked), "{summary}");
    assert_eq!(m["analysis"]["intent"], "book");
    assert_eq!(m["analysis"]["appointment_booked"], true);
    assert_eq!(m["analysis"]["day"], "Tuesday");
    let messages = m["messages"].as_array().expect("messages");
    assert_eq!(messages[0]["role"], "assistant", "the greeting comes first");
    assert!(messages
        .iter()
        .any(|x| x["role"] == "user" && x["content"] == asked));
    assert!(
        messages
            .iter()
            .any(|x| x["role"] == "assistant" && x["content"] == spoken),
        "the report keeps what the caller heard of the interrupted answer"
    );

    // The recording: stereo, as long as the call, both sides audible.
    let mut wav = hound::WavReader::open(dir.join("recording.wav")).expect("recording.wav");
    let spec = wav.spec();
    assert_eq!((spec.channels, spec.sample_rate), (2, 16_000));
    let samples: Vec<i16> = wav.samples::<i16>().map(|s| s.expect("sample")).collect();
    let seconds = samples.len() as f64 / 2.0 / 16_000.0;
    assert!(
        (seconds - report.report.duration_seconds as f64).abs() < 2.5,
        "recording {seconds:.1} s, call {} s",
        report.report.duration_seconds
    );
    let loud = |channel: usize| {
        samples
            .chunks_exact(2 * 320)
            .filter(|frame| {
                let power: f64 = frame
                    .iter()
                    .skip(channel)
                    .step_by(2)
                    .map(|&s| f64::from(s) * f64::from(s))
                    .sum::<f64>()
                    / 320.0;
                10.0 * (power / (32768.0 * 32768.0)).max(1e-12).log10() > -40.0
            })
            .count()
    };
    let (caller_frames, agent_frames) = (loud(0), loud(1));
    // The caller's clips are 7.3 s and 3.7 s; the agent says more.
    assert!(caller_frames > 200, "caller: {caller_frames} loud frames");
    assert!(agent_frames > 300, "agent: {agent_frames} loud frames");
    if std::env::var_os("VOXLINE_KEEP_TEST_OUTPUT").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
