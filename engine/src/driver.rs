//! The thin tokio driver around the call core: one task per call that runs the
//! media clock, feeds the core, starts and cancels provider sessions, and
//! publishes events.
//!
//! Media, VAD and turn logic run inline in this task (no hand-off per frame);
//! providers run in their own tasks and talk back through one channel.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use voxline_codecs::{AudioFrame, SampleRate, FRAME_MS};

use crate::call::{
    Action, Call, CallCommand, CallSettings, CallStatus, CommandError, EndReason, EventRecord, OpId,
};
use crate::load_shedding::LoadShedder;
use crate::media_clock::{ClockSource, MediaClock};
use crate::platform::{CallControlResponse, ControlCommand, RateLimited, RateLimiter};
use crate::provider::{
    LlmEvent, LlmProvider, ProviderError, RealtimeControl, RealtimeEvent, RealtimeIo,
    RealtimeParams, RealtimeProvider, SttControl, SttEvent, SttIo, SttProvider, SttSessionParams,
    TtsEvent, TtsInput, TtsParams, TtsProvider,
};
use crate::ring::{speech_ring, SpeechRingProducer};
use crate::tick_grid::{GridSeat, TickGrid, TickSnap};
use crate::vad::{VadConfig, VoiceDetector};

/// What a media port reports after waiting for input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaInput {
    /// Packets were taken in; frames may be ready at the next tick.
    Received,
    /// The caller pressed a key (RFC 4733).
    Dtmf(char),
    /// The remote side went away (transport closed): the caller hung up.
    Closed,
}

/// The call's media: caller frames in, agent frames out, paced by the driver's 20 ms clock.
///
/// The RTP endpoint implements this over UDP (or an in-memory packet transport in tests).
pub trait MediaPort: Send + 'static {
    /// Waits for input from the network and takes it in (jitter buffer insert).
    ///
    /// Each datagram's arrival time is read from the clock when it arrives, as time since
    /// `epoch` (the origin of the `now` values the other methods get), so jitter statistics
    /// and the jitter buffer's delay estimate see real arrival times, not the time the wait began.
    fn recv(&mut self, epoch: Instant) -> impl Future<Output = io::Result<MediaInput>> + Send + '_;
    /// Takes in what has already arrived, without waiting: the driver calls it at every tick,
    /// before [`MediaPort::caller_frame`], so a port whose transport wakes nobody when a
    /// datagram arrives (see [`crate::media::PolledUdpSocket`]) is read on the media clock,
    /// and one that does gets any datagram whose wake-up has not run yet. Arrival times are
    /// stamped as in `recv`. Returns the first input that needs the call (a key press, the
    /// remote gone) and `None` once nothing is waiting; the default takes nothing.
    fn poll_received(&mut self, epoch: Instant) -> io::Result<Option<MediaInput>> {
        let _ = epoch;
        Ok(None)
    }
    /// The caller's frame for this 20 ms tick at `caller_rate()`, if the stream has one
    /// (decoded, concealed or recovered); `false` during silence or before the stream starts.
    fn caller_frame(&mut self, now: Duration, out: &mut AudioFrame) -> bool;
    /// After [`MediaPort::caller_frame`]: how long a packet at the edge of the stream's
    /// measured transit spread would have waited for this tick, or `None` when it played
    /// none. The driver moves
    /// its media clock earlier by the slack that stays (see [`PhaseAligner`]); the default
    /// reports none.
    fn playout_slack(&self) -> Option<Duration> {
        None
    }
    /// Sends the agent's frame for one 20 ms slot (`None` = the agent is silent).
    ///
    /// Called once per slot, in order. A slot with agent audio is sent at its tick; a silent
    /// slot stays open until the next tick, and when agent audio arrives before then (the
    /// start of a reply) it is sent at once, in that slot. So silence is reported up to 20 ms
    /// after its tick, and the first frame of a reply can come between two ticks.
    fn send_agent_frame(&mut self, now: Duration, frame: Option<&AudioFrame>) -> io::Result<()>;
    /// Rate of the frames `caller_frame` produces (8 or 16 kHz, for VAD and STT).
    fn caller_rate(&self) -> SampleRate;
    /// The rate the port sends the agent's audio at (its encoder's): TTS is asked for it
    /// ([`TtsParams::preferred_rate`]) so the agent's frames need no resampling when the
    /// provider has that rate. The default, 24 kHz, suits wideband outputs.
    fn agent_rate(&self) -> SampleRate {
        SampleRate::Hz24000
    }
    /// The machine is behind (see [`crate::load_shedding`]): encode more cheaply while `shed`
    /// holds. Called when the state changes, from the call task; must not block or allocate.
    /// The default ignores it.
    fn set_load_shedding(&mut self, shed: bool) {
        let _ = shed;
    }
    /// Starts or stops catching up: while on, [`MediaPort::caller_frame_ahead`] may hand out
    /// caller frames whose packets have already arrived, ahead of the media clock (the driver
    /// does so in the caller's pauses, so the end of a turn is heard as soon as it is here).
    /// Called when the state changes; must not block or allocate. The default ignores it.
    fn set_catch_up(&mut self, on: bool) {
        let _ = on;
    }
    /// How long the caller frame handed out last had been here before it was (its wait in a
    /// jitter buffer): the driver stamps the frame's VAD decision with `now` less this when it
    /// catches up, so the end of a turn is timed from its arrival. The default: zero.
    fn caller_frame_wait(&self) -> Duration {
        Duration::ZERO
    }
    /// While catching up, one more caller frame whose packet is already here, decoded ahead of
    /// the clock; `false` when there is none. The default has none.
    fn caller_frame_ahead(&mut self, now: Duration, out: &mut AudioFrame) -> bool {
        let _ = (now, out);
        false
    }
}

/// The providers a call uses; the pipeline picks STT+LLM+TTS or the realtime model.
#[derive(Clone, Default)]
pub struct ProviderSet {
    /// Speech-to-text.
    pub stt: Option<Arc<dyn SttProvider>>,
    /// Language model.
    pub llm: Option<Arc<dyn LlmProvider>>,
    /// Text-to-speech.
    pub tts: Option<Arc<dyn TtsProvider>>,
    /// Speech-to-speech model.
    pub realtime: Option<Arc<dyn RealtimeProvider>>,
}

/// Receives what was actually heard on each side, frame by frame (for the stereo recording).
///
/// Called inline on the call task once per 20 ms tick, so an implementation must not block.
/// Before the call is answered and before recording consent is given, both sides are `None`
/// (the recording holds silence there, and nothing the caller says is kept).
pub trait RecordingSink: Send + 'static {
    /// One 20 ms tick: the caller's frame (if any) and the agent's frame (if any).
    fn on_frames(&mut self, caller: Option<&AudioFrame>, agent: Option<&AudioFrame>);

    /// The call has ended and no more frames will come: complete the recording.
    fn finish(&mut self) {}
}

