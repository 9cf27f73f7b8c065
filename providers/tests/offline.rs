//! The offline default providers against their real libraries: espeak-ng speech, PocketSphinx
//! recognising that speech, and the scripted agent's rules.
//!
//! Needs the Debian packages that `scripts/setup.sh` installs (`libespeak-ng-dev`,
//! `libpocketsphinx-dev`, `libsphinxbase-dev`, `pocketsphinx-en-us`).

use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use voxline_providers::engine::codecs::SampleRate;
use voxline_providers::engine::provider::{SpokenSpan, TtsEvent, TtsInput, TtsParams, TtsProvider};
use voxline_providers::offline::espeak::{EspeakConfig, EspeakTts, OUTPUT_RATE};

// ---------------------------------------------------------------------------------------------
// espeak

struct Spoken {
    samples: Vec<i16>,
    spans: Vec<SpokenSpan>,
    events: Vec<TtsEvent>,
}

async fn speak(tts: &EspeakTts, chunks: &[&str]) -> Spoken {
    let (in_tx, in_rx) = mpsc::unbounded_channel();
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
    for c in chunks {
        in_tx
            .send(TtsInput::Text((*c).to_owned()))
            .expect("send text");
    }
    in_tx.send(TtsInput::End).expect("send end");
    let params = TtsParams {
        preferred_rate: SampleRate::Hz24000,
    };
    tokio::time::timeout(
        Duration::from_secs(30),
        tts.synthesize(params, in_rx, ev_tx),
    )
    .await
    .expect("synthesis finished in time")
    .expect("synthesis succeeded");
    let mut spoken = Spoken {
        samples: Vec::new(),
        spans: Vec::new(),
        events: Vec::new(),
    };
    while let Ok(e) = ev_rx.try_recv() {
        match &e {
            TtsEvent::Audio { rate, samples } => {
                assert_eq!(*rate, OUTPUT_RATE);
                spoken.samples.extend_from_slice(samples);
            }
            TtsEvent::Alignment(spans) => spoken.spans.extend(spans.iter().cloned()),
            TtsEvent::Done => {}
        }
        spoken.events.push(e);
    }
    spoken
}

fn seconds(samples: usize) -> f64 {
    samples as f64 / OUTPUT_RATE.hz() as f64
}

#[tokio::test]
async fn espeak_speaks_24k_audio_with_ordered_word_spans() {
    let tts = EspeakTts::default();
    tts.check()
        .await
        .expect("espeak-ng works (scripts/setup.sh installs it)");
    let first = "Hello, I would like to book an appointment.";
    let second = "Is Tuesday at ten o'clock free?";
    let spoken = speak(&tts, &[first, second]).await;

    assert!(matches!(spoken.events.last(), Some(TtsEvent::Done)));
    let total = seconds(spoken.samples.len());
    // About 14 characters a second at 175 words per minute, plus clause pauses.
    assert!((3.0..9.0).contains(&total), "{total:.2} s of audio");
    let peak = spoken
        .samples
        .iter()
        .map(|s| s.unsigned_abs())
        .max()
        .unwrap_or(0);
    assert!(peak > 3000, "audible speech, peak {peak}");

    let text: String = spoken.spans.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(
        text,
        format!("{first}{second}"),
        "spans cover every character in order"
    );
    assert_eq!(spoken.spans.len(), 14, "{:?}", spoken.spans);
    for pair in spoken.spans.windows(2) {
        assert!(pair[0].start < pair[1].start, "{pair:?}");
        assert!(
            pair[0].end <= pair[1].start + Duration::from_millis(1),
            "{pair:?}"
        );
    }
    for span in &spoken.spans {
        assert!(span.start <= span.end, "{span:?}");
    }
    let last = spoken.spans.last().expect("spans");
    assert!(
        last.end.as_secs_f64() <= total + 0.01,
        "{last:?} within {total:.2} s"
    );
    // The second chunk's words start after the first chunk's audio.
    let tuesday = spoken
        .spans
        .iter()
        .find(|s| s.text.starts_with("Tuesday"))
        .expect("a span for Tuesday");
    assert!(tuesday.start.as_secs_f64() > 2.0, "{tuesday:?}");
}

#[tokio::test]
async fn espeak_speed_changes_duration() {
    let text = "The quick brown fox jumps over the lazy dog.";
    let normal = speak(&EspeakTts::default(), &[text]).await;
    let fast = speak(
        &EspeakTts::new(EspeakConfig {
            speed: 1.6,
            ..EspeakConfig::default()
        }),
        &[text],
    )
    .await;
    assert!(
        fast.samples.len() * 10 < normal.samples.len() * 8,
        "fast {} vs normal {} samples",
        fast.samples.len(),
        normal.samples.len()
    );
}

#[tokio::test]
async fn espeak_unknown_voice_is_a_config_error() {
    let tts = EspeakTts::new(EspeakConfig {
        voice: "xx-no-such-voice".to_owned(),
        ..EspeakConfig::default()
    });
    let err = tts.check().await.expect_err("unknown voice");
    assert_eq!(err.kind(), "config", "{err}");
}

#[tokio::test]
async fn dropped_synthesis_does_not_block_the_next() {
    let tts = EspeakTts::default();
    // Hours of speech: far more than the test allows to synthesise.
    let long: String = (0..5000)
        .map(|i| format!("This is sentence number {i} of a very long answer. "))
        .collect();
    let (in_tx, in_rx) = mpsc::unbounded_channel();
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
    in_tx.send(TtsInput::Text(long)).expect("send");
    let params = TtsParams {
        preferred_rate: SampleRate::Hz24000,
    };
    let running = tokio::spawn(tts.synthesize(params, in_rx, ev_tx));
    // Wait for the first audio, then cancel as the engine does on barge-in.
    let first = tokio::time::timeout(Duration::from_secs(20), ev_rx.recv())
        .await
        .expect("audio in time");
    assert!(matches!(first, Some(TtsEvent::Audio { .. })), "{first:?}");
    running.abort();
    let _ = running.await;

    let started = Instant::now();
    let next = speak(&tts, &["Sorry, go ahead."]).await;
    let waited = started.elapsed();
    assert!(!next.samples.is_empty());
    assert!(
        waited < Duration::from_secs(5),
        "the next utterance waited {waited:?}"
    );
}
