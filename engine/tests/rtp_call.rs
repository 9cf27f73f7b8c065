//! Calls through the real media path on virtual time: a simulated caller sends RTP/Opus
//! (or PCMU) of a voiced signal into an `RtpPort`, the driver runs VAD, turn-taking and
//! scripted providers, and the caller decodes the agent's RTP.

mod support;

use std::sync::Arc;

use support::*;
use voxline_engine::call::{CallEvent, CallSettings, EndReason};
use voxline_engine::driver::ProviderSet;
use voxline_engine::media_clock::ClockSource;
use voxline_engine::provider::Role;
use voxline_engine::testkit::{ScriptedLlm, ScriptedStt, ScriptedTts};

fn providers(script: Vec<&'static str>, reply: &'static str) -> ProviderSet {
    ProviderSet {
        stt: Some(Arc::new(ScriptedStt::new(script))),
        llm: Some(Arc::new(ScriptedLlm::always(reply))),
        tts: Some(Arc::new(ScriptedTts::default())),
        realtime: None,
    }
}

#[tokio::test(start_paused = true)]
async fn opus_call_turn_through_real_media() {
    let settings = CallSettings {
        first_message: Some("Hello, you are speaking with the clinic.".into()),
        ..Default::default()
    };
    let call = run_rtp_call(
        opus_config(),
        settings,
        providers(
            vec!["Can I book a cleaning"],
            "Yes, we have a slot on Monday at ten.",
        ),
        CallerScript {
            speech: vec![(ms(4000), ms(5600))],
            until: ms(12_000),
            ..Default::default()
        },
        collect,
    )
    .await;
    let (events, log, outcome) = (call.events, call.log, call.outcome);
    assert_eq!(outcome.end_reason, EndReason::UserHangup);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, CallEvent::CallerSpeechStarted)),
        "VAD heard the caller over RTP/Opus"
    );
    assert!(events.iter().any(
        |e| matches!(e, CallEvent::AgentSpeechStopped { text, .. } if text.contains("Monday"))
    ));
    let user = outcome
        .history
        .iter()
        .find(|m| m.role == Role::User)
        .unwrap();
    assert_eq!(user.content, "Can I book a cleaning");
    let log = log.lock().unwrap();
    let audible = log.agent_packets.iter().filter(|(_, a)| *a).count();
    assert!(
        audible > 100,
        "caller decoded the agent's Opus audio: {audible}"
    );
    // Continuous numbering: sequence +1 per packet; timestamps advance by 960 per 20 ms,
    // including through agent silence (gaps are multiples of 960), and a marker on each talk-spurt.
    for w in log.agent_ts.windows(2) {
        let (s0, t0, _) = w[0];
        let (s1, t1, m1) = w[1];
        assert_eq!(s1, s0.wrapping_add(1));
        let step = t1.wrapping_sub(t0);
        assert_eq!(step % 960, 0, "timestamp step {step}");
        if step > 960 {
            assert!(m1, "a packet after silence carries the marker");
        }
    }
    assert!(log.agent_ts[0].2, "first packet starts a talk-spurt");
}

