//! `RtpEndpoint`: a standalone tokio RTP endpoint for one call's audio, outside the call driver.
//!
//! A telephony application that wants decoded caller audio (and a way to send audio back)
//! without running the whole call engine binds an endpoint to a local UDP address and gets
//! two lock-free rings ([`crate::ring`]): decoded 20 ms caller frames out, 20 ms frames to
//! send in. One tokio task per endpoint owns the socket and an [`RtpPort`], i.e. the same
//! [`InboundMedia`](super::InboundMedia) (source check, jitter buffer, decode, PLC/FEC,
//! resample) and [`OutboundMedia`](super::OutboundMedia) (resample, encode, RTP numbering)
//! the call driver uses, and runs them on a monotonic 20 ms clock:
//!
//! - every datagram is taken in as it arrives, stamped with its arrival time;
//! - every tick (tokio interval, [`MissedTickBehavior::Burst`], late ticks counted) pulls
//!   one caller frame from the jitter buffer into the receive ring, pops one frame from the
//!   send ring (none: the agent is silent) and sends its packet, so sequence numbers stay
//!   continuous, timestamps keep advancing through silence, and a new talk-spurt carries
//!   the marker bit;
//! - media goes to the host-given remote, or to the source learned from the first valid
//!   packet (symmetric RTP); other sources and SSRCs are ignored and counted.
//!
//! Nothing on the steady-state path allocates: the receive buffer, codec state and
//! packet buffers are allocated when the endpoint starts, frames are fixed-size values
//! moved through preallocated rings, and the statistics snapshot is a plain `Copy` value.
//!
//! ```no_run
//! use voxline_engine::codecs::{PayloadFormat, PayloadRegistry, SampleRate};
//! use voxline_engine::media::{MediaConfig, RtpEndpoint};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // What the SDP negotiated: Opus on payload type 111 (PCMU 0 and PCMA 8 are built in).
//! let mut registry = PayloadRegistry::new();
//! registry.insert(111, PayloadFormat::Opus { pcm_rate: SampleRate::Hz48000 })?;
//! let config = MediaConfig::new(registry, 111); // remote: None = learn it (symmetric RTP)
//! let (endpoint, audio) = RtpEndpoint::bind("0.0.0.0:40000".parse()?, config).await?;
//! // Caller frames arrive at 16 kHz, one per 20 ms; echo them back as the agent's audio.
//! while let Some(frame) = audio.received.recv().await {
//!     audio.send.push(frame);
//!     if endpoint.stats().ticks > 500 {
//!         break;
//!     }
//! }
//! let stats = endpoint.close().await;
//! println!("{:?} lost, jitter {:?}", stats.receiver.map(|r| r.cumulative_lost),
//!     stats.receiver.map(|r| r.jitter));
//! # Ok(())
//! # }
//! ```

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use voxline_codecs::{AudioFrame, FrameOrigin, FRAME_MS};

use super::{InboundCounters, MediaConfig, MediaError, OutboundCounters, PacketTransport, RtpPort};
use crate::driver::{MediaInput, MediaPort};
use crate::ring::{ring, RingConsumer, RingProducer};

/// A tick that runs more than this behind its deadline is counted as late.
const LATE_TICK: Duration = Duration::from_millis(10);

/// Key presses buffered toward the host before new ones are dropped.
const DTMF_RING: usize = 32;

/// Errors starting an endpoint.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// The UDP socket could not be bound to the requested address.
    #[error("cannot bind the RTP socket to {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why binding failed.
        #[source]
        source: io::Error,
    },
    /// The bound socket could not report its address.
    #[error("cannot read the RTP socket's local address: {0}")]
    LocalAddr(#[source] io::Error),
    /// The media configuration cannot be set up (payload type, codec, jitter buffer).
    #[error(transparent)]
    Media(#[from] MediaError),
}

impl From<EndpointError> for io::Error {
    fn from(e: EndpointError) -> Self {
        match e {
            EndpointError::Bind { source, .. } | EndpointError::LocalAddr(source) => source,
            media @ EndpointError::Media(_) => io::Error::new(io::ErrorKind::InvalidInput, media),
        }
    }
}

/// Endpoint options beyond the negotiated media (ring sizes, reporting, silence fill).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointOptions {
    /// Decoded caller frames buffered toward the host; when the host falls behind, newer
    /// frames are dropped and counted. Default 100 (2 s).
    pub receive_ring_frames: usize,
    /// Frames to send buffered from the host; one leaves per 20 ms tick, pushes beyond this
    /// are dropped and counted. Default 250 (5 s).
    pub send_ring_frames: usize,
    /// How often the RFC 3550 loss fraction is computed (the receiver-report interval);
    /// one more report is made when the endpoint closes. Default 5 s.
    pub report_interval: Duration,
    /// Once the caller's stream has started, deliver one frame per tick even when the jitter
    /// buffer has nothing to play (talk-spurt gap, DTX, outage): a silent frame marked
    /// [`FrameOrigin::Generated`], so the receive ring is a continuous 20 ms timeline.
    /// Losses are never filled this way; they arrive as concealed frames. Default on.
    pub fill_silence: bool,
}

