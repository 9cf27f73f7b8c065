//! A simulated phone caller on its own UDP socket: sends RTP/Opus all the time (a quiet line
//! between utterances, as a phone does), speaks a voice clip when told to, and decodes what the
//! agent sends back.
//!
//! Unlike the engine testkit's scripted caller, which plays one clip on a fixed schedule, this
//! one takes cues while the call runs, so the utterances can follow what the agent does
//! (answer after the greeting, talk over a reply) whatever the voice's speed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use voxline::codecs::{AudioFrame, FrameOrigin, PayloadFormat, PayloadRegistry, SampleRate};
use voxline::engine::media::{InboundMedia, OutboundMedia};
use voxline::MediaConfig;

use super::audio::CLIP_RATE;
use super::cli::AppError;

/// RTP payload type of the simulated call's Opus stream.
pub const OPUS_PT: u8 = 111;

/// The media configuration both ends of the simulated call use: Opus on payload type 111,
/// encoded from and decoded to 16 kHz (the RTP clock is 48 kHz, as always for Opus).
pub fn opus_media() -> Result<MediaConfig, AppError> {
    let mut registry = PayloadRegistry::empty();
    registry
        .insert(
            OPUS_PT,
            PayloadFormat::Opus {
                pcm_rate: SampleRate::Hz16000,
            },
        )
        .map_err(|e| AppError::Setup(format!("Opus payload type: {e}")))?;
    Ok(MediaConfig::new(registry, OPUS_PT))
}

/// A voice clip at 16 kHz with a name for the transcript.
#[derive(Clone, Debug)]
pub struct Clip {
    /// Shown in the transcript (the file name).
    pub name: String,
    /// 16 kHz mono samples.
    pub samples: Arc<Vec<i16>>,
}

impl Clip {
    /// How long the clip plays.
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.samples.len() as f64 / f64::from(CLIP_RATE.hz()))
    }
}

/// What the caller is told to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cue {
    /// Start speaking clip `n` now (cuts a clip still playing).
    Say(usize),
    /// Stop sending and end the task.
    Stop,
}

/// What the caller reports while it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Heard {
    /// Clip `n` finished playing.
    Finished(usize),
}

/// What the caller observed over the whole call.
#[derive(Clone, Debug, Default)]
pub struct CallerLog {
    /// RTP packets sent.
    pub packets_sent: u64,
    /// 20 ms frames of agent audio decoded that were audible (above -50 dBFS).
    pub agent_frames_audible: u64,
}

/// A running simulated caller.
pub struct Caller {
    cues: mpsc::UnboundedSender<Cue>,
    task: JoinHandle<CallerLog>,
}

impl Caller {
    /// Tells the caller what to do; false when it has already stopped.
    pub fn cue(&self, cue: Cue) -> bool {
        self.cues.send(cue).is_ok()
    }

    /// A handle to send cues from elsewhere.
    pub fn cues(&self) -> mpsc::UnboundedSender<Cue> {
        self.cues.clone()
    }

    /// Stops the caller and returns what it observed.
    pub async fn stop(self) -> CallerLog {
        let _ = self.cues.send(Cue::Stop);
        self.task.await.unwrap_or_default()
    }
}

/// Starts a caller sending from `socket` to the agent at `agent` with `config` (see
/// [`opus_media`]); `clips` are what [`Cue::Say`] can play. The receiver gets the caller's
/// reports (clips that finished).
pub fn spawn_caller(
    socket: UdpSocket,
    agent: SocketAddr,
    mut config: MediaConfig,
    clips: Vec<Clip>,
) -> Result<(Caller, mpsc::UnboundedReceiver<Heard>), AppError> {
    config.remote = Some(agent);
    config.caller_rate = CLIP_RATE;
    let rate = config
        .registry
        .get(config.send_payload_type)
        .and_then(PayloadFormat::pcm_rate)
        .ok_or_else(|| AppError::Setup("the caller's payload type has no audio format".into()))?;
    if rate != CLIP_RATE {
        return Err(AppError::Setup(format!(
            "the simulated caller encodes at {} Hz; configure its codec for 16 kHz",
            rate.hz()
        )));
    }
    let mut outbound =
        OutboundMedia::new(&config).map_err(|e| AppError::Setup(format!("caller encoder: {e}")))?;
    let mut inbound =
        InboundMedia::new(&config).map_err(|e| AppError::Setup(format!("caller decoder: {e}")))?;
    let (cue_tx, mut cue_rx) = mpsc::unbounded_channel();
    let (heard_tx, heard_rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut log = CallerLog::default();
        let start = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
        let mut frame = AudioFrame::silent(CLIP_RATE);
        let mut decoded = AudioFrame::silent(CLIP_RATE);
        let mut buf = vec![0u8; 2048];
        // The clip being spoken and the position in it.
        let mut speaking: Option<(usize, usize)> = None;
        let mut noise_phase = 0usize;
        loop {
            tick.tick().await;
            let now = start.elapsed();
            // What the agent sent since the last tick.
            while let Ok((n, from)) = socket.try_recv_from(&mut buf) {
                inbound.on_datagram(now, from, &buf[..n]);
            }
            if inbound.next_frame(now, &mut decoded) && decoded.level_dbfs() > -50.0 {
                log.agent_frames_audible += 1;
            }
            loop {
                match cue_rx.try_recv() {
                    Ok(Cue::Say(n)) if n < clips.len() => speaking = Some((n, 0)),
                    Ok(Cue::Say(_)) => {}
                    Ok(Cue::Stop) | Err(mpsc::error::TryRecvError::Disconnected) => return log,
                    Err(mpsc::error::TryRecvError::Empty) => break,
                }
            }
            frame.reset(CLIP_RATE, FrameOrigin::Received);
            match speaking {
                Some((n, pos)) => {
                    let clip = &clips[n].samples;
                    let end = (pos + CLIP_RATE.frame_samples()).min(clip.len());
                    frame.samples_mut()[..end - pos].copy_from_slice(&clip[pos..end]);
                    if end >= clip.len() {
                        speaking = None;
                        let _ = heard_tx.send(Heard::Finished(n));
                    } else {
                        speaking = Some((n, end));
                    }
                }
                None => {
                    // A phone line is never digital silence: a faint hiss.
                    for s in frame.samples_mut().iter_mut() {
                        noise_phase = noise_phase.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                        *s = ((noise_phase >> 16) % 41) as i16 - 20;
                    }
                }
            }
            if let Some(packet) = outbound.next_packet(Some(&frame)) {
                if socket.send_to(packet, agent).await.is_ok() {
                    log.packets_sent += 1;
                }
            }
        }
    });
    Ok((Caller { cues: cue_tx, task }, heard_rx))
}