#[tokio::test(start_paused = true)]
async fn pcmu_barge_in_silences_the_agent_within_a_frame() {
    let mut settings = CallSettings {
        first_message: Some(
            "Welcome to the clinic. We offer cleanings, whitening, braces, implants and emergency care every day of the week."
                .into(),
        ),
        ..Default::default()
    };
    settings.turn.false_interruption_timeout = None;
    let call = run_rtp_call(
        pcmu_config(),
        settings,
        providers(vec!["Sorry to interrupt"], "No problem."),
        CallerScript {
            speech: vec![(ms(2000), ms(3500))],
            until: ms(6000),
            ..Default::default()
        },
        collect,
    )
    .await;
    let (events, log, outcome) = (call.events, call.log, call.outcome);
    let interrupted = events
        .iter()
        .find_map(|e| match e {
            CallEvent::AgentInterrupted { spoken, full, .. } => {
                Some((spoken.clone(), full.clone()))
            }
            _ => None,
        })
        .expect("barge-in");
    assert!(interrupted.0.len() < interrupted.1.len());
    let greeting = &outcome.history[0];
    assert_eq!(
        greeting.content, interrupted.0,
        "history holds only what was played"
    );
    // From the caller's side: agent audio stops soon after the caller starts speaking:
    // VAD start (60 ms) + interruption_min_duration (300 ms) + one frame + transit.
    let log = log.lock().unwrap();
    let last_audible_during_greeting = log
        .agent_packets
        .iter()
        .filter(|(t, a)| *a && *t < ms(3600))
        .map(|(t, _)| *t)
        .max()
        .unwrap();
    assert!(
        last_audible_during_greeting <= ms(2000 + 60 + 300 + 60),
        "agent still audible at {last_audible_during_greeting:?}"
    );
    assert!(
        last_audible_during_greeting >= ms(2300),
        "not cut before the min duration"
    );
    // G.711 keeps sending (silence) packets: media stays continuous.
    let sent = log.agent_packets.len();
    assert!(sent >= 280, "continuous PCMU media: {sent}");
}

/// When the agent's first audible packet reached the caller.
fn first_reply(log: &std::sync::Mutex<CallerLog>) -> std::time::Duration {
    let log = log.lock().unwrap();
    log.agent_packets
        .iter()
        .filter(|(at, audible)| *audible && *at > ms(5600))
        .map(|(at, _)| *at)
        .next()
        .expect("the agent answered")
}

#[tokio::test(start_paused = true)]
async fn the_media_clock_moves_to_the_callers_packets() {
    // The caller's packets arrive 2 ms after each of the engine's ticks, so each waits 18 ms
    // for the tick that plays it until the clock moves towards them.
    for clock in [ClockSource::Interval, ClockSource::Shared] {
        media_clock_moves_to_the_callers_packets(clock, false).await;
    }
    // Catching up in the caller's pauses (after the caller's speech here) leaves the ticks
    // that play a packet to the aligner.
    media_clock_moves_to_the_callers_packets(ClockSource::Shared, true).await;
}

async fn media_clock_moves_to_the_callers_packets(clock: ClockSource, catch_up: bool) {
    let run = |align: bool| async move {
        run_rtp_call_offset(
            opus_config(),
            CallSettings::default(),
            providers(vec!["Can I book a cleaning"], "Yes, on Monday at ten."),
            CallerScript {
                speech: vec![(ms(4000), ms(5600))],
                until: ms(10_000),
                ..Default::default()
            },
            // The aligner alone: ticks on the call's own phase, not on a shared grid.
            voxline_engine::driver::DriverOptions {
                align_media_phase: align,
                tick_snap: voxline_engine::tick_grid::TickSnap::Off,
                media_clock: clock,
                catch_up_in_pauses: catch_up,
                ..Default::default()
            },
            ms(2),
            collect,
        )
        .await
    };
    let fixed = run(false).await;
    let aligned = run(true).await;
    assert_eq!(fixed.outcome.media.phase_shifts, 0, "{clock:?}");
    // One move (18 ms of wait less the 6 ms guard) and the clock stays there.
    assert_eq!(aligned.outcome.media.phase_shifts, 1, "{clock:?}");
    assert_eq!(aligned.outcome.media.late_ticks, 0, "{clock:?}");
    let (before, after) = (first_reply(&fixed.log), first_reply(&aligned.log));
    assert!(
        after + ms(10) <= before,
        "{clock:?}: the reply reaches the caller sooner: {after:?} vs {before:?}"
    );
    assert!(aligned.events.iter().any(
        |e| matches!(e, CallEvent::AgentSpeechStopped { text, .. } if text.contains("Monday"))
    ));
}

/// A call whose jitter buffer holds 60 ms (so there is a delay to catch up on), catching up
/// in the caller's pauses or not.
async fn held_60ms_call(
    mut config: voxline_engine::media::MediaConfig,
    settings: CallSettings,
    providers: ProviderSet,
    script: CallerScript,
    catch_up: bool,
) -> RtpCall {
    config.jitter_delay = (ms(60), ms(60), config.jitter_delay.2);
    let options = voxline_engine::driver::DriverOptions {
        catch_up_in_pauses: catch_up,
        ..Default::default()
    };
    run_rtp_call_with(config, settings, providers, script, options, collect).await
}

