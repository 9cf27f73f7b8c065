//! The tokio driver on virtual time with scripted providers: a whole call from
//! greeting to hang-up, barge-in, and a slow event reader.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use voxline_codecs::{AudioFrame, SampleRate};
use voxline_engine::call::{CallCommand, CallEvent, CallSettings, EndReason};
use voxline_engine::driver::{new_call, DriverOptions, MediaInput, MediaPort, ProviderSet};
use voxline_engine::provider::Role;
use voxline_engine::testkit::{ScriptedLlm, ScriptedReply, ScriptedStt, ScriptedTts};
use voxline_engine::tick_grid::{TickGrid, TickSnap};

mod common;
use common::{providers, PcmPort, TickClock};

fn s(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

#[tokio::test(start_paused = true)]
async fn whole_call_greeting_turn_and_hangup() {
    let settings = CallSettings {
        system_prompt: "You are the clinic's receptionist.".into(),
        first_message: Some("Hello, thanks for calling.".into()),
        ..Default::default()
    };
    let (port, agent) = PcmPort::new(vec![(s(4000), s(5500))]);
    let llm = ScriptedLlm::new(|req| {
        let q = ScriptedLlm::last_user(req).to_lowercase();
        if q.contains("open") {
            vec![ScriptedReply::Text(
                "We open at nine in the morning.".into(),
            )]
        } else {
            vec![ScriptedReply::Text("Sorry?".into())]
        }
    });
    let (task, control, mut events) = new_call(
        settings,
        providers(ScriptedStt::new(["When do you open tomorrow"]), llm),
        port,
        DriverOptions::default(),
    );
    let call = tokio::spawn(task.run());
    tokio::time::sleep(s(12_000)).await;
    control.hang_up().unwrap();
    let outcome = call.await.unwrap();
    assert_eq!(outcome.end_reason, EndReason::UserHangup);
    let mut all = Vec::new();
    while let Some(e) = events.try_next() {
        all.push(e);
    }
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.seq, i as u64, "ordered without gaps");
    }
    let kinds: Vec<&CallEvent> = all.iter().map(|e| &e.event).collect();
    let pos =
        |f: &dyn Fn(&CallEvent) -> bool| kinds.iter().position(|e| f(e)).unwrap_or(usize::MAX);
    let greeting = pos(
        &|e| matches!(e, CallEvent::AgentSpeechStopped { text, .. } if text.starts_with("Hello")),
    );
    let started = pos(&|e| matches!(e, CallEvent::CallerSpeechStarted));
    let final_t = pos(&|e| matches!(e, CallEvent::Transcript { is_final: true, .. }));
    let answer =
        pos(&|e| matches!(e, CallEvent::AgentSpeechStopped { text, .. } if text.contains("nine")));
    assert!(
        greeting < started && started < final_t && final_t < answer,
        "{kinds:#?}"
    );
    let latency = kinds
        .iter()
        .find_map(|e| match e {
            CallEvent::Latency { latency, .. } => Some(latency.clone()),
            _ => None,
        })
        .expect("latency reported");
    // endpointing (min delay 400 ms after the final) + LLM 200 ms + TTS 120 ms, give or take frames.
    assert!(
        latency.voice_to_voice_ms >= 700 && latency.voice_to_voice_ms < 1600,
        "{latency:?}"
    );
    let roles: Vec<Role> = outcome.history.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        vec![Role::System, Role::Assistant, Role::User, Role::Assistant]
    );
    assert_eq!(outcome.history[2].content, "When do you open tomorrow");
    assert!(outcome.media.late_ticks == 0);
    let frames = agent.lock().unwrap();
    let voiced = frames.iter().filter(|(_, v)| *v).count();
    assert!(voiced > 50, "agent audio was sent: {voiced}");
}