/// Driver-level options.
#[derive(Clone, Debug)]
pub struct DriverOptions {
    /// VAD settings.
    pub vad: VadConfig,
    /// Caller frames buffered toward STT (or the realtime model); when the ring is full, new
    /// frames are dropped and counted. The default, 50 frames (1 s), covers a provider task that
    /// is briefly not scheduled; adapters that replay audio after a reconnect keep their own
    /// buffer. Every slot holds a full-size frame (about 2 KB), so the ring is most of a call's
    /// fixed memory.
    pub stt_ring_frames: usize,
    /// Answer at once instead of waiting for `CallHandle::answer`.
    pub auto_answer: bool,
    /// Answer only to turn the caller away (the host's assistant-request was rejected):
    /// speak this message, then hang up with `EndReason::Rejected`.
    pub reject_with: Option<String>,
    /// Limit on platform control commands ([`CallControl::control`]); `None` accepts any number.
    /// Runs on the call's clock, so it follows tokio's paused time in tests.
    pub control_rate_limit: Option<RateLimiter>,
    /// Move the media clock's phase towards the caller's packet arrivals ([`PhaseAligner`]),
    /// so packets do not wait most of a frame for their tick. Default on.
    pub align_media_phase: bool,
    /// Snap the media clock's ticks to a grid shared by all calls in the process, so one
    /// wake-up of a worker serves the calls whose ticks fall on the same point instead of one
    /// or two (see [`TickGrid`]); a tick moves by at most half a step. Default
    /// [`TickSnap::Auto`]: one 4 ms grid while few calls share each core, two interleaved
    /// ones with more, each call's own phase with many ([`crate::tick_grid::AutoTier`]).
    pub tick_snap: TickSnap,
    /// What wakes the media clock: one timer per runtime shared by every call (the default),
    /// or a tokio `Interval` per call (see [`crate::media_clock`]).
    pub media_clock: ClockSource,
    /// Shed load together with the other calls holding the same [`LoadShedder`]: a tick that
    /// leaves late engages it, and while it holds the call's port encodes more cheaply. Every
    /// tick reports its work to it, which gives the calls' busy share
    /// ([`LoadShedder::busy_share`]).
    /// Default `None`: the encoder keeps its settings whatever the load.
    pub load_shedding: Option<Arc<LoadShedder>>,
    /// Hear the end of the caller's turn as soon as it has arrived: while the caller pauses in
    /// their own turn (the VAD's last frame unvoiced after the caller spoke, and no agent speech
    /// queued since), each tick also takes one caller frame whose packet is already here, ahead
    /// of the media clock ([`MediaPort::caller_frame_ahead`]), through VAD to the call and to
    /// STT, so the jitter buffer's delay is drained out of the turn's latency. The buffer stays
    /// drained through the rest of the caller's turn (it waits for late packets instead of
    /// lengthening, see [`voxline_codecs::jitter::JitterBuffer::set_catch_up`]) and, once agent
    /// speech is queued, takes back the delay it had before in one step of the caller's
    /// silence. The caller's VAD decisions are then timed from each frame's arrival
    /// ([`MediaPort::caller_frame_wait`]), so the endpointing wait counts from when the caller's
    /// last word reached the engine. Frames taken ahead are not recorded (they are the caller's
    /// pause; the recording keeps the clock's timeline). Default on: without network jitter it
    /// has nothing to drain; with it, the answer comes the buffer's delay sooner.
    pub catch_up_in_pauses: bool,
}

impl Default for DriverOptions {
    fn default() -> Self {
        DriverOptions {
            vad: VadConfig::default(),
            stt_ring_frames: 50,
            auto_answer: true,
            reject_with: None,
            control_rate_limit: Some(RateLimiter::default()),
            align_media_phase: true,
            tick_snap: TickSnap::Auto,
            media_clock: ClockSource::default(),
            load_shedding: None,
            catch_up_in_pauses: true,
        }
    }
}

/// Messages from the host to a running call.
#[derive(Debug)]
enum HostMsg {
    Answer,
    Command(CallCommand, oneshot::Sender<Result<(), CommandError>>),
    Control(
        CallCommand,
        oneshot::Sender<Result<(), ControlRequestError>>,
    ),
    ToolResult(String, serde_json::Value),
    HangUp,
}

/// What reaches a running call's task besides media: the host's requests and the providers'
/// output, in one channel so that the task polls one inbox per wake-up, not two.
enum Inbox {
    Host(HostMsg),
    Provider(ProviderMsg),
}

/// Control of a running call: commands, tool results, hang-up.
#[derive(Clone)]
pub struct CallControl {
    tx: mpsc::UnboundedSender<Inbox>,
}

impl std::fmt::Debug for CallControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallControl")
            .field("call_ended", &self.tx.is_closed())
            .finish()
    }
}

/// Why a control request could not be delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// The call has already ended.
    #[error("the call has ended")]
    CallEnded,
    /// The call refused the command.
    #[error(transparent)]
    Command(#[from] CommandError),
}

/// Why a platform control command ([`CallControl::control`]) was refused.
///
/// Every variant maps to a failed [`CallControlResponse`]; a refused command leaves the call as it
/// was.
#[derive(Debug, thiserror::Error)]
pub enum ControlRequestError {
    /// The body is not a platform command: malformed JSON, unknown `type`, a missing, invalid or
    /// unknown field. The message names the command and field.
    #[error(transparent)]
    Invalid(#[from] crate::platform::ControlError),
    /// The call's command budget is used up; retry after `retry_after`.
    #[error(transparent)]
    RateLimited(#[from] RateLimited),
    /// The call is not in progress (still ringing, or ending).
    #[error("call is not active (status {}); commands are accepted only while it is in progress", .0.as_str())]
    NotActive(CallStatus),
    /// The call has ended; there is nothing left to control.
    #[error(
        "call is not active: it has ended; commands are accepted only while it is in progress"
    )]
    CallEnded,
    /// The call could not act on an otherwise well-formed command (e.g. a destination it cannot
    /// dial).
    #[error("the call refused the command: {0}")]
    Refused(String),
}

impl ControlRequestError {
    /// The platform reply for this refusal: `{"success": false, "message": "<reason>"}`.
    pub fn response(&self) -> CallControlResponse {
        CallControlResponse::failed(self.to_string())
    }

    /// The HTTP status a control endpoint answers with: 429 when rate limited, else 400 (the
    /// platform's status for an invalid command or a call that is not active).
    pub fn http_status(&self) -> u16 {
        match self {
            Self::RateLimited(_) => 429,
            _ => 400,
        }
    }

    /// How long to wait before retrying, when rate limited.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited(limited) => Some(limited.retry_after),
            _ => None,
        }
    }
}

impl From<CommandError> for ControlRequestError {
    fn from(error: CommandError) -> Self {
        match error {
            CommandError::NotActive(status) => Self::NotActive(status),
            CommandError::Invalid(reason) => Self::Refused(reason),
        }
    }
}

impl From<ControlCommand> for CallCommand {
    /// The core command for a platform command; both carry the same fields.
    fn from(command: ControlCommand) -> Self {
        match command {
            ControlCommand::InjectContext {
                content,
                trigger_response,
            } => CallCommand::InjectContext {
                content,
                trigger_response,
            },
            ControlCommand::Say { content, end_after } => CallCommand::Say { content, end_after },
            ControlCommand::EndCall { message } => CallCommand::EndCall { message },
            ControlCommand::Transfer {
                destination,
                message,
            } => CallCommand::Transfer {
                destination,
                message,
            },
        }
    }
}

impl CallControl {
    /// Answers a ringing call (when `auto_answer` is off).
    pub fn answer(&self) -> Result<(), ControlError> {
        self.tx
            .send(Inbox::Host(HostMsg::Answer))
            .map_err(|_| ControlError::CallEnded)
    }

    /// Sends a command and waits until the call accepted or refused it.
    pub async fn command(&self, command: CallCommand) -> Result<(), ControlError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Inbox::Host(HostMsg::Command(command, tx)))
            .map_err(|_| ControlError::CallEnded)?;
        rx.await
            .map_err(|_| ControlError::CallEnded)?
            .map_err(ControlError::from)
    }

    /// Sends a platform control command (`POST /calls/{id}/control`) and waits until the call
    /// took it: the platform's success reply, or why it was refused.
    ///
    /// Unlike [`CallControl::command`], this path counts against the call's control rate limit
    /// ([`DriverOptions::control_rate_limit`]). Commands are checked in this order: the call must
    /// be in progress, then within its budget, then the core must accept the command. Every
    /// command that passes the first check uses budget, even one the core then refuses.
    pub async fn control(
        &self,
        command: ControlCommand,
    ) -> Result<CallControlResponse, ControlRequestError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Inbox::Host(HostMsg::Control(command.into(), tx)))
            .map_err(|_| ControlRequestError::CallEnded)?;
        rx.await.map_err(|_| ControlRequestError::CallEnded)??;
        Ok(CallControlResponse::sent())
    }

    /// Parses a control request body (the platform's command JSON) and sends it as
    /// [`CallControl::control`] does. A body that does not parse never reaches the call and uses
    /// no budget.
    pub async fn control_json(
        &self,
        body: &[u8],
    ) -> Result<CallControlResponse, ControlRequestError> {
        let command = ControlCommand::from_slice(body)?;
        self.control(command).await
    }

    /// [`CallControl::control_json`] folded into the reply a control endpoint sends back:
    /// `{"success":true,…}` or `{"success":false,"message":"<reason>"}`.
    pub async fn control_response(&self, body: &[u8]) -> CallControlResponse {
        match self.control_json(body).await {
            Ok(response) => response,
            Err(error) => error.response(),
        }
    }

    /// Delivers the host's result for a tool call.
    pub fn tool_result(
        &self,
        id: impl Into<String>,
        result: serde_json::Value,
    ) -> Result<(), ControlError> {
        self.tx
            .send(Inbox::Host(HostMsg::ToolResult(id.into(), result)))
            .map_err(|_| ControlError::CallEnded)
    }

    /// The caller hung up (signalled by the host's signalling layer).
    pub fn hang_up(&self) -> Result<(), ControlError> {
        self.tx
            .send(Inbox::Host(HostMsg::HangUp))
            .map_err(|_| ControlError::CallEnded)
    }
}