impl Default for EndpointOptions {
    fn default() -> Self {
        EndpointOptions {
            receive_ring_frames: 100,
            send_ring_frames: 250,
            report_interval: Duration::from_secs(5),
            fill_silence: true,
        }
    }
}

/// The host's side of an endpoint's audio.
pub struct EndpointAudio {
    /// Decoded caller frames at the configured caller rate, one per 20 ms tick while the
    /// stream plays (concealed and FEC-recovered frames are marked by their origin).
    pub received: RingConsumer<AudioFrame>,
    /// Frames to send, at any supported rate (resampled to the codec's rate); one is
    /// encoded and sent per 20 ms tick, and an empty ring means silence.
    pub send: RingProducer<AudioFrame>,
    /// Key presses received as RFC 4733 telephone-events.
    pub dtmf: RingConsumer<char>,
}

impl std::fmt::Debug for EndpointAudio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointAudio")
            .field("received_waiting", &self.received.len())
            .field("send_waiting", &self.send.len())
            .field("dtmf_waiting", &self.dtmf.len())
            .finish()
    }
}

/// RFC 3550 reception statistics of the stream the endpoint is locked to.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct ReceiverReport {
    /// The SSRC of the locked source.
    pub ssrc: u32,
    /// Packets received (duplicates included, as in RFC 3550 A.3).
    pub received: u64,
    /// Packets expected from the sequence-number range seen.
    pub expected: u64,
    /// Expected minus received since the start (negative with duplicates).
    pub cumulative_lost: i64,
    /// Fraction lost over the last report interval, in 1/256 units (A.3).
    pub fraction_lost: u8,
    /// Interarrival jitter (A.8).
    pub jitter: Duration,
    /// Duplicate packets.
    pub duplicates: u64,
    /// Packets that arrived after a later one (reordered).
    pub late: u64,
}

impl ReceiverReport {
    /// [`fraction_lost`](Self::fraction_lost) as a value between 0 and 1.
    pub fn loss_fraction(&self) -> f64 {
        f64::from(self.fraction_lost) / 256.0
    }
}

/// A snapshot of an endpoint's counters and statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct EndpointStats {
    /// Where media is sent: the host-given remote, or the learned source.
    pub remote: Option<SocketAddr>,
    /// 20 ms ticks run.
    pub ticks: u64,
    /// Ticks that ran more than 10 ms behind their deadline.
    pub late_ticks: u64,
    /// Inbound counters (datagrams, foreign sources, decoded/concealed/recovered frames).
    pub inbound: InboundCounters,
    /// Outbound counters (packets, frames encoded, silent ticks).
    pub outbound: OutboundCounters,
    /// Reception statistics, once a packet was accepted.
    pub receiver: Option<ReceiverReport>,
    /// The jitter buffer's current target delay, once the stream's format is known.
    pub jitter_target_delay: Option<Duration>,
    /// Frames delivered to the receive ring (silence fill included).
    pub frames_delivered: u64,
    /// Frames dropped because the receive ring was full (the host fell behind).
    pub frames_dropped: u64,
    /// Frames taken from the send ring.
    pub frames_taken: u64,
    /// Frames the host pushed while the send ring was full (dropped).
    pub send_ring_overflows: u64,
    /// Packets built but not sent: no remote known yet, or the socket buffer was full.
    pub unsent: u64,
    /// Socket send errors.
    pub send_errors: u64,
    /// Socket receive errors.
    pub recv_errors: u64,
}

/// The statistics shared between the endpoint task and its handle.
struct StatsCell(Mutex<EndpointStats>);