#[tokio::test(start_paused = true)]
async fn slow_event_reader_loses_nothing_and_never_stalls_media() {
    let settings = CallSettings {
        first_message: Some("Hi there, how can I help you today?".into()),
        ..Default::default()
    };
    let (port, agent) = PcmPort::new(vec![(s(4000), s(5000)), (s(9000), s(10_000))]);
    let (task, control, mut events) = new_call(
        settings,
        providers(
            ScriptedStt::new(["I have a question", "Thank you"]),
            ScriptedLlm::always("Of course, go ahead."),
        ),
        port,
        // Ticks on the runtime's millisecond lattice (a shared grid's points need not be).
        DriverOptions {
            tick_snap: TickSnap::Off,
            ..DriverOptions::default()
        },
    );
    let call = tokio::spawn(task.run());
    // The reader pauses for seconds between events.
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        while let Some(e) = events.next().await {
            got.push(e);
            tokio::time::sleep(s(3000)).await;
        }
        got
    });
    tokio::time::sleep(s(15_000)).await;
    control.hang_up().unwrap();
    let outcome = call.await.unwrap();
    let got = reader.await.unwrap();
    assert!(got.len() > 10);
    for (i, e) in got.iter().enumerate() {
        assert_eq!(e.seq, i as u64);
    }
    assert!(matches!(
        got.last().unwrap().event,
        CallEvent::Status { .. }
    ));
    // The media clock ran the whole time: one tick per 20 ms.
    assert!(outcome.media.ticks >= 749, "ticks {}", outcome.media.ticks);
    assert_eq!(outcome.media.late_ticks, 0);
    // Every tick's pacing is in the lateness histogram; on virtual time none is late.
    assert_eq!(outcome.media.lateness.count(), outcome.media.ticks);
    assert_eq!(outcome.media.lateness.max(), Duration::ZERO);
    // One frame per tick, plus the final silence sent at hang-up.
    assert_eq!(agent.lock().unwrap().len() as u64, outcome.media.ticks + 1);
}

#[tokio::test(start_paused = true)]
async fn host_commands_reach_the_live_call() {
    let (port, _agent) = PcmPort::new(vec![]);
    let (task, control, mut events) = new_call(
        CallSettings::default(),
        providers(
            ScriptedStt::new(Vec::<String>::new()),
            ScriptedLlm::always("Noted."),
        ),
        port,
        DriverOptions::default(),
    );
    let call = tokio::spawn(task.run());
    tokio::time::sleep(s(500)).await;
    let bad = control
        .command(CallCommand::Say {
            content: "  ".into(),
            end_after: false,
        })
        .await;
    assert!(bad.is_err());
    control
        .command(CallCommand::Say {
            content: "Your verification code is four two.".into(),
            end_after: true,
        })
        .await
        .unwrap();
    let outcome = call.await.unwrap();
    assert_eq!(outcome.end_reason, EndReason::HostEnded);
    let mut spoken = None;
    while let Some(e) = events.try_next() {
        if let CallEvent::AgentSpeechStopped { text, .. } = e.event {
            spoken = Some(text);
        }
    }
    assert_eq!(
        spoken.as_deref(),
        Some("Your verification code is four two.")
    );
}

#[tokio::test(start_paused = true)]
async fn a_reply_starts_when_its_audio_arrives_not_at_the_next_tick() {
    let settings = CallSettings {
        first_message: Some("Hello there.".into()),
        ..Default::default()
    };
    let (port, agent) = PcmPort::new(Vec::new());
    // The greeting's audio arrives 125 ms in, between the ticks at 120 and 140 ms.
    let tts = ScriptedTts {
        first_byte_latency: s(125),
        ..Default::default()
    };
    let (task, control, _events) = new_call(
        settings,
        ProviderSet {
            stt: Some(Arc::new(ScriptedStt::new(Vec::<String>::new()))),
            llm: Some(Arc::new(ScriptedLlm::always("Fine."))),
            tts: Some(Arc::new(tts)),
            realtime: None,
        },
        port,
        // Ticks at 0, 20, 40 ms of the call (a shared grid would move them).
        DriverOptions {
            tick_snap: TickSnap::Off,
            ..DriverOptions::default()
        },
    );
    let call = tokio::spawn(task.run());
    tokio::time::sleep(s(2000)).await;
    control.hang_up().unwrap();
    let outcome = call.await.unwrap();
    let sent = agent.lock().unwrap().clone();
    let first = sent
        .iter()
        .position(|(_, voiced)| *voiced)
        .expect("greeting sent");
    assert_eq!(
        sent[first].0,
        s(125),
        "first frame at once: {:?}",
        &sent[..first + 2]
    );
    // Then on the clock, one frame per slot: no slot is sent twice or skipped.
    assert_eq!(sent[first + 1].0, s(140));
    assert_eq!(sent[first + 2].0, s(160));
    assert_eq!(
        sent[..first].iter().filter(|(_, voiced)| !voiced).count(),
        first,
        "the slots before it were silence"
    );
    assert_eq!(
        first, 6,
        "slots 0..=100 ms were silent; the 120 ms slot took the audio"
    );
    assert_eq!(sent.len() as u64, outcome.media.ticks + 1);
    assert_eq!(outcome.media.late_ticks, 0);
}