/// The ordered event stream of a call. Unbounded: a slow reader never stalls the call
/// and never loses an event.
pub struct EventStream {
    rx: mpsc::UnboundedReceiver<EventRecord>,
}

impl EventStream {
    /// A stream fed by hand: e.g. to tee a call's events to several readers.
    pub fn channel() -> (mpsc::UnboundedSender<EventRecord>, EventStream) {
        let (tx, rx) = mpsc::unbounded_channel();
        (tx, EventStream { rx })
    }

    /// The next event, or `None` after the last one.
    pub async fn next(&mut self) -> Option<EventRecord> {
        self.rx.recv().await
    }

    /// The next event if one is waiting.
    pub fn try_next(&mut self) -> Option<EventRecord> {
        self.rx.try_recv().ok()
    }
}

/// Counters of the call's media path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct MediaCounters {
    /// Driver ticks (20 ms each).
    pub ticks: u64,
    /// Caller frames processed.
    pub caller_frames: u64,
    /// Of those, frames taken ahead of the media clock in the caller's pauses
    /// ([`DriverOptions::catch_up_in_pauses`]).
    pub caller_frames_ahead: u64,
    /// Agent frames sent (non-silent).
    pub agent_frames: u64,
    /// Caller frames dropped because the STT ring was full.
    pub stt_frames_dropped: u64,
    /// Ticks whose frame went out more than [`LATE_TICK`] after the tick was due (deadline misses).
    pub late_ticks: u64,
    /// How late each tick's frame went out, relative to when the tick was due.
    pub lateness: LatenessHistogram,
    /// Times the media clock moved towards the caller's packet arrivals ([`PhaseAligner`]).
    pub phase_shifts: u64,
    /// Times the media clock moved because the process's calls changed tier on the shared
    /// tick grid ([`crate::tick_grid::AutoTier`]).
    pub grid_moves: u64,
    /// When the first deadline misses were due, to line them up with what else the machine did.
    pub late_tick_times: LateTickTimes,
    /// Ticks during which the call shed load ([`DriverOptions::load_shedding`]).
    pub shed_ticks: u64,
    /// The longest a tick's own work took (from the task starting it to its frame leaving).
    #[serde(rename = "tick_work_max_us", serialize_with = "as_micros")]
    pub tick_work_max: Duration,
    /// The longest own work of a late tick: far below [`LATE_TICK`], the late ticks waited for
    /// their thread (other calls, or a thread not running) rather than running slow.
    #[serde(rename = "late_tick_work_max_us", serialize_with = "as_micros")]
    pub late_tick_work_max: Duration,
}

/// A duration as whole microseconds.
fn as_micros<S: serde::Serializer>(d: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(d.as_micros() as u64)
}

/// How many of a call's deadline misses [`LateTickTimes`] keeps the time of.
pub const LATE_TICK_TIMES: usize = 16;

/// When a call's first [`LATE_TICK_TIMES`] deadline misses were due, as time since the call's
/// media clock started: a host (or the load harness) can compare them with other records of the
/// machine, such as a probe thread's own late wake-ups, to tell a stall of the machine from
/// one of the engine. Fixed size, so recording never allocates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LateTickTimes {
    at: [Duration; LATE_TICK_TIMES],
    len: usize,
}

impl LateTickTimes {
    /// Notes a miss due `at` after the clock started; past [`LATE_TICK_TIMES`] misses, nothing.
    pub fn record(&mut self, at: Duration) {
        if let Some(slot) = self.at.get_mut(self.len) {
            *slot = at;
            self.len += 1;
        }
    }

    /// The recorded times, in the order the misses happened.
    pub fn as_slice(&self) -> &[Duration] {
        &self.at[..self.len]
    }
}

impl serde::Serialize for LateTickTimes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Seconds since the call's start, to the microsecond.
        serializer.collect_seq(self.as_slice().iter().map(Duration::as_secs_f64))
    }
}

/// A tick whose frame goes out later than this after its due time missed its deadline.
pub const LATE_TICK: Duration = Duration::from_millis(10);

/// Number of [`LatenessHistogram`] buckets: 0.1 ms wide below 20 ms, 1 ms wide to 100 ms,
/// 10 ms wide to 1 s; the last one holds everything from 1 s on.
pub const LATENESS_BUCKETS: usize = 371;

/// Bucket of a lateness in microseconds (see [`LATENESS_BUCKETS`]).
fn lateness_bucket(us: u64) -> usize {
    let i = match us {
        0..20_000 => us / 100,
        20_000..100_000 => 200 + (us - 20_000) / 1_000,
        100_000..1_000_000 => 280 + (us - 100_000) / 10_000,
        _ => 370,
    };
    i as usize
}

/// Upper edge (exclusive) of bucket `i` in microseconds; `None` for the last, open bucket.
fn lateness_bucket_end(i: usize) -> Option<u64> {
    let i = i as u64;
    match i {
        0..200 => Some((i + 1) * 100),
        200..280 => Some(20_000 + (i - 199) * 1_000),
        280..370 => Some(100_000 + (i - 279) * 10_000),
        _ => None,
    }
}

/// Fixed-bucket histogram of the pacing lateness of a call's ticks: for each 20 ms tick, the
/// time from when the tick was due to when its agent frame had been handed to the transport.
///
/// Recording is a comparison, a division and an increment into a fixed array: no allocation on
/// the media path. Buckets are 0.1 ms wide below 20 ms, 1 ms to 100 ms and 10 ms to 1 s;
/// quantiles resolve to the bucket's upper edge, the maximum is exact.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct LatenessHistogram {
    counts: [u32; LATENESS_BUCKETS],
    total: u64,
    max_us: u64,
}

impl Default for LatenessHistogram {
    fn default() -> Self {
        LatenessHistogram {
            counts: [0; LATENESS_BUCKETS],
            total: 0,
            max_us: 0,
        }
    }
}

impl std::fmt::Debug for LatenessHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatenessHistogram")
            .field("total", &self.total)
            .field("p50", &self.quantile(0.5))
            .field("p99", &self.quantile(0.99))
            .field("max", &self.max())
            .finish()
    }
}

impl serde::Serialize for LatenessHistogram {
    /// `{"total": n, "max_us": m, "buckets": [[upper_edge_us, count], …]}` with the non-empty
    /// buckets only; the open last bucket's edge is `null`.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let buckets: Vec<(Option<u64>, u32)> = self
            .counts
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(i, &c)| (lateness_bucket_end(i), c))
            .collect();
        let mut s = serializer.serialize_struct("LatenessHistogram", 3)?;
        s.serialize_field("total", &self.total)?;
        s.serialize_field("max_us", &self.max_us)?;
        s.serialize_field("buckets", &buckets)?;
        s.end()
    }
}

