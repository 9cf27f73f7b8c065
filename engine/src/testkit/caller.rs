//! A simulated phone caller on the far end of an RTP transport: speaks (a voiced test
//! signal or a recorded clip) during scripted windows, presses keys as RFC 4733 events,
//! and decodes what the agent sends back — for tests, examples and load runs.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use voxline_codecs::dtmf::{DtmfPacket, DtmfSender};
use voxline_codecs::{AudioFrame, FrameOrigin, PayloadFormat, Resampler, RtpPacket, SampleRate};

use super::voiced_signal;
use crate::media::{InboundMedia, MediaConfig, MediaError, OutboundMedia, PacketTransport};

/// What the caller says.
#[derive(Clone, Debug, Default)]
pub enum CallerVoice {
    /// A voiced, speech-like test signal.
    #[default]
    Synthetic,
    /// A recorded clip (16 kHz mono), played from the start of each speech window.
    Clip(Arc<Vec<i16>>),
}

/// What the simulated caller does, on its own clock (zero = when it starts).
#[derive(Clone, Debug, Default)]
pub struct CallerScript {
    /// (start, end) windows of speech.
    pub speech: Vec<(Duration, Duration)>,
    /// Key presses: (time, digit).
    pub keys: Vec<(Duration, char)>,
    /// How long the caller stays on the line.
    pub until: Duration,
    /// The voice used in speech windows.
    pub voice: CallerVoice,
    /// Send nothing outside speech windows (silence suppression, as many trunks and
    /// phones do); the timestamps still advance and each talk-spurt starts with the marker.
    pub silence_suppression: bool,
}

/// What the simulated caller observed.
#[derive(Debug, Default)]
pub struct CallerLog {
    /// Arrival time of every agent packet and whether it decoded to audible audio.
    pub agent_packets: Vec<(Duration, bool)>,
    /// Sequence number, timestamp and marker of every agent packet, in order.
    pub agent_ts: Vec<(u16, u32, bool)>,
    /// The agent's audio as the caller decoded it (at the media config's caller rate),
    /// one entry per 20 ms tick (silence where nothing was due).
    pub agent_audio: Vec<i16>,
    /// Caller packets sent (audio and telephone-events).
    pub packets_sent: u64,
}

