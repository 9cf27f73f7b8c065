//! Interoperability with an independent RTP implementation: ffmpeg.
//!
//! - ffmpeg encodes `assets/caller.wav` with libopus and sends it as RTP to an `RtpEndpoint`;
//!   the endpoint's decoded frames must carry the same speech (duration, voiced frames and
//!   level envelope against the source).
//! - The endpoint sends the same WAV as RTP/Opus and as RTP/PCMU to a port where ffmpeg
//!   records it through an SDP file; ffmpeg must decode real speech of the expected length,
//!   which proves the endpoint's output is standard RTP.
//!
//! ffmpeg is a system package: when it is missing the set-up runs `scripts/setup.sh` (which
//! installs it), and when it still cannot run, the tests fail with a message saying so.
//! They run in real time (about 6 s each, in parallel) and assert on audio, not on timing.

#[path = "support/ffmpeg.rs"]
mod ffmpeg_support;

use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command as AsyncCommand;
use tokio::time::{sleep, timeout, Instant};
use voxline::codecs::{AudioFrame, FrameOrigin, PayloadFormat, PayloadRegistry, SampleRate};
use voxline::engine::testkit::{level_envelope, match_envelopes};
use voxline::{MediaConfig, RtpEndpoint};

/// Frames louder than this count as voiced (speech frames of the WAV sit at -40 to -15 dBFS,
/// its pauses are digital silence and codec noise stays below -60 dBFS).
const VOICED_DBFS: f32 = -45.0;

/// Minimum envelope correlation ([`speech_match`]) between what was decoded and the source WAV.
///
/// Measured on this machine over repeated runs: 0.91–0.94 for ffmpeg → endpoint (Opus through
/// the adaptive jitter buffer), 0.925 for endpoint → ffmpeg over Opus, 0.967–0.968 over PCMU.
/// A different sentence (the follow-up WAV against this one) scores 0.32, and silence or
/// noise has no envelope shape at all. 0.8 sits well clear of both: it leaves room for a few
/// concealed or re-timed frames on a loaded machine, and still fails on audio that is not
/// this sentence (checked by `envelope_threshold_separates_different_speech`).
const MIN_ENVELOPE_CORRELATION: f64 = 0.8;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Reads a 16-bit mono WAV.
fn read_wav(path: &Path) -> (u32, Vec<i16>) {
    let mut r = hound::WavReader::open(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let spec = r.spec();
    assert_eq!(
        (spec.channels, spec.bits_per_sample),
        (1, 16),
        "{}",
        path.display()
    );
    let samples = r
        .samples::<i16>()
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| panic!("cannot decode {}: {e}", path.display()));
    (spec.sample_rate, samples)
}

fn caller_wav() -> (u32, Vec<i16>) {
    read_wav(&root().join("assets/caller.wav"))
}

fn voiced_frames(samples: &[i16], rate: u32) -> usize {
    level_envelope(samples, rate)
        .iter()
        .filter(|&&l| l > VOICED_DBFS)
        .count()
}

/// How closely `test` carries the speech of `reference`: the best single-lag envelope match,
/// and the mean over 1 s segments of the reference of each segment's best envelope correlation
/// within ±3 frames (60 ms) of that lag.
///
/// The per-segment lag matters for audio that went through an adaptive jitter buffer: it may
/// play a frame shorter or longer to follow the network's jitter (ffmpeg `-re` sends in bursts
/// of about 120 ms), which shifts everything after that point by 20 ms. One global lag then
/// undervalues a perfect decode; segments aligned on their own do not.
fn speech_match(reference: &[i16], ref_rate: u32, test: &[i16], test_rate: u32) -> (f64, isize) {
    let a = level_envelope(reference, ref_rate);
    let b = level_envelope(test, test_rate);
    let global = match_envelopes(&a, &b, 25).expect("envelopes overlap");
    let mut sum = 0.0;
    let mut segments = 0;
    for (k, seg) in a.chunks(50).enumerate() {
        let start = (k * 50) as isize;
        let best = (global.lag_frames - 3..=global.lag_frames + 3)
            .filter_map(|lag| {
                let pairs: Vec<(f64, f64)> = seg
                    .iter()
                    .enumerate()
                    .filter_map(|(i, &r)| {
                        let j = usize::try_from(start + i as isize + lag).ok()?;
                        b.get(j).map(|&t| (f64::from(r), f64::from(t)))
                    })
                    .collect();
                (pairs.len() >= seg.len() / 2)
                    .then(|| pearson(&pairs))
                    .flatten()
            })
            .fold(None, |best: Option<f64>, c| {
                Some(best.map_or(c, |b| b.max(c)))
            });
        // Segments of pure silence have no shape to compare.
        if let Some(c) = best {
            sum += c;
            segments += 1;
        }
    }
    assert!(segments > 0, "no voiced segment to compare");
    (sum / f64::from(segments), global.lag_frames)
}