impl LatenessHistogram {
    /// Counts one tick that went out `late` after it was due.
    pub fn record(&mut self, late: Duration) {
        let us = u64::try_from(late.as_micros()).unwrap_or(u64::MAX);
        let bucket = lateness_bucket(us);
        self.counts[bucket] = self.counts[bucket].saturating_add(1);
        self.total += 1;
        self.max_us = self.max_us.max(us);
    }

    /// Adds another histogram's counts (e.g. to sum over calls).
    pub fn merge(&mut self, other: &LatenessHistogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a = a.saturating_add(*b);
        }
        self.total += other.total;
        self.max_us = self.max_us.max(other.max_us);
    }

    /// Ticks recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The latest tick seen (exact).
    pub fn max(&self) -> Duration {
        Duration::from_micros(self.max_us)
    }

    /// Ticks per bucket (see [`LatenessHistogram::bucket_end`] for the bucket edges).
    pub fn buckets(&self) -> &[u32; LATENESS_BUCKETS] {
        &self.counts
    }

    /// Upper edge (exclusive) of bucket `i`; `None` for the last bucket, which is open.
    pub fn bucket_end(i: usize) -> Option<Duration> {
        lateness_bucket_end(i).map(Duration::from_micros)
    }

    /// The lateness at or below which a fraction `q` (0–1) of the ticks went out: the upper edge
    /// of the bucket holding that rank, never above the exact maximum. Zero when empty.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.total == 0 {
            return Duration::ZERO;
        }
        let counts = self.counts.iter().map(|&c| u64::from(c));
        match quantile_bucket(counts, self.total, q).and_then(lateness_bucket_end) {
            Some(end) => Duration::from_micros(end.min(self.max_us)),
            None => self.max(),
        }
    }
}

/// The bucket holding the nearest-rank quantile `q` (0–1; NaN reads as 1) of `total` values
/// counted in `counts`, bucket by bucket; `None` when there are none (or fewer than `total`).
pub(crate) fn quantile_bucket(
    counts: impl IntoIterator<Item = u64>,
    total: u64,
    q: f64,
) -> Option<usize> {
    if total == 0 {
        return None;
    }
    let q = if q.is_nan() { 1.0 } else { q.clamp(0.0, 1.0) };
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0u64;
    counts.into_iter().position(|c| {
        seen += c;
        seen >= rank
    })
}

/// What is left when a call task ends.
#[derive(Clone, Debug)]
pub struct CallOutcome {
    /// Why the call ended.
    pub end_reason: EndReason,
    /// The final conversation history.
    pub history: Vec<crate::provider::ChatMessage>,
    /// Media counters.
    pub media: MediaCounters,
}

/// A call ready to run: spawn `run()` and keep the control and event handles.
pub struct CallTask<P: MediaPort> {
    call: Call,
    port: P,
    providers: ProviderSet,
    options: DriverOptions,
    inbox_tx: mpsc::UnboundedSender<Inbox>,
    inbox_rx: mpsc::UnboundedReceiver<Inbox>,
    events_tx: mpsc::UnboundedSender<EventRecord>,
    recording: Option<Box<dyn RecordingSink>>,
}

/// Builds a call task and its host-side handles.
pub fn new_call<P: MediaPort>(
    settings: CallSettings,
    providers: ProviderSet,
    port: P,
    options: DriverOptions,
) -> (CallTask<P>, CallControl, EventStream) {
    let (inbox_tx, inbox_rx) = mpsc::unbounded_channel();
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    (
        CallTask {
            call: Call::new(settings),
            port,
            providers,
            options,
            inbox_tx: inbox_tx.clone(),
            inbox_rx,
            events_tx,
            recording: None,
        },
        CallControl { tx: inbox_tx },
        EventStream { rx: events_rx },
    )
}

/// Provider output, tagged with the operation it belongs to.
enum ProviderMsg {
    Stt(SttEvent),
    SttEnded(Result<(), ProviderError>),
    Llm(OpId, LlmEvent),
    LlmEnded(OpId, Result<(), ProviderError>),
    Tts(OpId, TtsEvent),
    TtsEnded(OpId, Result<(), ProviderError>),
    Realtime(RealtimeEvent),
    RealtimeEnded(Result<(), ProviderError>),
}

/// What the recording gets for one 20 ms slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotRecord {
    /// Before the call is live or consent is given: silence on both sides.
    Nothing,
    /// The agent's side only (no caller frame this tick).
    Agent,
    /// Both sides.
    CallerAndAgent,
}

/// Hands one slot's frames to the recording sink, if there is one.
fn record_slot(
    recording: &mut Option<Box<dyn RecordingSink>>,
    slot: SlotRecord,
    caller: &AudioFrame,
    agent: Option<&AudioFrame>,
) {
    let Some(rec) = recording.as_mut() else {
        return;
    };
    match slot {
        SlotRecord::Nothing => rec.on_frames(None, None),
        SlotRecord::Agent => rec.on_frames(None, agent),
        SlotRecord::CallerAndAgent => rec.on_frames(Some(caller), agent),
    }
}

/// Packets a [`PhaseAligner`] looks at before it moves the media clock.
pub const PHASE_WINDOW: u32 = 50;

/// Margin the media clock keeps after the quickest packet of a window, at the least.
pub const PHASE_GUARD: Duration = Duration::from_millis(6);

/// The most margin a [`PhaseAligner`] grows to after packets missed their ticks.
pub const PHASE_GUARD_MAX: Duration = Duration::from_millis(14);

/// What a window with a missed tick adds to the margin.
pub const PHASE_GUARD_STEP: Duration = Duration::from_millis(4);

/// Windows without a missed tick before the margin shrinks by a millisecond.
pub const PHASE_GUARD_CALM_WINDOWS: u32 = 10;

/// A gap of at most this many ticks between two played packets is a packet that came too
/// late for its tick (or was lost), not a pause in the stream.
pub const PHASE_LATE_GAP: u32 = 2;

/// Smaller moves than this are not worth a shortened tick.
pub const PHASE_MIN_SHIFT: Duration = Duration::from_millis(2);

/// Moves the call's 20 ms media clock towards the caller's packet arrivals.
///
/// The clock starts at an arbitrary phase against the peer's packets, so each packet waits
/// between 0 and 20 ms for the tick that plays it: on average 10 ms, up to a frame, added to
/// every turn's latency and to every barge-in. Over each window of [`PHASE_WINDOW`] played
/// packets the aligner takes the shortest slack (what a packet at the edge of the measured
/// transit spread would have waited), and when more than the guard + [`PHASE_MIN_SHIFT`] of
/// it could go, the driver makes one tick that much shorter. Packets within the spread still
/// arrive before their tick; later ones are the jitter buffer's job, and a drifting peer
/// clock just moves the phase again. Under load (a large spread) the slack is small and the
/// clock stays where it is.
///
/// The guard adapts: it starts at [`PHASE_GUARD`]; a window in which a packet missed its tick
/// (a tick without a packet between played ones) moves nothing and adds
/// [`PHASE_GUARD_STEP`] (up to [`PHASE_GUARD_MAX`]), so a peer or host with bursts of
/// lateness gets a clock that waits for them instead of one that keeps moving into them and
/// costing a whole frame each time; [`PHASE_GUARD_CALM_WINDOWS`] windows without a miss take
/// a millisecond back off. The agent's packets go out at the same moved ticks (one of them
/// early).
#[derive(Debug)]
pub struct PhaseAligner {
    shortest: Option<Duration>,
    seen: u32,
    guard: Duration,
    /// Ticks without a packet since the last played one.
    gap: u32,
    /// Packets are flowing: the last tick with a packet was at most [`PHASE_LATE_GAP`] ago.
    flowing: bool,
    /// A packet of this window missed its tick.
    missed: bool,
    calm_windows: u32,
}

impl Default for PhaseAligner {
    fn default() -> Self {
        PhaseAligner {
            shortest: None,
            seen: 0,
            guard: PHASE_GUARD,
            gap: 0,
            flowing: false,
            missed: false,
            calm_windows: 0,
        }
    }
}