/// Errors starting a simulated caller.
#[derive(Debug, thiserror::Error)]
pub enum CallerError {
    /// The media configuration cannot be used.
    #[error(transparent)]
    Media(#[from] MediaError),
    /// A key in the script is not a DTMF digit.
    #[error("key {0:?} is not a DTMF digit")]
    BadKey(char),
}

/// Starts a caller task that sends to `remote` over `transport`; the task hands the
/// transport back when the script ends (so a memory pipe stays open until then).
pub fn spawn_caller<T: PacketTransport>(
    mut transport: T,
    remote: SocketAddr,
    mut config: MediaConfig,
    script: CallerScript,
    log: Arc<Mutex<CallerLog>>,
) -> Result<tokio::task::JoinHandle<T>, CallerError> {
    // The caller hears only the agent's address.
    config.remote = Some(remote);
    if script.silence_suppression {
        config.send_silence = false;
    }
    let rate = match config.registry.get(config.send_payload_type) {
        Some(PayloadFormat::Opus { pcm_rate }) => pcm_rate,
        Some(PayloadFormat::L16 { rate }) => rate,
        _ => SampleRate::Hz8000,
    };
    let mut out = OutboundMedia::new(&config)?;
    let mut inbound = InboundMedia::new(&config)?;
    let event_pt = config
        .registry
        .find(|f| matches!(f, PayloadFormat::TelephoneEvent { .. }));
    let clock = config
        .registry
        .get(config.send_payload_type)
        .map(|f| f.clock_rate())
        .unwrap_or(8000);
    for (_, k) in &script.keys {
        if voxline_codecs::dtmf::event_code(*k).is_none() {
            return Err(CallerError::BadKey(*k));
        }
    }
    let mut clip_resampler = match &script.voice {
        CallerVoice::Clip(_) if rate != SampleRate::Hz16000 => Some(
            Resampler::new(SampleRate::Hz16000, rate)
                .map_err(|e| CallerError::Media(MediaError::Codec(e)))?,
        ),
        _ => None,
    };
    Ok(tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let mut sample = 0usize;
        let mut frame = AudioFrame::silent(rate);
        let mut clip_frame = AudioFrame::silent(SampleRate::Hz16000);
        let mut decoded = AudioFrame::silent(config.caller_rate);
        let mut keys = script.keys.clone();
        keys.sort_by_key(|k| k.0);
        let mut keys = VecDeque::from(keys);
        let mut tone: Option<VecDeque<DtmfPacket>> = None;
        let mut tone_started = Duration::ZERO;
        let mut clip_pos = 0usize;
        let mut in_window = false;
        let mut buf = vec![0u8; 2048];
        loop {
            tick.tick().await;
            let now = start.elapsed();
            if now >= script.until {
                break;
            }
            // What the agent sent since the last tick.
            while let Ok(Some((n, from))) = transport.try_recv_from(&mut buf) {
                let Ok(parsed) = RtpPacket::parse(&buf[..n]) else {
                    continue;
                };
                let (seq, ts, marker) = (parsed.sequence(), parsed.timestamp(), parsed.marker());
                inbound.on_datagram(now, from, &buf[..n]);
                if let Ok(mut log) = log.lock() {
                    log.agent_ts.push((seq, ts, marker));
                }
            }
            let heard = inbound.next_frame(now, &mut decoded);
            if let Ok(mut log) = log.lock() {
                if heard {
                    log.agent_packets.push((now, decoded.level_dbfs() > -50.0));
                    log.agent_audio.extend_from_slice(decoded.samples());
                } else {
                    let n = config.caller_rate.frame_samples();
                    let len = log.agent_audio.len();
                    log.agent_audio.resize(len + n, 0);
                }
            }
            // A key press: telephone-events replace audio while the tone lasts.
            if tone.is_none() && keys.front().is_some_and(|k| k.0 <= now) {
                if let (Some((_, digit)), Some(_)) = (keys.pop_front(), event_pt) {
                    let tone_packets = DtmfSender::new(clock).and_then(|s| {
                        s.tone(digit, Duration::from_millis(120), out.next_timestamp())
                    });
                    if let Ok(t) = tone_packets {
                        tone = Some(t.collect());
                        tone_started = now;
                    }
                }
            }
            if let (Some(packets), Some(pt)) = (tone.as_mut(), event_pt) {
                let elapsed =
                    ((now - tone_started).as_micros() as u64 * clock as u64 / 1_000_000) as u32;
                while let Some(p) = packets
                    .front()
                    .filter(|p| p.send_offset <= elapsed)
                    .copied()
                {
                    packets.pop_front();
                    if let Some(bytes) = out.event_packet(pt, &p) {
                        let _ = transport.send_to(bytes, remote);
                        if let Ok(mut log) = log.lock() {
                            log.packets_sent += 1;
                        }
                    }
                }
                if packets.is_empty() {
                    tone = None;
                }
                let _ = out.next_packet(None);
                continue;
            }
            frame.reset(rate, FrameOrigin::Received);
            let speaking = script.speech.iter().any(|&(a, b)| now >= a && now < b);
            if !speaking && script.silence_suppression {
                let _ = out.next_packet(None);
                in_window = false;
                sample += rate.frame_samples();
                continue;
            }
            if speaking && !in_window {
                clip_pos = 0;
            }
            in_window = speaking;
            match (&script.voice, speaking) {
                (CallerVoice::Synthetic, true) => voiced_signal(rate, sample, frame.samples_mut()),
                (CallerVoice::Clip(clip), true) => {
                    clip_frame.reset(SampleRate::Hz16000, FrameOrigin::Received);
                    for s in clip_frame.samples_mut().iter_mut() {
                        *s = clip.get(clip_pos).copied().unwrap_or(0);
                        clip_pos += 1;
                    }
                    match clip_resampler.as_mut() {
                        Some(r) => {
                            let _ = r.process_into(&clip_frame, &mut frame);
                        }
                        None => frame = clip_frame,
                    }
                }
                (_, false) => {
                    // A phone line is never digital silence.
                    for (i, s) in frame.samples_mut().iter_mut().enumerate() {
                        *s = (((sample + i) * 7919 % 41) as i16) - 20;
                    }
                }
            }
            sample += rate.frame_samples();
            if let Some(p) = out.next_packet(Some(&frame)) {
                let _ = transport.send_to(p, remote);
                if let Ok(mut log) = log.lock() {
                    log.packets_sent += 1;
                }
            }
        }
        transport
    }))
}
