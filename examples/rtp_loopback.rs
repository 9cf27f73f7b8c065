//! rtp_loopback: a spoken WAV through voxline's RTP endpoint and back, over 127.0.0.1.
//!
//! Loopback mode (the default) plays a caller: it reads a WAV (`assets/caller.wav` unless
//! `--wav` says otherwise), resamples it to the codec's rate with the codecs `Resampler`,
//! and sends it in real time as RTP (Opus, payload type 111, 48 kHz clock by default) from
//! its own UDP socket to an `RtpEndpoint`, through a simulated network that drops, reorders
//! and delays packets (deterministic for a given `--seed`). The endpoint learns the caller's
//! address from the first packet (symmetric RTP), runs its jitter buffer and decoder, and
//! echoes every decoded frame back as RTP; the caller decodes the echo with its own jitter
//! buffer and writes it to `--out` (default `out/loopback.wav`). At the end it prints the
//! RTP statistics of both directions and how closely the echo follows the original.
//!
//! Receive-only mode (`--receive-only`) binds an endpoint to `--listen ADDR` and only
//! receives, for `--seconds S` (or until Ctrl-C), writing what it decoded to `--out`: point
//! any RTP sender at it, for example
//! `ffmpeg -re -i assets/caller.wav -c:a libopus -ar 48000 -ac 1 -payload_type 111 -f rtp rtp://127.0.0.1:5004`.
//!
//! ```text
//! cargo run --release --example rtp_loopback -- [OPTIONS]
//!
//!   --wav FILE            input WAV (8/16/24/48 kHz, any channels; default assets/caller.wav)
//!   --out FILE            output WAV (default out/loopback.wav)
//!   --codec C             opus | pcmu | pcma (default opus)
//!   --payload-type N      RTP payload type (default 111 for opus, 0 for pcmu, 8 for pcma)
//!   --loss PCT            packets dropped on the way to the endpoint, 0-100 (default 0)
//!   --reorder PCT         packets held back 40 ms so later ones overtake them (default 0)
//!   --jitter-ms N         extra random delay per packet, uniform 0..N ms (default 0)
//!   --seed N              seed of the simulated network (default 1)
//!   --receive-only        only receive (with --listen, --seconds)
//!   --listen ADDR         receive-only: address to bind (default 127.0.0.1:5004)
//!   --seconds S           receive-only: how long to listen (default 10)
//!   -h, --help            this text
//! ```

#[path = "common/codec.rs"]
mod codec;
#[path = "common/wav.rs"]
mod wav;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use codec::Codec;
use tokio::net::UdpSocket;
use tokio::time::{Instant, MissedTickBehavior};
use voxline::codecs::{AudioFrame, FrameOrigin, PayloadRegistry, Resampler, SampleRate};
use voxline::engine::media::{InboundMedia, OutboundMedia};
use voxline::engine::testkit::{level_envelope, match_envelopes};
use voxline::{EndpointOptions, EndpointStats, MediaConfig, RtpEndpoint};

const USAGE: &str = "usage: rtp_loopback [--wav FILE] [--out FILE] [--codec opus|pcmu|pcma] \
[--payload-type N] [--loss PCT] [--reorder PCT] [--jitter-ms N] [--seed N]
       rtp_loopback --receive-only [--listen ADDR] [--codec opus|pcmu|pcma] [--payload-type N] \
[--seconds S] [--out FILE]
run with --help for details";

/// The default input, relative to the working directory or, failing that, to the repository.
const DEFAULT_WAV: &str = "assets/caller.wav";

/// Extra delay of a packet picked for reordering: two packets overtake it.
const REORDER_HOLD: Duration = Duration::from_millis(40);

/// Time after the last packet for the echo to come back through both jitter buffers.
const DRAIN: Duration = Duration::from_millis(600);

