//! The stereo call recording of a real call on virtual time: read back with an independent WAV
//! reader, it has two channels at 16 kHz, the caller's speech on the left, the agent's on the
//! right, and exactly the call's length.

mod common;

use std::io::Cursor;
use std::time::Duration;

use common::{ms, providers, stt, PcmPort};
use voxline_engine::call::{CallEvent, CallSettings, CallStatus, EventRecord};
use voxline_engine::driver::{new_call, DriverOptions};
use voxline_engine::report::WavRecorder;
use voxline_engine::testkit::ScriptedLlm;

/// Level of `samples` in dBFS (-120 for digital silence).
fn dbfs(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return -120.0;
    }
    let mean = samples.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / samples.len() as f64;
    if mean <= 0.0 {
        -120.0
    } else {
        10.0 * (mean / (32768.0 * 32768.0)).log10()
    }
}

struct Wav {
    left: Vec<i16>,
    right: Vec<i16>,
    rate: u32,
}

impl Wav {
    fn read(bytes: Vec<u8>) -> Self {
        let mut reader = hound::WavReader::new(Cursor::new(bytes)).expect("a valid WAV");
        let spec = reader.spec();
        assert_eq!(spec.channels, 2);
        assert_eq!(spec.bits_per_sample, 16);
        assert_eq!(spec.sample_format, hound::SampleFormat::Int);
        let samples: Vec<i16> = reader
            .samples::<i16>()
            .collect::<Result<_, _>>()
            .expect("samples");
        Wav {
            left: samples.iter().step_by(2).copied().collect(),
            right: samples.iter().skip(1).step_by(2).copied().collect(),
            rate: spec.sample_rate,
        }
    }

    fn window(&self, channel: &[i16], from: Duration, to: Duration) -> f64 {
        let at =
            |d: Duration| (d.as_millis() as usize * self.rate as usize / 1000).min(channel.len());
        dbfs(&channel[at(from)..at(to)])
    }

    fn duration(&self) -> Duration {
        Duration::from_micros(self.left.len() as u64 * 1_000_000 / u64::from(self.rate))
    }
}

fn agent_windows(events: &[EventRecord]) -> Vec<(Duration, Duration)> {
    let mut windows = Vec::new();
    let mut open = None;
    for e in events {
        match e.event {
            CallEvent::AgentSpeechStarted { .. } => open = Some(ms(e.at_ms)),
            CallEvent::AgentSpeechStopped { .. } | CallEvent::AgentInterrupted { .. } => {
                if let Some(start) = open.take() {
                    windows.push((start, ms(e.at_ms)));
                }
            }
            _ => {}
        }
    }
    windows
}

#[tokio::test(start_paused = true)]
async fn caller_left_agent_right_for_the_whole_call() {
    let caller_speech = (ms(4000), ms(6000));
    let (port, _agent) = PcmPort::new(vec![caller_speech]);
    let (task, control, mut events) = new_call(
        CallSettings {
            first_message: Some("Hello, how can I help you?".into()),
            ..Default::default()
        },
        providers(
            stt(["I would like an appointment"]),
            ScriptedLlm::always("Of course, which day suits you?"),
        ),
        port,
        DriverOptions::default(),
    );
    let (recorder, recording) = WavRecorder::new(Cursor::new(Vec::new())).expect("set up");
    let call = tokio::spawn(task.with_recording(Box::new(recorder)).run());
    tokio::time::sleep(ms(12_000)).await;
    control.hang_up().expect("live");
    let outcome = call.await.expect("call ran");
    let mut all = Vec::new();
    while let Some(e) = events.try_next() {
        all.push(e);
    }

    let done = recording.finished().await.expect("recorded");
    assert_eq!(done.frames, outcome.media.ticks);
    let wav = Wav::read(done.writer.into_inner());
    assert_eq!(wav.rate, 16_000);
    assert_eq!(wav.left.len(), wav.right.len());

    // As long as the call: from the start of the task to the hang-up.
    let ended_at = all
        .iter()
        .find_map(|e| match &e.event {
            CallEvent::Status { status, .. } if status.is_terminal() => Some(ms(e.at_ms)),
            _ => None,
        })
        .expect("call ended");
    let diff = wav.duration().abs_diff(ended_at);
    assert!(
        diff <= ms(40),
        "recording {:?} vs call {:?}",
        wav.duration(),
        ended_at
    );

    // The caller speaks: energy on the left, nothing on the right.
    let (from, to) = (caller_speech.0 + ms(100), caller_speech.1 - ms(100));
    let left = wav.window(&wav.left, from, to);
    let right = wav.window(&wav.right, from, to);
    assert!(left > -30.0, "caller speech on the left: {left:.1} dBFS");
    assert!(right < -90.0, "agent silent on the right: {right:.1} dBFS");

    // The agent speaks (greeting and answer): energy on the right, only line noise on the left.
    let windows = agent_windows(&all);
    assert_eq!(windows.len(), 2, "{windows:?}");
    for (start, stop) in windows {
        assert!(stop > start + ms(500));
        let right = wav.window(&wav.right, start + ms(100), stop - ms(100));
        let left = wav.window(&wav.left, start + ms(100), stop - ms(100));
        assert!(right > -30.0, "agent speech on the right: {right:.1} dBFS");
        assert!(left < -55.0, "only line noise on the left: {left:.1} dBFS");
    }

    // A pause in the conversation is quiet on both sides.
    let left = wav.window(&wav.left, ms(2500), ms(3500));
    let right = wav.window(&wav.right, ms(2500), ms(3500));
    assert!(left < -55.0 && right < -90.0, "{left:.1} / {right:.1}");
}

#[tokio::test(start_paused = true)]
async fn nothing_is_recorded_before_the_call_is_answered() {
    let (port, _agent) = PcmPort::new(vec![(ms(0), ms(3000))]);
    let (task, control, mut events) = new_call(
        CallSettings::default(),
        providers(stt(["hello"]), ScriptedLlm::always("Hi.")),
        port,
        DriverOptions {
            auto_answer: false,
            ..DriverOptions::default()
        },
    );
    let (recorder, recording) = WavRecorder::new(Cursor::new(Vec::new())).expect("set up");
    let call = tokio::spawn(task.with_recording(Box::new(recorder)).run());
    tokio::time::sleep(ms(1000)).await;
    control.answer().expect("live");
    tokio::time::sleep(ms(1000)).await;
    control.hang_up().expect("live");
    call.await.expect("call ran");
    let answered = std::iter::from_fn(|| events.try_next())
        .find(|e| {
            matches!(
                e.event,
                CallEvent::Status {
                    status: CallStatus::InProgress,
                    ..
                }
            )
        })
        .expect("answered");
    let answered = ms(answered.at_ms);
    let wav = Wav::read(
        recording
            .finished()
            .await
            .expect("recorded")
            .writer
            .into_inner(),
    );
    let ringing = wav.window(&wav.left, ms(0), answered - ms(20));
    assert_eq!(
        ringing, -120.0,
        "the caller spoke while ringing, unrecorded"
    );
    let live = wav.window(&wav.left, answered + ms(40), ms(1900));
    assert!(live > -30.0, "recorded once answered: {live:.1} dBFS");
    assert!(wav.duration() >= ms(1980) && wav.duration() <= ms(2060));
}