impl PhaseAligner {
    /// Takes the slack of one tick ([`MediaPort::playout_slack`], `None` when the tick played
    /// no packet); returns how much earlier the next tick should come, once per window at most.
    pub fn observe(&mut self, slack: Option<Duration>) -> Option<Duration> {
        let Some(slack) = slack else {
            self.gap = self.gap.saturating_add(1);
            if self.gap > PHASE_LATE_GAP {
                self.flowing = false;
            }
            return None;
        };
        if self.flowing && self.gap > 0 {
            self.missed = true;
        }
        self.flowing = true;
        self.gap = 0;
        self.shortest = Some(self.shortest.map_or(slack, |s| s.min(slack)));
        self.seen += 1;
        if self.seen < PHASE_WINDOW {
            return None;
        }
        self.seen = 0;
        let shortest = self.shortest.take()?;
        if std::mem::take(&mut self.missed) {
            self.guard = (self.guard + PHASE_GUARD_STEP).min(PHASE_GUARD_MAX);
            self.calm_windows = 0;
            return None;
        }
        self.calm_windows += 1;
        if self.calm_windows >= PHASE_GUARD_CALM_WINDOWS {
            self.calm_windows = 0;
            self.guard = self
                .guard
                .saturating_sub(Duration::from_millis(1))
                .max(PHASE_GUARD);
        }
        let shift = shortest.checked_sub(self.guard)?;
        let most = Duration::from_millis(FRAME_MS as u64 - 1);
        (shift >= PHASE_MIN_SHIFT).then(|| shift.min(most))
    }

    /// The margin the clock now keeps after the quickest packet of a window.
    pub fn guard(&self) -> Duration {
        self.guard
    }
}

/// One media tick: a 20 ms frame of audio each way.
const FRAME: Duration = Duration::from_millis(FRAME_MS as u64);

/// A caller frame and when it was heard (call time).
struct HeardFrame<'a> {
    at: Duration,
    frame: &'a AudioFrame,
}

/// One caller frame through the VAD to the call (`voiced` keeps the VAD's last
/// classification) and on to STT (`stt`, when something listens) while the call forwards the
/// caller's audio.
fn hear_caller(
    call: &mut Call,
    vad: Option<&mut VoiceDetector>,
    heard: HeardFrame<'_>,
    stt: Option<&SpeechRingProducer>,
    voiced: &mut Option<bool>,
    counters: &mut MediaCounters,
) {
    counters.caller_frames += 1;
    if let Some(vad) = vad {
        let outcome = vad.process(heard.at, heard.frame);
        *voiced = outcome.voiced.or(*voiced);
        call.on_caller_vad(heard.at, outcome);
    }
    if let (true, Some(stt)) = (call.forwards_caller_audio(), stt) {
        if stt.push(*heard.frame) {
            call.count_forwarded_audio(FRAME);
        } else {
            counters.stt_frames_dropped += 1;
        }
    }
}

/// When the tick after `due` comes, `after` later or at the grid point nearest to that; never
/// within a millisecond of `due`.
fn next_tick(due: Instant, after: Duration, grid: Option<TickGrid>) -> Instant {
    let wanted = due + after;
    let Some(grid) = grid else {
        return wanted;
    };
    let snapped = grid.nearest(wanted);
    if snapped < due + Duration::from_millis(1) {
        grid.at_or_after(due + Duration::from_millis(1))
    } else {
        snapped
    }
}

/// Hands what the media port reported to the core; a closed or failed transport is not read
/// again.
fn on_media_input(
    call: &mut Call,
    now: Duration,
    input: io::Result<MediaInput>,
    transport_open: &mut bool,
) {
    match input {
        Ok(MediaInput::Received) => {}
        Ok(MediaInput::Dtmf(d)) => call.on_dtmf(now, d),
        Ok(MediaInput::Closed) => {
            *transport_open = false;
            call.caller_hung_up(now);
        }
        Err(e) => {
            *transport_open = false;
            call.fail(now, format!("media receive failed: {e}"));
        }
    }
}

/// Spawns `session` with its typed event channel forwarded into the driver's channel.
fn spawn_forwarding<E: Send + 'static>(
    session: impl Future<Output = Result<(), ProviderError>> + Send + 'static,
    mut events: mpsc::UnboundedReceiver<E>,
    out: mpsc::UnboundedSender<Inbox>,
    wrap: impl Fn(E) -> ProviderMsg + Send + 'static,
    ended: impl FnOnce(Result<(), ProviderError>) -> ProviderMsg + Send + 'static,
) -> AbortHandle {
    tokio::spawn(async move {
        let forward = {
            let out = out.clone();
            async move {
                while let Some(e) = events.recv().await {
                    if out.send(Inbox::Provider(wrap(e))).is_err() {
                        break;
                    }
                }
            }
        };
        let (result, ()) = tokio::join!(session, forward);
        let _ = out.send(Inbox::Provider(ended(result)));
    })
    .abort_handle()
}

impl<P: MediaPort> CallTask<P> {
    /// Adds a sink that receives both sides of the call, as heard.
    pub fn with_recording(mut self, sink: Box<dyn RecordingSink>) -> Self {
        self.recording = Some(sink);
        self
    }

    /// Runs the call to its end.
    pub async fn run(self) -> CallOutcome {
        self.run_with_port().await.0
    }