impl StatsCell {
    fn read(&self) -> EndpointStats {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Publishes without waiting: if a reader holds the lock right now, the next tick publishes.
    fn publish(&self, stats: &EndpointStats) {
        if let Ok(mut s) = self.0.try_lock() {
            *s = *stats;
        }
    }

    fn publish_final(&self, stats: &EndpointStats) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = *stats;
    }
}

/// Handle of a running RTP endpoint. Dropping it stops the endpoint.
pub struct RtpEndpoint {
    local: SocketAddr,
    stats: Arc<StatsCell>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<EndpointStats>>,
}

impl RtpEndpoint {
    /// Binds a UDP socket to `local` (port 0 picks a free port) and starts the endpoint
    /// with default [`EndpointOptions`].
    pub async fn bind(
        local: SocketAddr,
        config: MediaConfig,
    ) -> Result<(RtpEndpoint, EndpointAudio), EndpointError> {
        Self::bind_with(local, config, EndpointOptions::default()).await
    }

    /// [`bind`](Self::bind) with explicit options.
    pub async fn bind_with(
        local: SocketAddr,
        config: MediaConfig,
        options: EndpointOptions,
    ) -> Result<(RtpEndpoint, EndpointAudio), EndpointError> {
        let socket = UdpSocket::bind(local)
            .await
            .map_err(|source| EndpointError::Bind {
                addr: local,
                source,
            })?;
        let local = socket.local_addr().map_err(EndpointError::LocalAddr)?;
        // On a media error the socket is dropped (closed) here.
        Self::with_transport(socket, local, &config, options)
    }

    /// Starts an endpoint over any packet transport (e.g. [`super::MemoryTransport`] on
    /// virtual time in tests); `local` is reported by [`local_addr`](Self::local_addr).
    ///
    /// Must be called from within a tokio runtime (the endpoint runs as a task).
    pub fn with_transport<T: PacketTransport>(
        transport: T,
        local: SocketAddr,
        config: &MediaConfig,
        options: EndpointOptions,
    ) -> Result<(RtpEndpoint, EndpointAudio), EndpointError> {
        let port = RtpPort::new(transport, config)?;
        let (received_tx, received_rx) = ring(options.receive_ring_frames);
        let (send_tx, send_rx) = ring(options.send_ring_frames);
        let (dtmf_tx, dtmf_rx) = ring(DTMF_RING);
        let (stop_tx, stop_rx) = oneshot::channel();
        let stats = Arc::new(StatsCell(Mutex::new(EndpointStats {
            remote: config.remote,
            ..EndpointStats::default()
        })));
        let task = EndpointTask {
            port,
            options,
            received: received_tx,
            send: send_rx,
            dtmf: dtmf_tx,
            stats: stats.clone(),
        };
        let handle = tokio::spawn(task.run(stop_rx));
        Ok((
            RtpEndpoint {
                local,
                stats,
                stop: Some(stop_tx),
                task: Some(handle),
            },
            EndpointAudio {
                received: received_rx,
                send: send_tx,
                dtmf: dtmf_rx,
            },
        ))
    }

    /// The local address the endpoint receives on (the port to put in the SDP).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The latest statistics (updated every 20 ms tick).
    pub fn stats(&self) -> EndpointStats {
        self.stats.read()
    }

    /// True while the endpoint task runs.
    pub fn is_running(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stops the endpoint and returns its final statistics, including a last receiver
    /// report (loss fraction over the interval since the previous one).
    pub async fn close(mut self) -> EndpointStats {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => match task.await {
                Ok(stats) => stats,
                Err(_) => self.stats.read(),
            },
            None => self.stats.read(),
        }
    }
}

impl Drop for RtpEndpoint {
    fn drop(&mut self) {
        // Dropping the stop sender ends the task at its next wake-up.
        self.stop.take();
    }
}

impl std::fmt::Debug for RtpEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtpEndpoint")
            .field("local", &self.local)
            .field("running", &self.is_running())
            .finish()
    }
}

/// The endpoint's task state.
struct EndpointTask<T: PacketTransport> {
    port: RtpPort<T>,
    options: EndpointOptions,
    received: RingProducer<AudioFrame>,
    send: RingConsumer<AudioFrame>,
    dtmf: RingProducer<char>,
    stats: Arc<StatsCell>,
}