/// With a jitter buffer that holds 60 ms, the caller's pause at the end of a turn reaches the
/// VAD as it arrives when the driver catches up: the answer reaches the caller about that much
/// sooner, and the buffer's delay is back for the next turn.
#[tokio::test(start_paused = true)]
async fn catching_up_in_the_pause_takes_the_jitter_buffer_out_of_the_turn() {
    let run = |catch_up: bool| {
        held_60ms_call(
            opus_config(),
            CallSettings::default(),
            providers(
                vec!["Can I book a cleaning", "And on Tuesday"],
                "Yes, on Monday at ten.",
            ),
            CallerScript {
                speech: vec![(ms(4000), ms(5600)), (ms(9000), ms(10_000))],
                until: ms(14_000),
                ..Default::default()
            },
            catch_up,
        )
    };
    let held = run(false).await;
    let caught = run(true).await;
    assert_eq!(held.outcome.media.caller_frames_ahead, 0);
    let ahead = caught.outcome.media.caller_frames_ahead;
    assert!(ahead >= 4, "two pauses drained: {ahead} frames ahead");
    let (before, after) = (first_reply(&held.log), first_reply(&caught.log));
    assert!(
        after + ms(40) <= before,
        "the answer reaches the caller sooner: {after:?} vs {before:?}"
    );
    // Both turns are answered: the second is heard whole after the buffer grew back.
    for call in [&held, &caught] {
        let answers = call
            .events
            .iter()
            .filter(|e| matches!(e, CallEvent::AgentSpeechStopped { .. }))
            .count();
        assert!(answers >= 2, "{answers} answers");
        let heard: Vec<_> = call
            .events
            .iter()
            .filter_map(|e| match e {
                CallEvent::Transcript {
                    text,
                    is_final: true,
                } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert!(heard.contains(&"And on Tuesday"), "{heard:?}");
    }
}

/// Catching up ends when the agent answers, and the buffer takes back its delay in the
/// caller's silence: a barge-in later in the answer silences the agent at the same tick as
/// without catching up, and the caller's interruption is heard.
#[tokio::test(start_paused = true)]
async fn after_catching_up_a_barge_in_silences_the_agent_as_without_it() {
    let run = |catch_up: bool| {
        let mut settings = CallSettings::default();
        settings.turn.false_interruption_timeout = None;
        held_60ms_call(
            pcmu_config(),
            settings,
            providers(
                vec!["Can I book a cleaning", "Sorry to interrupt"],
                "Yes, we have openings on Monday at ten, on Tuesday at two, on Wednesday at \
                 nine and on Friday in the afternoon, so tell me which one suits you best.",
            ),
            CallerScript {
                speech: vec![(ms(4000), ms(5600)), (ms(8000), ms(9400))],
                until: ms(13_000),
                ..Default::default()
            },
            catch_up,
        )
    };
    let held = run(false).await;
    let caught = run(true).await;
    assert!(
        caught.outcome.media.caller_frames_ahead >= 2,
        "the pause was drained"
    );
    // The last audible agent packet before the caller's interruption took hold.
    let cut = |call: &RtpCall| {
        let log = call.log.lock().unwrap();
        let before = log
            .agent_packets
            .iter()
            .filter(|(at, audible)| *audible && *at > ms(7000) && *at < ms(9000))
            .map(|(at, _)| *at)
            .max()
            .expect("the agent was speaking when the caller barged in");
        // The agent was still speaking just before the barge-in, so the cut is the barge-in's.
        assert!(before >= ms(8300), "cut at {before:?}");
        before
    };
    let (without, with) = (cut(&held), cut(&caught));
    assert!(
        with <= without + ms(10) && without <= with + ms(10),
        "the agent is cut at {with:?} catching up, {without:?} without"
    );
    for call in [&held, &caught] {
        assert!(call
            .events
            .iter()
            .any(|e| matches!(e, CallEvent::AgentInterrupted { .. })));
    }
}