fn main() -> ExitCode {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(Command::Help) => {
            println!("{}", help_text());
            return ExitCode::SUCCESS;
        }
        Ok(Command::Run(args)) => args,
        Err(e) => {
            eprintln!("error: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = if args.receive_only {
        runtime.block_on(receive_only(&args))
    } else {
        runtime.block_on(loopback(&args))
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Everything that can go wrong, with a message for the user.
#[derive(Debug)]
enum AppError {
    /// A bad command line.
    Usage(String),
    /// The input WAV cannot be used.
    Input { path: PathBuf, detail: String },
    /// The output WAV cannot be written.
    Output { path: PathBuf, detail: String },
    /// Sockets, endpoint or codecs failed.
    Media(String),
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppError::Usage(m) => write!(f, "{m}"),
            AppError::Input { path, detail } => write!(f, "{}: {detail}", path.display()),
            AppError::Output { path, detail } => {
                write!(f, "cannot write {}: {detail}", path.display())
            }
            AppError::Media(m) => write!(f, "{m}"),
        }
    }
}

fn media_err(context: &str) -> impl FnOnce(String) -> AppError + '_ {
    move |e| AppError::Media(format!("{context}: {e}"))
}

/// Parsed command line.
#[derive(Clone, Debug)]
struct Args {
    wav: Option<PathBuf>,
    out: PathBuf,
    codec: Codec,
    payload_type: Option<u8>,
    loss_pct: f64,
    reorder_pct: f64,
    jitter_ms: u64,
    seed: u64,
    receive_only: bool,
    listen: SocketAddr,
    seconds: f64,
}

enum Command {
    Help,
    Run(Args),
}

impl Args {
    fn parse(mut it: impl Iterator<Item = String>) -> Result<Command, AppError> {
        let mut a = Args {
            wav: None,
            out: PathBuf::from("out/loopback.wav"),
            codec: Codec::Opus,
            payload_type: None,
            loss_pct: 0.0,
            reorder_pct: 0.0,
            jitter_ms: 0,
            seed: 1,
            receive_only: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 5004)),
            seconds: 10.0,
        };
        let mut listen_given = false;
        let mut seconds_given = false;
        while let Some(flag) = it.next() {
            let mut value = |name: &str| {
                it.next()
                    .ok_or_else(|| AppError::Usage(format!("{name} needs a value")))
            };
            match flag.as_str() {
                "-h" | "--help" => return Ok(Command::Help),
                "--wav" => a.wav = Some(PathBuf::from(value("--wav")?)),
                "--out" => a.out = PathBuf::from(value("--out")?),
                "--codec" => a.codec = Codec::parse(&value("--codec")?).map_err(AppError::Usage)?,
                "--payload-type" => {
                    let pt: u8 = number("--payload-type", &value("--payload-type")?)?;
                    if pt > 127 {
                        return Err(AppError::Usage(format!(
                            "--payload-type: {pt} is not an RTP payload type (0-127)"
                        )));
                    }
                    a.payload_type = Some(pt);
                }
                "--loss" => a.loss_pct = percent("--loss", &value("--loss")?)?,
                "--reorder" => a.reorder_pct = percent("--reorder", &value("--reorder")?)?,
                "--jitter-ms" => {
                    a.jitter_ms = number("--jitter-ms", &value("--jitter-ms")?)?;
                    if a.jitter_ms > 1000 {
                        return Err(AppError::Usage(format!(
                            "--jitter-ms: {} ms is beyond any jitter buffer (max 1000)",
                            a.jitter_ms
                        )));
                    }
                }
                "--seed" => a.seed = number("--seed", &value("--seed")?)?,
                "--receive-only" => a.receive_only = true,
                "--listen" => {
                    let v = value("--listen")?;
                    a.listen = v.parse().map_err(|_| {
                        AppError::Usage(format!(
                            "--listen: {v:?} is not an address like 127.0.0.1:5004"
                        ))
                    })?;
                    listen_given = true;
                }
                "--seconds" => {
                    let s: f64 = number("--seconds", &value("--seconds")?)?;
                    if !(s > 0.0 && s <= 3600.0) {
                        return Err(AppError::Usage(format!("--seconds: {s} is outside 0-3600")));
                    }
                    a.seconds = s;
                    seconds_given = true;
                }
                other => return Err(AppError::Usage(format!("unknown option {other:?}"))),
            }
        }
        if !a.receive_only && (listen_given || seconds_given) {
            return Err(AppError::Usage(
                "--listen and --seconds go with --receive-only".into(),
            ));
        }
        if a.receive_only && a.wav.is_some() {
            return Err(AppError::Usage(
                "--wav is for loopback mode; --receive-only records what arrives".into(),
            ));
        }
        Ok(Command::Run(a))
    }

    fn payload_type(&self) -> u8 {
        self.payload_type
            .unwrap_or_else(|| self.codec.default_payload_type())
    }

    /// The session's payload table: the chosen payload type mapped to the codec.
    fn registry(&self) -> Result<PayloadRegistry, AppError> {
        let mut registry = PayloadRegistry::empty();
        registry
            .insert(self.payload_type(), self.codec.format())
            .map_err(|e| AppError::Usage(format!("--payload-type: {e}")))?;
        Ok(registry)
    }
}