impl<T: PacketTransport> EndpointTask<T> {
    async fn run(mut self, mut stop: oneshot::Receiver<()>) -> EndpointStats {
        let epoch = Instant::now();
        let frame_period = Duration::from_millis(u64::from(FRAME_MS));
        let mut ticker = tokio::time::interval_at(epoch + frame_period, frame_period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
        let report_interval = self.options.report_interval.max(frame_period);
        let mut next_report = report_interval;
        let caller_rate = self.port.caller_rate();
        let mut frame = AudioFrame::silent(caller_rate);
        let mut stats = self.stats.read();
        let mut last_fraction: u8 = 0;
        let mut stream_started = false;
        // Receiving stops for good when the transport closes, and pauses until the next tick
        // after an error (so a persistent socket error cannot spin the task).
        let mut transport_open = true;
        let mut recv_paused = false;

        loop {
            tokio::select! {
                biased;
                _ = &mut stop => break,
                deadline = ticker.tick() => {
                    recv_paused = false;
                    let now = Instant::now();
                    stats.ticks += 1;
                    if now.saturating_duration_since(deadline) > LATE_TICK {
                        stats.late_ticks += 1;
                    }
                    let now = now.saturating_duration_since(epoch);
                    self.tick(now, &mut frame, &mut stream_started, &mut stats);
                    if now >= next_report {
                        next_report += report_interval;
                        if let Some((_, block)) = self.port.inbound_mut().report_block(now) {
                            last_fraction = block.fraction_lost;
                        }
                    }
                    self.snapshot(&mut stats, last_fraction);
                    self.stats.publish(&stats);
                }
                input = self.port.recv(epoch), if transport_open && !recv_paused => {
                    match input {
                        Ok(MediaInput::Received) => {}
                        Ok(MediaInput::Dtmf(digit)) => {
                            self.dtmf.push(digit);
                        }
                        Ok(MediaInput::Closed) => transport_open = false,
                        Err(_) => {
                            stats.recv_errors += 1;
                            recv_paused = true;
                        }
                    }
                }
            }
        }

        let now = Instant::now().saturating_duration_since(epoch);
        if let Some((_, block)) = self.port.inbound_mut().report_block(now) {
            last_fraction = block.fraction_lost;
        }
        self.snapshot(&mut stats, last_fraction);
        self.stats.publish_final(&stats);
        stats
    }

    /// One 20 ms tick: a caller frame to the host, a host frame to the network.
    fn tick(
        &mut self,
        now: Duration,
        frame: &mut AudioFrame,
        stream_started: &mut bool,
        stats: &mut EndpointStats,
    ) {
        let deliver = if self.port.caller_frame(now, frame) {
            *stream_started = true;
            true
        } else if *stream_started && self.options.fill_silence {
            frame.reset(self.port.caller_rate(), FrameOrigin::Generated);
            true
        } else {
            false
        };
        if deliver {
            if self.received.push(*frame) {
                stats.frames_delivered += 1;
            } else {
                stats.frames_dropped += 1;
            }
        }
        if let Some(digit) = self.port.inbound_mut().poll_dtmf_timeout(now) {
            self.dtmf.push(digit);
        }
        let agent = self.send.try_pop();
        if agent.is_some() {
            stats.frames_taken += 1;
        }
        if self.port.send_agent_frame(now, agent.as_ref()).is_err() {
            stats.send_errors += 1;
        }
    }

    /// Copies the media path's counters and statistics into `stats`.
    fn snapshot(&self, stats: &mut EndpointStats, fraction_lost: u8) {
        let inbound = self.port.inbound();
        stats.remote = inbound.remote();
        stats.inbound = inbound.counters();
        stats.outbound = self.port.outbound().counters();
        stats.jitter_target_delay = inbound.jitter_delay();
        stats.unsent = self.port.unsent;
        stats.send_ring_overflows = self.send.dropped();
        stats.receiver = match (inbound.remote_ssrc(), inbound.receiver_stats()) {
            (Some(ssrc), Some(rs)) => Some(ReceiverReport {
                ssrc,
                received: rs.received(),
                expected: rs.expected(),
                cumulative_lost: rs.cumulative_lost(),
                fraction_lost,
                jitter: rs.jitter(),
                duplicates: rs.duplicates(),
                late: rs.late(),
            }),
            _ => None,
        };
    }
}