/// Pearson correlation; `None` when either side is flat.
fn pearson(pairs: &[(f64, f64)]) -> Option<f64> {
    let n = pairs.len() as f64;
    let (sa, sb) = pairs
        .iter()
        .fold((0.0, 0.0), |(a, b), &(x, y)| (a + x, b + y));
    let (ma, mb) = (sa / n, sb / n);
    let (mut cov, mut va, mut vb) = (0.0, 0.0, 0.0);
    for &(x, y) in pairs {
        cov += (x - ma) * (y - mb);
        va += (x - ma) * (x - ma);
        vb += (y - mb) * (y - mb);
    }
    (va > 1e-9 && vb > 1e-9).then(|| cov / (va.sqrt() * vb.sqrt()))
}

/// A scratch directory for one test's files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("voxline-interop-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

fn opus_registry() -> PayloadRegistry {
    let mut registry = PayloadRegistry::new();
    registry
        .insert(
            111,
            PayloadFormat::Opus {
                pcm_rate: SampleRate::Hz48000,
            },
        )
        .expect("opus mapping");
    registry
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_sends_opus_and_the_endpoint_decodes_the_speech() {
    ffmpeg_support::ensure();
    let (rate, source) = caller_wav();
    let config = MediaConfig::new(opus_registry(), 111);
    let (endpoint, audio) = RtpEndpoint::bind("127.0.0.1:0".parse().expect("addr"), config)
        .await
        .expect("bind the endpoint");
    let target = endpoint.local_addr();

    let mut ffmpeg = AsyncCommand::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-nostdin",
            "-re",
            "-i",
        ])
        .arg(root().join("assets/caller.wav"))
        .args([
            "-c:a",
            "libopus",
            "-b:a",
            "24k",
            "-ar",
            "48000",
            "-ac",
            "1",
            "-payload_type",
            "111",
            "-f",
            "rtp",
        ])
        .arg(format!("rtp://{target}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start ffmpeg");

    // Collect decoded frames until ffmpeg is done, then let the jitter buffer drain.
    let mut frames: Vec<AudioFrame> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut ffmpeg_done = None;
    let mut drain_until = None;
    loop {
        if drain_until.is_some_and(|t| Instant::now() >= t) || Instant::now() >= deadline {
            break;
        }
        tokio::select! {
            status = ffmpeg.wait(), if ffmpeg_done.is_none() => {
                ffmpeg_done = Some(status.expect("wait for ffmpeg"));
                drain_until = Some(Instant::now() + Duration::from_millis(800));
            }
            frame = audio.received.recv() => match frame {
                Some(f) => frames.push(f),
                None => break,
            },
            _ = sleep(Duration::from_millis(50)) => {}
        }
    }
    let status = ffmpeg_done.expect("ffmpeg finished within 20 s");
    let mut stderr = String::new();
    if let Some(mut e) = ffmpeg.stderr.take() {
        use tokio::io::AsyncReadExt;
        let _ = e.read_to_string(&mut stderr).await;
    }
    assert!(status.success(), "ffmpeg failed ({status}): {stderr}");
    let stats = endpoint.close().await;

    // The stream: from the first to the last frame that came from a packet.
    let first = frames
        .iter()
        .position(|f| f.origin() == FrameOrigin::Received)
        .expect("the endpoint decoded audio from ffmpeg");
    let last = frames
        .iter()
        .rposition(|f| f.origin() != FrameOrigin::Generated)
        .unwrap_or(first);
    let decoded: Vec<i16> = frames[first..=last]
        .iter()
        .flat_map(|f| f.samples().iter().copied())
        .collect();
    let out_rate = frames[first].rate().hz();
    let source_s = source.len() as f64 / f64::from(rate);
    let decoded_s = decoded.len() as f64 / f64::from(out_rate);
    let src_voiced = voiced_frames(&source, rate);
    let dec_voiced = voiced_frames(&decoded, out_rate);
    let (correlation, lag) = speech_match(&source, rate, &decoded, out_rate);
    eprintln!(
        "ffmpeg → endpoint: {} packets, {} decoded / {} concealed / {} recovered frames, \
         jitter {:?}, jitter buffer {:?}; {decoded_s:.2} s decoded vs {source_s:.2} s source; \
         voiced frames {dec_voiced} vs {src_voiced}; envelope correlation {correlation:.3} \
         around lag {lag} frames",
        stats.inbound.audio_packets,
        stats.inbound.frames_decoded,
        stats.inbound.frames_concealed,
        stats.inbound.frames_recovered,
        stats.receiver.map(|r| r.jitter),
        stats.jitter_target_delay,
    );
    assert_eq!(
        stats.inbound.invalid, 0,
        "every packet parsed: {:?}",
        stats.inbound
    );
    assert_eq!(
        stats.receiver.map(|r| r.cumulative_lost),
        Some(0),
        "loopback loses nothing"
    );
    assert!(
        (decoded_s - source_s).abs() < 0.3,
        "decoded {decoded_s:.2} s of a {source_s:.2} s WAV"
    );
    assert!(
        dec_voiced as f64 >= 0.85 * src_voiced as f64,
        "voiced frames: {dec_voiced} decoded, {src_voiced} in the source"
    );
    assert!(
        correlation >= MIN_ENVELOPE_CORRELATION,
        "envelope correlation {correlation:.3}"
    );
}

