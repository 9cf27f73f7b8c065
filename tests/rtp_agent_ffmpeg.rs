//! The `rtp_agent` example against ffmpeg as the caller, over real UDP on 127.0.0.1.
//!
//! One ffmpeg records what the agent sends, through an SDP file; the agent runs the dental
//! assistant with `--remote` pointing at that recorder and greets; once the greeting is over,
//! a second ffmpeg sends `assets/caller.wav` (then silence, as a phone keeps sending while its
//! user listens) as RTP to the agent and stops. The agent hears the request, calls the booking
//! tool, answers, and hangs up when the caller's RTP has stopped for `--idle-seconds`. Checked:
//! the event log holds the caller's transcript and the agent's reply, and ffmpeg's recording
//! holds real audio as long as what the agent said. Once over Opus, once over PCMU (8 kHz
//! G.711, as most phone trunks send).
//!
//! Providers: the real offline ones, as a newcomer without keys gets them — PocketSphinx with
//! the assistant's domain language model hears ffmpeg's audio, the scripted agent answers,
//! espeak-ng speaks. Over PCMU the recogniser gets telephone-band audio and hears less (see
//! `pocketsphinx_accuracy_report` in the providers' tests), so that run checks for a
//! transcript and a reply, and the Opus run for the booking too.
//!
//! ffmpeg is a system package: when it is missing the set-up runs `scripts/setup.sh`, and when
//! it still cannot run, the tests fail saying so. Each takes about 25 s of real time.

#[allow(dead_code)]
#[path = "../examples/rtp_agent.rs"]
mod rtp_agent;

#[path = "support/ffmpeg.rs"]
mod ffmpeg_support;

use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command as AsyncCommand};
use tokio::time::{sleep, timeout, Instant};
use voxline::engine::call::EndReason;

/// What `assets/caller.wav` says (assets/README.md).
const CALLER_SAYS: &str =
    "hello i would like to book a cleaning for tuesday at ten o'clock please my name is john smith";

/// Seconds of espeak-ng speech per character of text, at most and at least: the agent's
/// voice at its default rate is about 0.07.
const SECONDS_PER_CHAR: (f64, f64) = (0.03, 0.12);