fn number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, AppError> {
    v.parse()
        .map_err(|_| AppError::Usage(format!("{flag}: {v:?} is not a valid number")))
}

fn percent(flag: &str, v: &str) -> Result<f64, AppError> {
    let p: f64 = number(flag, v)?;
    if (0.0..=100.0).contains(&p) {
        Ok(p)
    } else {
        Err(AppError::Usage(format!(
            "{flag}: {p} is not a percentage (0-100)"
        )))
    }
}

fn help_text() -> String {
    let doc = include_str!("rtp_loopback.rs");
    let usage: Vec<&str> = doc
        .lines()
        .skip_while(|l| !l.starts_with("//! ```text"))
        .skip(1)
        .take_while(|l| !l.starts_with("//! ```"))
        .map(|l| l.trim_start_matches("//!").strip_prefix(' ').unwrap_or(""))
        .collect();
    format!(
        "rtp_loopback: a spoken WAV through voxline's RTP endpoint and back.\n\n{}",
        usage.join("\n")
    )
}

/// Deterministic pseudo-random numbers for the simulated network (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn chance(&mut self, pct: f64) -> bool {
        self.unit() * 100.0 < pct
    }
}

/// A mono PCM16 recording at a supported rate.
struct Pcm {
    rate: SampleRate,
    samples: Vec<i16>,
}

/// Reads a WAV of any channel count and sample format into mono PCM16.
fn read_wav(path: &Path) -> Result<Pcm, AppError> {
    let (rate, samples) = wav::read_mono(path).map_err(|detail| AppError::Input {
        path: path.to_path_buf(),
        detail,
    })?;
    Ok(Pcm { rate, samples })
}

/// Writes mono PCM16.
fn write_wav(path: &Path, pcm: &Pcm) -> Result<(), AppError> {
    let fail = |detail: String| AppError::Output {
        path: path.to_path_buf(),
        detail,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
    }
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: pcm.rate.hz(),
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).map_err(|e| fail(e.to_string()))?;
    for &s in &pcm.samples {
        w.write_sample(s).map_err(|e| fail(e.to_string()))?;
    }
    w.finalize().map_err(|e| fail(e.to_string()))
}

/// The input path: as given, or the default from the working directory or the repository.
fn input_path(args: &Args) -> PathBuf {
    if let Some(p) = &args.wav {
        return p.clone();
    }
    let here = PathBuf::from(DEFAULT_WAV);
    if here.exists() {
        return here;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_WAV)
}

/// Cuts `pcm` into 20 ms frames at `to`, resampling with the codecs `Resampler` if needed.
fn frames_at(pcm: &Pcm, to: SampleRate) -> Result<Vec<AudioFrame>, AppError> {
    let mut resampler =
        Resampler::new(pcm.rate, to).map_err(|e| AppError::Media(format!("resampler: {e}")))?;
    let n = pcm.rate.frame_samples();
    let mut frames = Vec::with_capacity(pcm.samples.len() / n + 1);
    let mut input = AudioFrame::silent(pcm.rate);
    let mut out = AudioFrame::silent(to);
    for chunk in pcm.samples.chunks(n) {
        input.reset(pcm.rate, FrameOrigin::Received);
        input.samples_mut()[..chunk.len()].copy_from_slice(chunk);
        resampler
            .process_into(&input, &mut out)
            .map_err(|e| AppError::Media(format!("resampler: {e}")))?;
        frames.push(out);
    }
    Ok(frames)
}

/// A packet waiting in the simulated network.
struct InFlight {
    due: Duration,
    order: u64,
    bytes: Vec<u8>,
}