/// Sends `assets/caller.wav` from an endpoint (payload type `pt` of `registry`) to ffmpeg,
/// which records 3 s through an SDP file; returns the recording at 16 kHz.
async fn ffmpeg_records_the_endpoint(
    name: &str,
    registry: PayloadRegistry,
    pt: u8,
    rtpmap: &str,
) -> Vec<i16> {
    ffmpeg_support::ensure();
    let dir = scratch(name);
    let port = ffmpeg_support::free_rtp_port();
    let sdp = dir.join("stream.sdp");
    let wav = dir.join("recorded.wav");
    std::fs::write(
        &sdp,
        format!(
            "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=voxline {name}\r\nc=IN IP4 127.0.0.1\r\n\
             t=0 0\r\nm=audio {port} RTP/AVP {pt}\r\na=rtpmap:{pt} {rtpmap}\r\n"
        ),
    )
    .expect("write the SDP file");
    let mut ffmpeg = AsyncCommand::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-nostdin",
            "-protocol_whitelist",
            "file,udp,rtp",
            "-i",
        ])
        .arg(&sdp)
        .args([
            "-t",
            "3",
            "-ar",
            "16000",
            "-ac",
            "1",
            "-c:a",
            "pcm_s16le",
            "-y",
        ])
        .arg(&wav)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start ffmpeg");

    // ffmpeg is listening once its RTP port is taken.
    let listening = Instant::now() + Duration::from_secs(10);
    while StdUdpSocket::bind(("127.0.0.1", port)).is_ok() {
        assert!(
            Instant::now() < listening,
            "ffmpeg did not open its RTP port {port} within 10 s"
        );
        sleep(Duration::from_millis(20)).await;
    }

    let mut config = MediaConfig::new(registry, pt);
    config.remote = Some(SocketAddr::from(([127, 0, 0, 1], port)));
    let (endpoint, audio) = RtpEndpoint::bind("127.0.0.1:0".parse().expect("addr"), config)
        .await
        .expect("bind the endpoint");
    // Feed the WAV like a TTS would: keep about half a second queued.
    let (rate, source) = caller_wav();
    let rate = SampleRate::from_hz(rate).expect("a supported rate");
    let feed = async {
        for chunk in source.chunks_exact(rate.frame_samples()) {
            while audio.send.len() >= 25 {
                sleep(Duration::from_millis(20)).await;
            }
            let frame = AudioFrame::from_samples(rate, chunk).expect("one frame");
            audio.send.push(frame);
        }
        // Then silence (the endpoint advances timestamps) until ffmpeg has its 3 s.
        std::future::pending::<()>().await;
    };
    let status = tokio::select! {
        status = timeout(Duration::from_secs(15), ffmpeg.wait()) => status,
        _ = feed => unreachable!("the feed never ends"),
    };
    let stats = endpoint.close().await;
    let mut stderr = String::new();
    if let Some(mut e) = ffmpeg.stderr.take() {
        use tokio::io::AsyncReadExt;
        let _ = timeout(Duration::from_secs(1), e.read_to_string(&mut stderr)).await;
    }
    let status = match status {
        Ok(s) => s.expect("wait for ffmpeg"),
        Err(_) => panic!("ffmpeg did not finish recording within 15 s: {stderr}"),
    };
    assert!(status.success(), "ffmpeg failed ({status}): {stderr}");
    assert!(stats.outbound.packets >= 150, "{:?}", stats.outbound);
    let (out_rate, recorded) = read_wav(&wav);
    assert_eq!(out_rate, 16_000);
    let _ = std::fs::remove_dir_all(&dir);
    recorded
}