    /// Runs the call to its end and hands the media port back with the outcome, so the host
    /// can read its statistics (RTP counters, loss, concealment) or reuse its transport.
    pub async fn run_with_port(self) -> (CallOutcome, P) {
        let CallTask {
            mut call,
            mut port,
            providers,
            options,
            inbox_tx: ptx,
            mut inbox_rx,
            events_tx,
            mut recording,
        } = self;
        let start = Instant::now();
        let elapsed = move || Instant::now().saturating_duration_since(start);
        let mut seq = 0u64;
        let mut counters = MediaCounters::default();
        let caller_rate = port.caller_rate();
        let mut vad = VoiceDetector::new(caller_rate, options.vad).ok();
        let mut caller_frame = AudioFrame::silent(caller_rate);
        // A caller frame taken ahead of the clock in a pause (see `catch_up_in_pauses`).
        let mut ahead_frame = AudioFrame::silent(caller_rate);
        let agent_rate = port.agent_rate();
        let mut agent_frame = AudioFrame::silent(agent_rate);
        // The outbound slot of the last tick, while it is silent and still open (see below), and
        // the caller frame it holds for the recording.
        let mut open_slot: Option<SlotRecord> = None;
        let mut held_caller = AudioFrame::silent(caller_rate);
        let realtime = call.settings().realtime;

        // Caller audio goes to STT (pipeline) or to the realtime model, started while ringing (pre-warm).
        let (audio_tx, audio_rx) = speech_ring(options.stt_ring_frames);
        let mut stt_control: Option<mpsc::UnboundedSender<SttControl>> = None;
        let mut rt_control: Option<mpsc::UnboundedSender<RealtimeControl>> = None;
        let mut session_aborts: Vec<AbortHandle> = Vec::new();
        if realtime {
            if let Some(rt) = providers.realtime.clone() {
                let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
                let (ev_tx, ev_rx) = mpsc::unbounded_channel();
                let params = RealtimeParams {
                    input_rate: caller_rate,
                    instructions: call.settings().system_prompt.clone(),
                    tools: call.settings().tool_specs(),
                    history: Vec::new(),
                };
                let io = RealtimeIo {
                    audio: audio_rx,
                    control: ctl_rx,
                    events: ev_tx,
                };
                session_aborts.push(spawn_forwarding(
                    rt.run(params, io),
                    ev_rx,
                    ptx.clone(),
                    ProviderMsg::Realtime,
                    ProviderMsg::RealtimeEnded,
                ));
                rt_control = Some(ctl_tx);
            }
        } else if let Some(stt) = providers.stt.clone() {
            let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
            let (ev_tx, ev_rx) = mpsc::unbounded_channel();
            let io = SttIo {
                audio: audio_rx,
                control: ctl_rx,
                events: ev_tx,
            };
            session_aborts.push(spawn_forwarding(
                stt.run(
                    SttSessionParams {
                        sample_rate: caller_rate,
                    },
                    io,
                ),
                ev_rx,
                ptx.clone(),
                ProviderMsg::Stt,
                ProviderMsg::SttEnded,
            ));
            stt_control = Some(ctl_tx);
        }

        // Caller audio counts as used only when a session takes it.
        let has_listener = stt_control.is_some() || rt_control.is_some();
        let mut llm_tasks: HashMap<OpId, AbortHandle> = HashMap::new();
        let mut tts_tasks: HashMap<OpId, (AbortHandle, Option<mpsc::UnboundedSender<TtsInput>>)> =
            HashMap::new();
        let mut seat = GridSeat::take(options.tick_snap);
        let now = Instant::now();
        let first_tick = seat.grid().map_or(now, |grid| grid.at_or_after(now));
        let mut ticker = MediaClock::new(options.media_clock, first_tick, FRAME);
        let mut answered = false;
        let answer = |call: &mut Call, now: Duration| match &options.reject_with {
            Some(message) => call.start_rejected(now, message),
            None => call.start(now),
        };
        if options.auto_answer {
            answer(&mut call, elapsed());
            answered = true;
        }
        let mut end_reason = None;
        let mut transport_open = true;
        let mut control_limit = options.control_rate_limit.clone();
        let mut phase = PhaseAligner::default();
        let mut shedding = false;
        // The VAD's last classification of a caller frame, whether the caller has spoken since
        // agent speech was last queued (their turn is open), and whether the port catches up.
        let mut caller_voiced: Option<bool> = None;
        let mut caller_turn_open = false;
        let mut catching_up = false;

        loop {
            tokio::select! {
                biased;
                due = ticker.tick() => {
                    let began = Instant::now();
                    // Whatever arrived since the last tick goes into the jitter buffer first.
                    while transport_open {
                        match port.poll_received(start) {
                            Ok(None) => break,
                            Ok(Some(input)) => {
                                on_media_input(&mut call, elapsed(), Ok(input), &mut transport_open)
                            }
                            Err(e) => {
                                on_media_input(&mut call, elapsed(), Err(e), &mut transport_open)
                            }
                        }
                    }
                    let now = elapsed();
                    // The last slot stayed silent to its end: its silence goes out now.
                    if let Some(slot) = open_slot.take() {
                        record_slot(&mut recording, slot, &held_caller, None);
                        if let Err(e) = port.send_agent_frame(now, None) {
                            call.fail(now, format!("media send failed: {e}"));
                        }
                    }
                    counters.ticks += 1;
                    // Inbound: one caller frame per tick through VAD to the core and to STT.
                    let have_caller = port.caller_frame(now, &mut caller_frame);
                    // The process grew or shrank past a tier of the grid: this clock follows.
                    if let Some(grid) = seat.update() {
                        let next = next_tick(due, FRAME, Some(grid));
                        if next != due + FRAME {
                            counters.grid_moves += 1;
                            ticker.reset_at(next);
                        }
                    }
                    // Catching up, ticks without a packet are the buffer drained, not packets
                    // missing their tick: only the ticks that played one count meanwhile.
                    let slack = port.playout_slack();
                    if options.align_media_phase && (!catching_up || slack.is_some()) {
                        if let Some(shift) = phase.observe(slack) {
                            counters.phase_shifts += 1;
                            ticker.reset_at(next_tick(due, FRAME - shift, seat.grid()));
                        }
                    }
                    // Catching up, a frame's VAD decision is timed from its arrival: the end of
                    // a turn is measured from when it reached the engine, not from its playout.
                    let heard_at = |port: &P| match options.catch_up_in_pauses {
                        true => now.saturating_sub(port.caller_frame_wait()),
                        false => now,
                    };
                    let stt = has_listener.then_some(&audio_tx);
                    if have_caller {
                        let heard = HeardFrame {
                            at: heard_at(&port),
                            frame: &caller_frame,
                        };
                        let vad = vad.as_mut();
                        hear_caller(&mut call, vad, heard, stt, &mut caller_voiced, &mut counters);
                    }
                    // In the caller's pause, with no agent speech queued, what has already
                    // arrived is heard now: one more frame a tick, ahead of the clock. The
                    // buffer stays drained (no lengthening) until the agent answers, so a
                    // pause inside the caller's turn does not cost its rest the delay again.
                    if let (true, Some(vad)) = (options.catch_up_in_pauses, vad.as_mut()) {
                        // Only the caller's own pauses: a gap between the agent's sentences
                        // is not the end of a caller's turn.
                        let agent = call.agent_speaking();
                        caller_turn_open =
                            !agent && (caller_turn_open || caller_voiced == Some(true));
                        let pausing = caller_turn_open && caller_voiced == Some(false);
                        let drain = !agent && (catching_up || pausing);
                        if drain != catching_up {
                            catching_up = drain;
                            port.set_catch_up(drain);
                        }
                        if pausing && port.caller_frame_ahead(now, &mut ahead_frame) {
                            counters.caller_frames_ahead += 1;
                            let heard = HeardFrame {
                                at: heard_at(&port),
                                frame: &ahead_frame,
                            };
                            let (voiced, counters) = (&mut caller_voiced, &mut counters);
                            hear_caller(&mut call, Some(vad), heard, stt, voiced, counters);
                        }
                    }
                    call.tick(now);
                    if let Some(shedder) = options.load_shedding.as_deref() {
                        let shed = shedder.is_shedding(began);
                        if shed != shedding {
                            shedding = shed;
                            port.set_load_shedding(shed);
                        }
                        counters.shed_ticks += u64::from(shed);
                    }
                    // Nothing is recorded before the call is live and consent is given.
                    let slot = match (call.forwards_caller_audio(), have_caller) {
                        (false, _) => SlotRecord::Nothing,
                        (true, false) => SlotRecord::Agent,
                        (true, true) => SlotRecord::CallerAndAgent,
                    };
                    // Outbound: the agent's frame for this tick.
                    if call.pull_agent_frame(now, &mut agent_frame).is_some() {
                        counters.agent_frames += 1;
                        record_slot(&mut recording, slot, &caller_frame, Some(&agent_frame));
                        if let Err(e) = port.send_agent_frame(now, Some(&agent_frame)) {
                            call.fail(now, format!("media send failed: {e}"));
                        }
                    } else {
                        // Leave the slot open until the next tick: agent audio that arrives
                        // meanwhile goes out at once instead of waiting for the clock.
                        if recording.is_some() && slot == SlotRecord::CallerAndAgent {
                            held_caller = caller_frame;
                        }
                        open_slot = Some(slot);
                    }
                    // Pacing: how late this tick's frame left, against the tick's schedule.
                    let done = Instant::now();
                    let late = done.saturating_duration_since(due);
                    let work = done.saturating_duration_since(began);
                    counters.lateness.record(late);
                    if let Some(shedder) = options.load_shedding.as_deref() {
                        shedder.observe(done, late, work);
                    }
                    counters.tick_work_max = counters.tick_work_max.max(work);
                    if late > LATE_TICK {
                        counters.late_tick_work_max = counters.late_tick_work_max.max(work);
                        counters.late_ticks += 1;
                        counters
                            .late_tick_times
                            .record(due.saturating_duration_since(start));
                    }
                }
                input = port.recv(start), if transport_open => {
                    on_media_input(&mut call, elapsed(), input, &mut transport_open);
                }
                Some(msg) = inbox_rx.recv() => {
                    let now = elapsed();
                    match msg {
                        Inbox::Provider(msg) => match msg {
                        ProviderMsg::Stt(e) => call.on_stt(now, e),
                        ProviderMsg::SttEnded(r) => {
                            if let Err(e) = r {
                                call.on_stt(now, SttEvent::Failed(e));
                            }
                        }
                        ProviderMsg::Llm(op, e) => call.on_llm(now, op, e),
                        ProviderMsg::LlmEnded(op, r) => {
                            llm_tasks.remove(&op);
                            if let Err(e) = r {
                                call.on_llm_error(now, op, e);
                            }
                        }
                        ProviderMsg::Tts(op, e) => call.on_tts(now, op, e),
                        ProviderMsg::TtsEnded(op, r) => {
                            tts_tasks.remove(&op);
                            match r {
                                Err(e) => call.on_tts_error(now, op, e),
                                // A session that ends without `Done` still ends its audio.
                                Ok(()) => call.on_tts(now, op, TtsEvent::Done),
                            }
                        }
                        ProviderMsg::Realtime(e) => call.on_realtime(now, e),
                        ProviderMsg::RealtimeEnded(r) => {
                            if let Err(e) = r {
                                call.on_realtime(now, RealtimeEvent::Failed(e));
                            }
                        }
                        },
                        Inbox::Host(msg) => match msg {
                        HostMsg::Answer => {
                            if !answered {
                                answered = true;
                                answer(&mut call, now);
                            }
                        }
                        HostMsg::Command(c, reply) => {
                            let _ = reply.send(call.on_command(now, c));
                        }
                        HostMsg::Control(c, reply) => {
                            let result = if call.status() != CallStatus::InProgress {
                                Err(ControlRequestError::NotActive(call.status()))
                            } else if let Err(limited) =
                                control_limit.as_mut().map_or(Ok(()), |l| l.try_acquire(now))
                            {
                                Err(ControlRequestError::RateLimited(limited))
                            } else {
                                call.on_command(now, c).map_err(ControlRequestError::from)
                            };
                            let _ = reply.send(result);
                        }
                        HostMsg::ToolResult(id, v) => {
                            call.on_tool_result(now, &id, v);
                        }
                        HostMsg::HangUp => call.caller_hung_up(now),
                        },
                    }
                }
            }

            // Agent audio arrived within a silent slot (the first audio of a reply): it starts
            // now, in that slot, rather than up to 20 ms later at the next tick. The clock keeps
            // its phase, so the caller side and the RTP timing are unchanged.
            if let Some(slot) = open_slot {
                if call.agent_audio_ready() {
                    let now = elapsed();
                    if call.pull_agent_frame(now, &mut agent_frame).is_some() {
                        open_slot = None;
                        counters.agent_frames += 1;
                        record_slot(&mut recording, slot, &held_caller, Some(&agent_frame));
                        if let Err(e) = port.send_agent_frame(now, Some(&agent_frame)) {
                            call.fail(now, format!("media send failed: {e}"));
                        }
                    }
                }
            }

            // Carry out what the core asked for.
            while let Some(action) = call.poll_action() {
                match action {
                    Action::Emit(event) => {
                        let record = EventRecord {
                            seq,
                            at_ms: elapsed().as_millis() as u64,
                            event,
                        };
                        seq += 1;
                        // A reader that went away does not stop the call.
                        let _ = events_tx.send(record);
                    }
                    Action::SttFinalize => {
                        if let Some(c) = &stt_control {
                            let _ = c.send(SttControl::Finalize);
                        }
                    }
                    Action::StartLlm { op, request } => {
                        if let Some(llm) = providers.llm.clone() {
                            let (tx, rx) = mpsc::unbounded_channel();
                            let h = spawn_forwarding(
                                llm.stream(request, tx),
                                rx,
                                ptx.clone(),
                                move |e| ProviderMsg::Llm(op, e),
                                move |r| ProviderMsg::LlmEnded(op, r),
                            );
                            llm_tasks.insert(op, h);
                        } else {
                            call.on_llm_error(
                                elapsed(),
                                op,
                                ProviderError::Config {
                                    provider: "llm".into(),
                                    detail: "no language model configured".into(),
                                },
                            );
                        }
                    }
                    Action::CancelLlm { op } => {
                        if let Some(h) = llm_tasks.remove(&op) {
                            h.abort();
                        }
                    }
                    Action::StartTts { op } => {
                        if let Some(tts) = providers.tts.clone() {
                            let (in_tx, in_rx) = mpsc::unbounded_channel();
                            let (tx, rx) = mpsc::unbounded_channel();
                            let params = TtsParams {
                                preferred_rate: agent_rate,
                            };
                            let h = spawn_forwarding(
                                tts.synthesize(params, in_rx, tx),
                                rx,
                                ptx.clone(),
                                move |e| ProviderMsg::Tts(op, e),
                                move |r| ProviderMsg::TtsEnded(op, r),
                            );
                            tts_tasks.insert(op, (h, Some(in_tx)));
                        } else {
                            call.on_tts_error(
                                elapsed(),
                                op,
                                ProviderError::Config {
                                    provider: "tts".into(),
                                    detail: "no text-to-speech configured".into(),
                                },
                            );
                        }
                    }
                    Action::TtsText { op, text } => {
                        if let Some((_, Some(tx))) = tts_tasks.get(&op) {
                            let _ = tx.send(TtsInput::Text(text));
                        }
                    }
                    Action::TtsEnd { op } => {
                        if let Some((_, input)) = tts_tasks.get_mut(&op) {
                            if let Some(tx) = input.take() {
                                let _ = tx.send(TtsInput::End);
                            }
                        }
                    }
                    Action::CancelTts { op } => {
                        if let Some((h, _)) = tts_tasks.remove(&op) {
                            h.abort();
                        }
                    }
                    Action::Realtime(c) => {
                        if let Some(tx) = &rt_control {
                            let _ = tx.send(c);
                        }
                    }
                    Action::Transfer { .. } => {}
                    Action::Hangup { reason } => end_reason = Some(reason),
                }
            }

            if let Some(reason) = end_reason.take() {
                // Stop media, close sessions politely, cancel what is in flight.
                if let Some(slot) = open_slot.take() {
                    record_slot(&mut recording, slot, &held_caller, None);
                    let _ = port.send_agent_frame(elapsed(), None);
                }
                let _ = port.send_agent_frame(elapsed(), None);
                if let Some(c) = &stt_control {
                    let _ = c.send(SttControl::Close);
                }
                if let Some(c) = &rt_control {
                    let _ = c.send(RealtimeControl::Close);
                }
                for (_, h) in llm_tasks.drain() {
                    h.abort();
                }
                for (_, (h, _)) in tts_tasks.drain() {
                    h.abort();
                }
                drop(audio_tx);
                // Give sessions a moment to deliver their last finals, then stop them.
                let grace = tokio::time::sleep(Duration::from_secs(2));
                tokio::pin!(grace);
                loop {
                    tokio::select! {
                        _ = &mut grace => break,
                        msg = inbox_rx.recv() => match msg {
                            Some(Inbox::Provider(ProviderMsg::SttEnded(_) | ProviderMsg::RealtimeEnded(_))) | None => break,
                            Some(_) => {}
                        },
                    }
                }
                for h in session_aborts {
                    h.abort();
                }
                if let Some(rec) = recording.as_mut() {
                    rec.finish();
                }
                let outcome = CallOutcome {
                    end_reason: reason,
                    history: call.history().to_vec(),
                    media: counters,
                };
                return (outcome, port);
            }
            if call.is_ended() && end_reason.is_none() && !transport_open && inbox_rx.is_empty() {
                // Ended without a hang-up action (cannot happen by construction); end safely.
                if let Some(slot) = open_slot.take() {
                    record_slot(&mut recording, slot, &held_caller, None);
                }
                if let Some(rec) = recording.as_mut() {
                    rec.finish();
                }
                let outcome = CallOutcome {
                    end_reason: EndReason::Error,
                    history: call.history().to_vec(),
                    media: counters,
                };
                return (outcome, port);
            }
        }
    }
}