/// Silence ffmpeg keeps sending after the caller's sentence, while the agent answers.
const LISTEN_SECONDS: u32 = 16;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("voxline-rtp-agent-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

fn ffmpeg(args: &[&str]) -> AsyncCommand {
    let mut cmd = AsyncCommand::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

async fn stderr_of(child: &mut Child) -> String {
    let mut text = String::new();
    if let Some(mut e) = child.stderr.take() {
        use tokio::io::AsyncReadExt;
        let _ = timeout(Duration::from_secs(1), e.read_to_string(&mut text)).await;
    }
    text
}

fn read_events(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Seconds of 20 ms frames louder than -45 dBFS, and their mean level in dBFS.
fn voiced(samples: &[i16], rate: u32) -> (f64, f64) {
    let frame = (rate / 50) as usize;
    let levels: Vec<f64> = samples
        .chunks_exact(frame)
        .map(|c| {
            let p = c.iter().map(|&s| f64::from(s) * f64::from(s)).sum::<f64>() / frame as f64;
            10.0 * (p / (32768.0 * 32768.0)).max(1e-12).log10()
        })
        .filter(|&db| db > -45.0)
        .collect();
    let mean = levels.iter().sum::<f64>() / levels.len().max(1) as f64;
    (levels.len() as f64 * 0.02, mean)
}

/// `assets/caller.wav` followed by [`LISTEN_SECONDS`] of silence, as a WAV in `dir` (ffmpeg's
/// `-re` paces its input, not what a filter adds after it, so the silence is rendered first).
async fn caller_with_silence(dir: &Path) -> PathBuf {
    let out = dir.join("caller_then_silence.wav");
    let pad = format!("apad=pad_dur={LISTEN_SECONDS}");
    let mut render = ffmpeg(&["-nostdin", "-i"])
        .arg(root().join("assets/caller.wav"))
        .args(["-af", &pad, "-y"])
        .arg(&out)
        .stdin(Stdio::null())
        .spawn()
        .expect("start ffmpeg");
    let status = render.wait().await.expect("wait for ffmpeg");
    let err = stderr_of(&mut render).await;
    assert!(
        status.success(),
        "ffmpeg could not pad the WAV ({status}): {err}"
    );
    out
}

/// The whole exchange for one codec; `send` are ffmpeg's encoder options for the caller.
async fn call_with_ffmpeg(
    name: &str,
    codec: rtp_agent::Codec,
    pt: u8,
    rtpmap: &str,
    send: &[&str],
) {
    ffmpeg_support::ensure();
    let dir = scratch(name);
    let port = ffmpeg_support::free_rtp_port();
    let sdp = dir.join("agent.sdp");
    let recorded = dir.join("agent.wav");
    std::fs::write(
        &sdp,
        format!(
            "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=voxline rtp_agent\r\nc=IN IP4 127.0.0.1\r\n\
             t=0 0\r\nm=audio {port} RTP/AVP {pt}\r\na=rtpmap:{pt} {rtpmap}\r\n"
        ),
    )
    .expect("write the SDP file");

    // ffmpeg records the agent; it quits on `q` from stdin.
    let mut recorder = ffmpeg(&["-protocol_whitelist", "file,udp,rtp", "-i"])
        .arg(&sdp)
        .args(["-ar", "16000", "-ac", "1", "-c:a", "pcm_s16le", "-y"])
        .arg(&recorded)
        .stdin(Stdio::piped())
        .spawn()
        .expect("start the recording ffmpeg");
    let listening = Instant::now() + Duration::from_secs(10);
    while StdUdpSocket::bind(("127.0.0.1", port)).is_ok() {
        assert!(
            Instant::now() < listening,
            "ffmpeg did not open port {port}"
        );
        sleep(Duration::from_millis(20)).await;
    }

    let events = dir.join("events.jsonl");
    let args = rtp_agent::Args {
        listen: "127.0.0.1:0".parse().expect("address"),
        remote: Some(SocketAddr::from(([127, 0, 0, 1], port))),
        codec,
        payload_type: Some(pt),
        events: Some(events.clone()),
        out: dir.join("out"),
        max_seconds: 90.0,
        idle_seconds: 3.0,
        ..rtp_agent::Args::default()
    };
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let agent = rtp_agent::run(&args, voxline::offline_standins(), move |addr| {
        let _ = ready_tx.send(addr);
    });

    let caller = async {
        let agent_addr = ready_rx.await.expect("the agent is listening");
        // The caller speaks once the greeting is over.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !read_events(&events)
            .iter()
            .any(|e| e["type"] == "agent-speech-stopped")
        {
            assert!(Instant::now() < deadline, "no greeting within 20 s");
            sleep(Duration::from_millis(50)).await;
        }
        let wav = caller_with_silence(&dir).await;
        let mut sender = ffmpeg(&["-nostdin", "-re", "-i"])
            .arg(&wav)
            .args(send)
            .args(["-payload_type", &pt.to_string(), "-f", "rtp"])
            .arg(format!("rtp://{agent_addr}"))
            .stdin(Stdio::null())
            .spawn()
            .expect("start the sending ffmpeg");
        let status = timeout(Duration::from_secs(40), sender.wait())
            .await
            .expect("the caller's ffmpeg finishes")
            .expect("wait for ffmpeg");
        let err = stderr_of(&mut sender).await;
        assert!(status.success(), "sending ffmpeg failed ({status}): {err}");
    };
    let (run, ()) = tokio::join!(timeout(Duration::from_secs(90), agent), caller);
    let run = run
        .expect("the agent ends the call within 90 s")
        .expect("the agent ran");

    // Let the recorder take the last packets, then stop it.
    sleep(Duration::from_millis(500)).await;
    if let Some(mut stdin) = recorder.stdin.take() {
        let _ = stdin.write_all(b"q\n").await;
    }
    let status = match timeout(Duration::from_secs(10), recorder.wait()).await {
        Ok(s) => s.expect("wait for ffmpeg"),
        Err(_) => {
            let _ = recorder.kill().await;
            panic!("the recording ffmpeg did not stop");
        }
    };
    let err = stderr_of(&mut recorder).await;
    assert!(
        status.success(),
        "recording ffmpeg failed ({status}): {err}"
    );

    // The call: the peer went quiet, so the agent hung up for the caller.
    assert_eq!(run.outcome.end_reason, EndReason::UserHangup);
    assert!(
        run.datagrams > 250,
        "{} datagrams from ffmpeg",
        run.datagrams
    );

    // The event log: the caller's words (recognised in the real audio) and the agent's reply.
    let log = read_events(&events);
    let heard: Vec<&str> = log
        .iter()
        .filter(|e| e["type"] == "message" && e["role"] == "user")
        .filter_map(|e| e["content"].as_str())
        .collect();
    let reference: Vec<&str> = CALLER_SAYS.split_whitespace().collect();
    let recognised = heard
        .iter()
        .flat_map(|t| t.split_whitespace())
        .filter(|w| reference.contains(w))
        .count();
    eprintln!("{name}: the agent heard {heard:?}");
    assert!(!heard.is_empty(), "a caller transcript: {log:#?}");
    let first_heard = log
        .iter()
        .position(|e| e["type"] == "message" && e["role"] == "user")
        .unwrap_or(log.len());
    assert!(
        log[first_heard..]
            .iter()
            .any(|e| e["type"] == "message" && e["role"] == "assistant"),
        "the agent replied: {log:#?}"
    );
    if name == "opus" {
        assert!(
            recognised >= 12,
            "{recognised} words of {CALLER_SAYS:?} in {heard:?}"
        );
        let call = log
            .iter()
            .find(|e| e["type"] == "tool-call" && e["name"] == "book_appointment")
            .unwrap_or_else(|| panic!("the booking tool was called: {log:#?}"));
        assert_eq!(call["arguments"]["day"], "Tuesday");
        assert!(log.iter().any(|e| e["type"] == "message"
            && e["role"] == "assistant"
            && e["content"]
                .as_str()
                .is_some_and(|t| t.starts_with("You're booked in"))));
    } else {
        assert!(
            recognised >= 3,
            "{recognised} words of {CALLER_SAYS:?} in {heard:?}"
        );
    }
    assert!(
        !log.iter().any(|e| e["type"] == "agent-interrupted"),
        "nobody talked over the agent: {log:#?}"
    );
    let agent_chars: usize = log
        .iter()
        .filter(|e| e["type"] == "message" && e["role"] == "assistant")
        .filter_map(|e| e["content"].as_str())
        .map(|t| t.chars().count())
        .sum();

    // ffmpeg's recording of the agent: real audio, as long as what the agent said.
    let mut reader = hound::WavReader::open(&recorded).expect("ffmpeg wrote a WAV");
    let spec = reader.spec();
    assert_eq!((spec.channels, spec.sample_rate), (1, 16_000));
    let samples: Vec<i16> = reader
        .samples::<i16>()
        .map(|s| s.expect("sample"))
        .collect();
    let (voiced_s, level) = voiced(&samples, 16_000);
    // What the agent itself recorded of its voice (the right channel of its recording).
    let mut own = hound::WavReader::open(dir.join("out/recording.wav")).expect("recording.wav");
    let own: Vec<i16> = own
        .samples::<i16>()
        .map(|s| s.expect("sample"))
        .skip(1)
        .step_by(2)
        .collect();
    let (own_s, _) = voiced(&own, 16_000);
    eprintln!(
        "{name}: ffmpeg recorded {:.1} s; {voiced_s:.1} s voiced at {level:.1} dBFS; the agent \
         recorded {own_s:.1} s of its voice for {agent_chars} characters; {} events",
        samples.len() as f64 / 16_000.0,
        run.events_logged
    );
    assert!(
        (voiced_s - own_s).abs() <= 0.1 * own_s + 0.2,
        "the peer heard {voiced_s:.1} s of voice, the agent sent {own_s:.1} s"
    );
    let (least, most) = SECONDS_PER_CHAR;
    assert!(
        voiced_s >= least * agent_chars as f64 && voiced_s <= most * agent_chars as f64,
        "{voiced_s:.1} s of voiced audio for {agent_chars} characters of speech"
    );
    assert!(level > -30.0, "voiced frames at {level:.1} dBFS");

    // The webhook bodies and the agent's own recording.
    let out = dir.join("out");
    for file in [
        "assistant-request.json",
        "status-update-1.json",
        "status-update-2.json",
        "end-of-call-report.json",
        "recording.wav",
    ] {
        assert!(out.join(file).is_file(), "{file} in {}", out.display());
    }
    if name == "opus" {
        assert!(
            out.join("tool-calls-1.json").is_file(),
            "the booking's webhook"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtp_agent_talks_with_ffmpeg_over_opus() {
    call_with_ffmpeg(
        "opus",
        rtp_agent::Codec::Opus,
        111,
        "opus/48000/2",
        &["-c:a", "libopus", "-b:a", "24k", "-ar", "48000", "-ac", "1"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtp_agent_talks_with_ffmpeg_over_pcmu() {
    call_with_ffmpeg(
        "pcmu",
        rtp_agent::Codec::Pcmu,
        0,
        "PCMU/8000",
        // 20 ms packets, as trunks send (ffmpeg's default would be 128 ms).
        &[
            "-af",
            "aresample=8000,asetnsamples=n=160:p=0",
            "-c:a",
            "pcm_mulaw",
            "-ar",
            "8000",
            "-ac",
            "1",
        ],
    )
    .await;
}