/// Checks ffmpeg's recording of the endpoint against the first seconds of the source.
fn check_recording(name: &str, recorded: &[i16]) {
    let (rate, source) = caller_wav();
    let seconds = recorded.len() as f64 / 16_000.0;
    let reference = &source[..(rate as usize * 3).min(source.len())];
    let level = recorded
        .iter()
        .map(|&s| f64::from(s) * f64::from(s))
        .sum::<f64>()
        / recorded.len().max(1) as f64;
    let level_dbfs = 10.0 * (level / (32768.0 * 32768.0)).max(1e-12).log10();
    let src_voiced = voiced_frames(reference, rate);
    let rec_voiced = voiced_frames(recorded, 16_000);
    let (correlation, lag) = speech_match(reference, rate, recorded, 16_000);
    eprintln!(
        "endpoint → ffmpeg ({name}): {seconds:.2} s recorded, level {level_dbfs:.1} dBFS, \
         voiced frames {rec_voiced} vs {src_voiced} in the first 3 s of the source, \
         envelope correlation {correlation:.3} around lag {lag} frames"
    );
    assert!(
        (seconds - 3.0).abs() < 0.1,
        "ffmpeg recorded {seconds:.2} s, asked for 3 s"
    );
    assert!(
        level_dbfs > -35.0,
        "ffmpeg decoded {level_dbfs:.1} dBFS: not speech"
    );
    assert!(
        rec_voiced as f64 >= 0.8 * src_voiced as f64,
        "voiced frames: {rec_voiced} recorded, {src_voiced} sent"
    );
    assert!(
        correlation >= MIN_ENVELOPE_CORRELATION,
        "envelope correlation {correlation:.3}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_decodes_the_endpoints_opus() {
    let recorded = ffmpeg_records_the_endpoint("opus", opus_registry(), 111, "opus/48000/2").await;
    check_recording("Opus", &recorded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_decodes_the_endpoints_pcmu() {
    let recorded =
        ffmpeg_records_the_endpoint("pcmu", PayloadRegistry::new(), 0, "PCMU/8000").await;
    check_recording("PCMU", &recorded);
}

/// The envelope threshold tells this sentence from another one: the follow-up sentence
/// scores far below it against the caller's sentence (no ffmpeg needed).
#[test]
fn envelope_threshold_separates_different_speech() {
    let (rate, source) = caller_wav();
    let (frate, other) = read_wav(&root().join("assets/caller_followup.wav"));
    let (correlation, lag) = speech_match(&source[..(rate as usize * 3)], rate, &other, frate);
    eprintln!("caller vs follow-up sentence: correlation {correlation:.3} around lag {lag}");
    assert!(
        correlation < MIN_ENVELOPE_CORRELATION - 0.2,
        "different sentences must not match: {correlation:.3}"
    );
}