/// A PCM port whose encoder runs at 8 kHz (a G.711 line): records the rate of each agent frame.
struct NarrowbandPort {
    inner: PcmPort,
    rates: Arc<Mutex<Vec<SampleRate>>>,
}

impl MediaPort for NarrowbandPort {
    fn recv(
        &mut self,
        epoch: tokio::time::Instant,
    ) -> impl std::future::Future<Output = io::Result<MediaInput>> + Send + '_ {
        self.inner.recv(epoch)
    }

    fn caller_frame(&mut self, now: Duration, out: &mut AudioFrame) -> bool {
        self.inner.caller_frame(now, out)
    }

    fn send_agent_frame(&mut self, now: Duration, frame: Option<&AudioFrame>) -> io::Result<()> {
        if let Some(f) = frame {
            self.rates.lock().unwrap().push(f.rate());
        }
        self.inner.send_agent_frame(now, frame)
    }

    fn caller_rate(&self) -> SampleRate {
        self.inner.caller_rate()
    }

    fn agent_rate(&self) -> SampleRate {
        SampleRate::Hz8000
    }
}

#[tokio::test(start_paused = true)]
async fn tts_is_asked_for_the_rate_the_port_encodes_at() {
    let (inner, agent) = PcmPort::new(Vec::new());
    let rates = Arc::new(Mutex::new(Vec::new()));
    let port = NarrowbandPort {
        inner,
        rates: rates.clone(),
    };
    let settings = CallSettings {
        first_message: Some("Hello there.".into()),
        ..Default::default()
    };
    let (task, control, _events) = new_call(
        settings,
        providers(
            ScriptedStt::new(Vec::<String>::new()),
            ScriptedLlm::always("Fine."),
        ),
        port,
        DriverOptions::default(),
    );
    let call = tokio::spawn(task.run());
    tokio::time::sleep(s(1500)).await;
    control.hang_up().unwrap();
    call.await.unwrap();
    let rates = rates.lock().unwrap().clone();
    assert!(rates.len() > 10, "greeting frames: {}", rates.len());
    // The stand-in synthesises at whatever rate it is asked for: 8 kHz all through, so the
    // port's encoder needs no resampler.
    assert!(rates.iter().all(|&r| r == SampleRate::Hz8000), "{rates:?}");
    assert!(agent.lock().unwrap().iter().any(|(_, voiced)| *voiced));
}

/// Runs four calls started 1 ms apart and returns the distinct instants at which their clocks
/// ticked during one second in which all four ran.
async fn ticks_of_four_calls(snap: TickSnap) -> Vec<tokio::time::Instant> {
    let ticks = Arc::new(Mutex::new(Vec::new()));
    let mut calls = Vec::new();
    for _ in 0..4 {
        let port = TickClock::new(ticks.clone());
        let options = DriverOptions {
            tick_snap: snap,
            ..DriverOptions::default()
        };
        let (task, control, _events) = new_call(
            CallSettings::default(),
            ProviderSet::default(),
            port,
            options,
        );
        calls.push((tokio::spawn(task.run()), control));
        tokio::time::sleep(s(1)).await;
    }
    tokio::time::sleep(s(100)).await;
    let from = tokio::time::Instant::now();
    tokio::time::sleep(s(1000)).await;
    let to = tokio::time::Instant::now();
    for (call, control) in calls {
        control.hang_up().unwrap();
        call.await.unwrap();
    }
    let mut distinct: Vec<_> = ticks
        .lock()
        .unwrap()
        .iter()
        .copied()
        .filter(|&t| t >= from && t < to)
        .collect();
    distinct.sort();
    distinct.dedup();
    distinct
}