/// Loopback mode: caller → network → endpoint → echo → caller → WAV.
async fn loopback(args: &Args) -> Result<ExitCode, AppError> {
    let path = input_path(args);
    let input = read_wav(&path)?;
    let codec_rate = args
        .codec
        .format()
        .pcm_rate()
        .unwrap_or(SampleRate::Hz48000);
    let frames = frames_at(&input, codec_rate)?;
    let registry = args.registry()?;
    let pt = args.payload_type();

    // The endpoint: decodes to 16 kHz (8 kHz for G.711), learns the caller's address.
    let endpoint_config = MediaConfig::new(registry.clone(), pt);
    let options = EndpointOptions {
        // One receiver report for the whole run, made when the endpoint closes.
        report_interval: Duration::from_secs(24 * 3600),
        ..EndpointOptions::default()
    };
    let local = SocketAddr::from(([127, 0, 0, 1], 0));
    let (endpoint, audio) = RtpEndpoint::bind_with(local, endpoint_config, options)
        .await
        .map_err(|e| AppError::Media(e.to_string()))?;
    let target = endpoint.local_addr();
    // The host side: every decoded frame goes straight back out.
    let echo = tokio::spawn(async move {
        while let Some(frame) = audio.received.recv().await {
            audio.send.push(frame);
        }
    });

    // The caller: its own socket, encoder and jitter buffer; the echo is decoded at the input rate.
    let socket = UdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .map_err(|e| media_err("caller socket")(e.to_string()))?;
    let mut caller_config = MediaConfig::new(registry, pt);
    caller_config.caller_rate = input.rate;
    caller_config.remote = Some(target);
    if args.codec == Codec::Opus {
        caller_config.opus.expected_loss_pct = (args.loss_pct.ceil() as u8).clamp(10, 100);
    }
    let mut outbound = OutboundMedia::new(&caller_config)
        .map_err(|e| media_err("caller encoder")(e.to_string()))?;
    let mut inbound = InboundMedia::new(&caller_config)
        .map_err(|e| media_err("caller decoder")(e.to_string()))?;

    println!(
        "rtp_loopback: {} ({:.2} s at {} Hz) as RTP/{} (payload type {pt}) to the endpoint on {target}",
        path.display(),
        input.samples.len() as f64 / f64::from(input.rate.hz()),
        input.rate.hz(),
        args.codec.name(),
    );
    println!(
        "simulated network to the endpoint: {}% loss, {}% reordered, 0-{} ms jitter, seed {}",
        args.loss_pct, args.reorder_pct, args.jitter_ms, args.seed
    );

    let mut rng = Rng(args.seed);
    let mut in_flight: Vec<InFlight> = Vec::with_capacity(64);
    let mut network_drops = 0u64;
    let mut reordered = 0u64;
    let mut order = 0u64;
    let mut output: Vec<i16> = Vec::with_capacity(input.samples.len() * 2);
    let mut decoded = AudioFrame::silent(input.rate);
    let mut buf = vec![0u8; 2048];
    let frame_period = Duration::from_millis(20);
    let start = Instant::now();
    let mut tick = tokio::time::interval_at(start, frame_period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut next = 0usize;
    let end = frame_period * frames.len() as u32 + DRAIN + Duration::from_millis(args.jitter_ms);

    loop {
        let next_due = in_flight.iter().map(|p| p.due).min();
        tokio::select! {
            biased;
            _ = tick.tick() => {
                let now = start.elapsed();
                if let Some(frame) = frames.get(next) {
                    next += 1;
                    if let Some(packet) = outbound.next_packet(Some(frame)) {
                        if rng.chance(args.loss_pct) {
                            network_drops += 1;
                        } else {
                            let mut delay = Duration::from_secs_f64(
                                rng.unit() * args.jitter_ms as f64 / 1000.0,
                            );
                            if rng.chance(args.reorder_pct) {
                                reordered += 1;
                                delay += REORDER_HOLD;
                            }
                            order += 1;
                            in_flight.push(InFlight { due: now + delay, order, bytes: packet.to_vec() });
                        }
                    }
                }
                // The echo, one frame per tick; silence until it starts and in its gaps.
                if !inbound.next_frame(now, &mut decoded) {
                    decoded.reset(input.rate, FrameOrigin::Generated);
                }
                output.extend_from_slice(decoded.samples());
                if now >= end {
                    break;
                }
            }
            _ = sleep_until_due(start, next_due), if next_due.is_some() => {
                let now = start.elapsed();
                in_flight.sort_by_key(|p| (p.due, p.order));
                let due = in_flight.iter().take_while(|p| p.due <= now).count();
                for p in in_flight.drain(..due) {
                    socket
                        .send_to(&p.bytes, target)
                        .await
                        .map_err(|e| media_err("caller send")(e.to_string()))?;
                }
            }
            received = socket.recv_from(&mut buf) => {
                let (n, from) = received.map_err(|e| media_err("caller receive")(e.to_string()))?;
                inbound.on_datagram(start.elapsed(), from, &buf[..n]);
            }
        }
    }

    let endpoint_stats = endpoint.close().await;
    echo.abort();
    let now = start.elapsed();
    let caller_report = inbound.report_block(now).map(|(_, b)| b.fraction_lost);

    // Drop the trailing silence of the drain period.
    let keep = output
        .iter()
        .rposition(|&s| s != 0)
        .map_or(0, |i| i + 1)
        .div_ceil(input.rate.frame_samples())
        * input.rate.frame_samples();
    output.truncate(keep.min(output.len()));
    let out = Pcm {
        rate: input.rate,
        samples: output,
    };
    write_wav(&args.out, &out)?;

    print_table(
        &[
            ("", "caller → endpoint", "endpoint → caller"),
            (
                "RTP packets sent",
                &outbound.counters().packets.to_string(),
                &endpoint_stats.outbound.packets.to_string(),
            ),
            (
                "dropped / reordered by the network",
                &format!("{network_drops} / {reordered}"),
                "0 / 0",
            ),
        ],
        &[
            endpoint_column(&endpoint_stats),
            inbound_column(&inbound, caller_report),
        ],
    );
    println!(
        "endpoint clock: {} ticks, {} late; remote learned: {}",
        endpoint_stats.ticks,
        endpoint_stats.late_ticks,
        endpoint_stats
            .remote
            .map_or("none".to_string(), |a| a.to_string())
    );

    let reference = level_envelope(&input.samples, input.rate.hz());
    let echoed = level_envelope(&out.samples, out.rate.hz());
    match match_envelopes(&reference, &echoed, 50) {
        Some(m) => println!(
            "echo vs original: level-envelope correlation {:.3}, round trip {} ms",
            m.correlation,
            m.lag_frames * 20
        ),
        None => println!("echo vs original: no echo to compare (nothing came back)"),
    }
    println!(
        "wrote {} ({:.2} s at {} Hz)",
        args.out.display(),
        out.samples.len() as f64 / f64::from(out.rate.hz()),
        out.rate.hz()
    );
    Ok(ExitCode::SUCCESS)
}

/// Sleeps until `due` after `start` (a pending branch when nothing is due).
async fn sleep_until_due(start: Instant, due: Option<Duration>) {
    match due {
        Some(d) => tokio::time::sleep_until(start + d).await,
        None => std::future::pending().await,
    }
}

/// Receive-only mode: record what an external sender sends to `--listen`.
async fn receive_only(args: &Args) -> Result<ExitCode, AppError> {
    let mut config = MediaConfig::new(args.registry()?, args.payload_type());
    // Listen only: never answer, not even with G.711 silence.
    config.send_silence = false;
    let rate = config.caller_rate;
    let (endpoint, audio) = RtpEndpoint::bind(args.listen, config)
        .await
        .map_err(|e| AppError::Media(e.to_string()))?;
    println!(
        "rtp_loopback: receiving RTP/{} (payload type {}) on {} for {} s (Ctrl-C stops early)",
        args.codec.name(),
        args.payload_type(),
        endpoint.local_addr(),
        args.seconds
    );
    let mut samples: Vec<i16> = Vec::new();
    let deadline = tokio::time::sleep(Duration::from_secs_f64(args.seconds));
    tokio::pin!(deadline);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = &mut deadline => break,
            _ = &mut ctrl_c => break,
            frame = audio.received.recv() => match frame {
                Some(f) => samples.extend_from_slice(f.samples()),
                None => break,
            },
        }
    }
    let stats = endpoint.close().await;
    while let Some(f) = audio.received.try_pop() {
        samples.extend_from_slice(f.samples());
    }
    let out = Pcm { rate, samples };
    write_wav(&args.out, &out)?;
    print_table(&[("", "sender → endpoint", "")], &[endpoint_column(&stats)]);
    println!(
        "sender: {}",
        stats.remote.map_or("none".to_string(), |a| a.to_string())
    );
    println!(
        "wrote {} ({:.2} s at {} Hz)",
        args.out.display(),
        out.samples.len() as f64 / f64::from(rate.hz()),
        rate.hz()
    );
    if stats.inbound.audio_packets == 0 {
        eprintln!(
            "no RTP audio with payload type {} arrived on {}",
            args.payload_type(),
            args.listen
        );
        return Ok(ExitCode::from(3));
    }
    Ok(ExitCode::SUCCESS)
}