#[allow(dead_code)]
fn assert_send<T: Send>(_: &T) {}

#[allow(dead_code)]
fn driver_future_is_send<P: MediaPort>(task: CallTask<P>) {
    let fut = task.run_with_port();
    assert_send(&fut);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Feeds one window of played packets with `slack`; returns the aligner's answers.
    fn window(a: &mut PhaseAligner, slack: Duration) -> Vec<Duration> {
        (0..PHASE_WINDOW)
            .filter_map(|_| a.observe(Some(slack)))
            .collect()
    }

    #[test]
    fn late_tick_times_keep_the_first_misses_and_serialize_as_seconds() {
        let mut times = LateTickTimes::default();
        assert!(times.as_slice().is_empty());
        for k in 0..(LATE_TICK_TIMES as u64 + 5) {
            times.record(ms(1000 + 20 * k));
        }
        assert_eq!(times.as_slice().len(), LATE_TICK_TIMES);
        assert_eq!(times.as_slice()[0], ms(1000));
        assert_eq!(times.as_slice()[LATE_TICK_TIMES - 1], ms(1300));
        let mut two = LateTickTimes::default();
        two.record(ms(1500));
        two.record(us(2_000_250));
        assert_eq!(serde_json::to_string(&two).unwrap(), "[1.5,2.00025]");
    }

    #[test]
    fn a_moved_tick_lands_on_the_grid_and_never_on_its_predecessor() {
        let grid = TickGrid::new(ms(4)).unwrap();
        let due = grid.at_or_after(Instant::now());
        // Without a grid the tick comes exactly when asked.
        assert_eq!(next_tick(due, us(13_300), None), due + us(13_300));
        // With one it comes at the nearest point: 13.3 ms -> 12, 14.5 -> 16.
        assert_eq!(next_tick(due, us(13_300), Some(grid)), due + ms(12));
        assert_eq!(next_tick(due, us(14_500), Some(grid)), due + ms(16));
        // A shift of almost a whole frame does not snap back onto `due` itself.
        assert_eq!(next_tick(due, us(1_500), Some(grid)), due + ms(4));
        assert_eq!(next_tick(due, ms(20), Some(grid)), due + ms(20));
    }

    #[test]
    fn the_aligner_moves_the_clock_by_the_slack_beyond_its_guard_once_a_window() {
        let mut a = PhaseAligner::default();
        assert_eq!(window(&mut a, ms(15)), vec![ms(9)]);
        // Within the guard and the smallest move: nothing.
        assert_eq!(window(&mut a, ms(7)), vec![]);
        // Never a whole frame.
        assert_eq!(window(&mut a, ms(40)), vec![ms(19)]);
        // The quickest packet of the window decides.
        let mut answers: Vec<_> = (0..PHASE_WINDOW - 1)
            .filter_map(|_| a.observe(Some(ms(15))))
            .collect();
        answers.extend(a.observe(Some(ms(10))));
        assert_eq!(answers, vec![ms(4)]);
    }

    #[test]
    fn a_missed_tick_holds_the_clock_and_widens_the_guard() {
        let mut a = PhaseAligner::default();
        assert_eq!(window(&mut a, ms(15)), vec![ms(9)]);
        // One packet came after its tick: a tick without a packet between played ones.
        for _ in 0..10 {
            a.observe(Some(ms(15)));
        }
        a.observe(None);
        let rest: Vec<_> = (0..PHASE_WINDOW - 10)
            .filter_map(|_| a.observe(Some(ms(15))))
            .collect();
        assert_eq!(rest, vec![], "no move in the window with the miss");
        assert_eq!(a.guard(), ms(10));
        assert_eq!(window(&mut a, ms(15)), vec![ms(5)]);
        // Misses in later windows widen it up to the cap.
        for _ in 0..5 {
            a.observe(Some(ms(15)));
            a.observe(None);
            a.observe(None);
            window(&mut a, ms(15));
        }
        assert_eq!(a.guard(), PHASE_GUARD_MAX);
    }

    #[test]
    fn the_guard_shrinks_back_after_calm_windows() {
        let mut a = PhaseAligner::default();
        a.observe(Some(ms(15)));
        a.observe(None);
        window(&mut a, ms(15));
        assert_eq!(a.guard(), ms(10));
        for _ in 0..PHASE_GUARD_CALM_WINDOWS {
            window(&mut a, ms(30));
        }
        assert_eq!(a.guard(), ms(9));
        for _ in 0..PHASE_GUARD_CALM_WINDOWS * 10 {
            window(&mut a, ms(30));
        }
        assert_eq!(a.guard(), PHASE_GUARD);
    }

    #[test]
    fn a_pause_in_the_stream_is_not_a_missed_tick() {
        let mut a = PhaseAligner::default();
        for _ in 0..10 {
            a.observe(Some(ms(15)));
        }
        // Silence suppression, DTX or the stream not started: several ticks without packets.
        for _ in 0..=PHASE_LATE_GAP {
            a.observe(None);
        }
        let answers: Vec<_> = (0..PHASE_WINDOW - 10)
            .filter_map(|_| a.observe(Some(ms(15))))
            .collect();
        assert_eq!(answers, vec![ms(9)]);
        assert_eq!(a.guard(), PHASE_GUARD);
        // Before any packet: no miss either.
        let mut b = PhaseAligner::default();
        b.observe(None);
        assert_eq!(window(&mut b, ms(15)), vec![ms(9)]);
    }

    #[test]
    fn lateness_quantiles_resolve_to_the_bucket_and_cap_at_the_max() {
        let mut h = LatenessHistogram::default();
        assert_eq!(h.quantile(0.99), Duration::ZERO);
        for _ in 0..98 {
            h.record(us(250));
        }
        h.record(us(4_200));
        h.record(us(12_345));
        assert_eq!(h.count(), 100);
        // 250 µs lands in [200, 300): reported as the bucket's upper edge.
        assert_eq!(h.quantile(0.5), us(300));
        assert_eq!(h.quantile(0.98), us(300));
        assert_eq!(h.quantile(0.99), us(4_300));
        assert_eq!(h.quantile(1.0), us(12_345));
        assert_eq!(h.max(), us(12_345));
    }

    #[test]
    fn lateness_buckets_widen_with_lateness() {
        assert_eq!(lateness_bucket(0), 0);
        assert_eq!(lateness_bucket(19_999), 199);
        assert_eq!(lateness_bucket_end(199), Some(20_000));
        assert_eq!(lateness_bucket(20_000), 200);
        assert_eq!(lateness_bucket_end(200), Some(21_000));
        assert_eq!(lateness_bucket(99_999), 279);
        assert_eq!(lateness_bucket_end(279), Some(100_000));
        assert_eq!(lateness_bucket(100_000), 280);
        assert_eq!(lateness_bucket_end(280), Some(110_000));
        assert_eq!(lateness_bucket(999_999), 369);
        assert_eq!(lateness_bucket_end(369), Some(1_000_000));
        assert_eq!(lateness_bucket(1_000_000), LATENESS_BUCKETS - 1);
        assert_eq!(lateness_bucket(u64::MAX), LATENESS_BUCKETS - 1);
        assert_eq!(lateness_bucket_end(LATENESS_BUCKETS - 1), None);
        // Every bucket starts where the one before it ends.
        for i in 1..LATENESS_BUCKETS {
            let start = lateness_bucket_end(i - 1).expect("closed bucket");
            assert_eq!(lateness_bucket(start), i);
            assert_eq!(lateness_bucket(start - 1), i - 1);
        }
    }

    #[test]
    fn lateness_overflow_bucket_and_merge() {
        let mut a = LatenessHistogram::default();
        a.record(Duration::from_secs(3));
        assert_eq!(a.buckets()[LATENESS_BUCKETS - 1], 1);
        assert_eq!(a.quantile(0.5), Duration::from_secs(3));
        let mut b = LatenessHistogram::default();
        b.record(us(50));
        b.record(us(42_500));
        b.merge(&a);
        assert_eq!(b.count(), 3);
        assert_eq!(b.buckets()[0], 1);
        assert_eq!(b.quantile(0.6), us(43_000));
        assert_eq!(b.max(), Duration::from_secs(3));
        let json = serde_json::to_value(b).expect("serializes");
        assert_eq!(json["total"], 3);
        assert_eq!(
            json["buckets"],
            serde_json::json!([[100, 1], [43_000, 1], [null, 1]])
        );
    }
}