#[tokio::test(start_paused = true)]
async fn calls_on_a_shared_grid_tick_together() {
    // Each clock at its own phase: four calls, four wake-ups in each of the 50 frames.
    let own = ticks_of_four_calls(TickSnap::Off).await;
    assert_eq!(own.len(), 4 * 50);

    // On a 4 ms grid four starts within 3 ms fall on one or two points: half the wake-ups or
    // fewer, and every tick lies a whole number of grid steps from every other.
    let grid = TickGrid::new(s(4)).unwrap();
    let shared = ticks_of_four_calls(TickSnap::Fixed(grid)).await;
    assert!(
        (50..=2 * 50).contains(&shared.len()),
        "{} instants",
        shared.len()
    );
    for t in &shared {
        let apart = t.duration_since(shared[0]).as_micros();
        assert_eq!(apart % 4000, 0, "{apart} us from the first tick");
    }
}

// Real time on purpose: the counters measure the tick's own work on the wall clock, which
// virtual time holds still. Only lower bounds are asserted, so a slow machine cannot fail it.
#[tokio::test]
async fn a_tick_that_runs_long_is_counted_as_a_late_tick_of_long_work() {
    let busy = s(15);
    let ticks = Arc::new(Mutex::new(Vec::new()));
    let port = TickClock {
        ticks: ticks.clone(),
        slow_tick: Some((3, busy)),
    };
    let (task, control, _events) = new_call(
        CallSettings::default(),
        ProviderSet::default(),
        port,
        DriverOptions::default(),
    );
    let call = tokio::spawn(task.run_with_port());
    // The slow tick is the third, due 40 ms in; hang up well after it.
    tokio::time::sleep(s(200)).await;
    control.hang_up().unwrap();
    let outcome = call.await.unwrap().0;
    let ran = ticks.lock().unwrap().len();
    assert!(ran >= 3, "ticks: {ran}");
    let media = outcome.media;
    assert!(media.late_ticks >= 1, "{media:?}");
    assert!(media.tick_work_max >= busy, "{media:?}");
    assert!(media.late_tick_work_max >= busy, "{media:?}");
    assert!(
        media.lateness.max() >= media.late_tick_work_max,
        "{media:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn calls_sharing_a_shedder_shed_load_together_while_it_holds() {
    use voxline_engine::load_shedding::LoadShedder;
    let shedder = Arc::new(LoadShedder::new(s(5), Duration::ZERO, s(2000)));
    let mut calls = Vec::new();
    for shared in [true, true, false] {
        let (port, _agent) = PcmPort::new(Vec::new());
        let asked = port.shedding.clone();
        let (task, control, _events) = new_call(
            CallSettings::default(),
            providers(
                ScriptedStt::new(Vec::<String>::new()),
                ScriptedLlm::always("Fine."),
            ),
            port,
            DriverOptions {
                load_shedding: shared.then(|| shedder.clone()),
                ..DriverOptions::default()
            },
        );
        calls.push((shared, tokio::spawn(task.run()), control, asked));
    }
    // On virtual time no tick is late: the shedder holds only when something engages it,
    // here a late tick seen 1 s into the calls (as another call on the machine would report;
    // with no sustain, one late tick is enough).
    tokio::time::sleep(s(1000)).await;
    shedder.observe(tokio::time::Instant::now(), s(30), Duration::ZERO);
    assert_eq!(shedder.engagements(), 1);
    tokio::time::sleep(s(4000)).await;
    for (shared, call, control, asked) in calls.iter_mut() {
        control.hang_up().unwrap();
        let outcome = call.await.unwrap();
        let asked = asked.lock().unwrap().clone();
        if !*shared {
            assert!(
                asked.is_empty(),
                "a call without the shedder is never asked"
            );
            assert_eq!(outcome.media.shed_ticks, 0);
            continue;
        }
        // Asked once to shed at the first tick after the late one, once to stop 2 s later.
        assert_eq!(asked.len(), 2, "{asked:?}");
        let ((on_at, on), (off_at, off)) = (asked[0], asked[1]);
        assert!(on && !off, "{asked:?}");
        assert!(on_at >= s(1000) && on_at <= s(1020), "{asked:?}");
        assert!(off_at >= s(3000) && off_at <= s(3020), "{asked:?}");
        // One tick of each 20 ms in between shed load.
        assert_eq!(outcome.media.shed_ticks, 100, "{asked:?}");
    }
    // Every tick of the sharing calls reported its work: the 5 s of calls closed about fifty
    // 100 ms windows (on virtual time the ticks take no time, so every window was idle).
    let windows = shedder.window_share_histogram();
    assert!((45..=51).contains(&windows[0]), "{windows:?}");
    assert_eq!(windows.iter().sum::<u64>(), windows[0], "{windows:?}");
}