/// One direction's receive statistics, as table cells.
struct Column {
    received: String,
    expected: String,
    lost: String,
    fraction: String,
    jitter: String,
    reordered: String,
    dropped: String,
    decoded: String,
    concealed: String,
    recovered: String,
    delay: String,
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn column(
    audio_packets: u64,
    receiver: Option<(u64, i64, u8, Duration, u64)>,
    discarded: u64,
    counters: (u64, u64, u64),
    delay: Option<Duration>,
) -> Column {
    let dash = || "-".to_string();
    Column {
        received: audio_packets.to_string(),
        expected: receiver.map_or_else(dash, |r| r.0.to_string()),
        lost: receiver.map_or_else(dash, |r| r.1.to_string()),
        fraction: receiver.map_or_else(dash, |r| {
            format!("{:.1} % ({}/256)", f64::from(r.2) * 100.0 / 256.0, r.2)
        }),
        jitter: receiver.map_or_else(dash, |r| ms(r.3)),
        reordered: receiver.map_or_else(dash, |r| r.4.to_string()),
        dropped: discarded.to_string(),
        decoded: counters.0.to_string(),
        concealed: counters.1.to_string(),
        recovered: counters.2.to_string(),
        delay: delay.map_or_else(dash, ms),
    }
}

fn endpoint_column(s: &EndpointStats) -> Column {
    column(
        s.inbound.audio_packets,
        s.receiver.map(|r| {
            (
                r.expected,
                r.cumulative_lost,
                r.fraction_lost,
                r.jitter,
                r.late,
            )
        }),
        s.inbound.discarded,
        (
            s.inbound.frames_decoded,
            s.inbound.frames_concealed,
            s.inbound.frames_recovered,
        ),
        s.jitter_target_delay,
    )
}

fn inbound_column(inbound: &InboundMedia, fraction: Option<u8>) -> Column {
    let c = inbound.counters();
    column(
        c.audio_packets,
        inbound.receiver_stats().map(|r| {
            (
                r.expected(),
                r.cumulative_lost(),
                fraction.unwrap_or(0),
                r.jitter(),
                r.late(),
            )
        }),
        c.discarded,
        (c.frames_decoded, c.frames_concealed, c.frames_recovered),
        inbound.jitter_delay(),
    )
}

/// Prints the statistics table: `head` rows, then one column of receive statistics per direction.
fn print_table(head: &[(&str, &str, &str)], cols: &[Column]) {
    type Cell = fn(&Column) -> &str;
    let rows: [(&str, Cell); 11] = [
        ("RTP packets received", |c| &c.received),
        ("packets expected", |c| &c.expected),
        ("cumulative loss (packets)", |c| &c.lost),
        ("loss fraction (RFC 3550)", |c| &c.fraction),
        ("interarrival jitter", |c| &c.jitter),
        ("reordered packets", |c| &c.reordered),
        ("duplicate / too-late packets", |c| &c.dropped),
        ("frames decoded", |c| &c.decoded),
        ("frames concealed (PLC)", |c| &c.concealed),
        ("frames recovered (FEC)", |c| &c.recovered),
        ("jitter buffer target delay", |c| &c.delay),
    ];
    let width = 36;
    println!();
    for (label, a, b) in head {
        if b.is_empty() {
            println!("{label:<width$} {a:>22}");
        } else {
            println!("{label:<width$} {a:>22} {b:>22}");
        }
    }
    println!("{}", "-".repeat(width + 1 + 23 * cols.len()));
    for (label, cell) in rows {
        let mut line = format!("{label:<width$}");
        for c in cols {
            line.push_str(&format!(" {:>22}", cell(c)));
        }
        println!("{line}");
    }
    println!();
}
