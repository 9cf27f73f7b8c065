//! Load harness: N concurrent calls through the voxline engine in one process, over real UDP
//! sockets on 127.0.0.1, with the cost and latency of every call measured.
//!
//! ```sh
//! cargo run --release --example load -- --calls 150 --seconds 20
//! cargo run --release --example load -- --calls 500 --codec pcmu
//! cargo run --release --example load -- --calls 50 --scaling
//! ```
//!
//! **What runs.** Each call is an engine call — an `RtpPort` over a tokio `UdpSocket` driven by a
//! `new_call` task (media clock, jitter buffer, decode, VAD, turn-taking, barge-in, playout,
//! encode) — on a tokio runtime with `--threads` workers (default: one per core), facing a
//! simulated caller with its own socket on a separate runtime (`--caller-threads`, default 1).
//! The caller streams RTP in real time — Opus with a 48 kHz clock (`--codec opus`, the engine
//! encoding at complexity 5) or G.711 µ-law (`--codec pcmu`) — from a spoken WAV
//! (`assets/caller.wav`, 16 kHz mono, when present; else the synthetic voiced signal of
//! `voxline_engine::testkit`), encoded once up front. It decodes every agent packet to tell
//! audible agent audio from silence. Providers are the in-process scripted stand-ins with fixed
//! latencies (defaults: STT final 150 ms, LLM first token 200 ms + 10 ms per word, TTS first
//! byte 120 ms): there is no provider network cost in the measurement, and the report says so.
//!
//! **A call.** The agent greets (about 3.7 s); 600 ms after it stops, the caller talks for about
//! 3 s (± 0.5 s; with a WAV, to the next natural pause), then pauses with faint room noise; the
//! agent answers (about 2.9 s of TTS), and so on. Every second answer (`--barge-in-every`) is
//! interrupted: the caller starts talking 1 s into it. Call starts are spread over
//! `--stagger-ms` so their 20 ms clocks fall at different phases.
//!
//! **What is measured** (one JSON object on stdout):
//! - frames in/out/lost/concealed, and `deadline_misses`: ticks whose 20 ms frame left the engine
//!   more than 10 ms after it was due, from the driver's per-call lateness histogram, which also
//!   gives the pacing jitter p50/p99/max; `tick_work_ms_max` and `late_tick_work_ms_max`, the
//!   longest a tick's own work took (all ticks, late ticks): a late frame whose tick was quick
//!   waited for its thread;
//! - `cpu_per_call_second`: CPU of the engine runtime's threads (calls and provider stand-ins)
//!   per call-second, beside the whole process and the callers' threads; and
//!   `codec_floor_cpu_per_call_second`: after the load, the same frames through RTP parse, the
//!   decoder and VAD, and the resampler and encoder alone, on one thread — their ratio is
//!   `engine_to_floor_ratio`; with `--paced-floor-seconds S`, also that codec work paced as
//!   the calls are (each call's share every 20 ms at its own phase, on the engine's thread
//!   count, asleep in between) and `engine_to_paced_floor_ratio`;
//! - `rss_per_call_kib`: (peak RSS − RSS before the calls) / calls, from /proc/self/status
//!   (simulated callers included);
//! - voice-to-voice on the wire at the caller: its last speech packet sent → first audible agent
//!   packet received, split into the VAD hang-over and endpointing wait (from the call settings),
//!   the stand-ins' latencies and the engine's own share (the rest, `v2v_engine_ms_*`); barge-in:
//!   the caller's first speech packet sent → the agent silent at the caller (the last audible
//!   agent packet's arrival + its 20 ms), also relative to the point where the engine's rules
//!   decide on the interruption.
//!
//! The report also carries the RSS readings of the run (one a second; `rss_steady` is the
//! growth from 10 % into the run, after the last call started, to its end) and the latency
//! distributions behind the quantiles (`latency_histograms`), for `examples/load_plot.rs`.
//!
//! `--scaling` runs the same calls on 1 engine thread and on `--threads`, and reports the CPU
//! scaling efficiency. Exit status: 0 = no deadline misses, 1 = some call missed deadlines,
//! 2 = bad command line, 3 = the harness failed. `--help` lists every option.

#[path = "common/cpu.rs"]
mod cpu;
#[path = "load/harness.rs"]
mod harness;
#[path = "load/json.rs"]
mod json;

use std::process::ExitCode;

use harness::{Command, USAGE};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command_line = format!(
        "cargo run --release --example load --{}",
        args.iter()
            .map(|a| if a.contains(char::is_whitespace) {
                format!(" '{a}'")
            } else {
                format!(" {a}")
            })
            .collect::<String>()
    );
    let command = match harness::parse_args(args) {
        Ok(command) => command,
        Err(e) => {
            eprintln!("load: {e}\nusage: cargo run --release --example load -- [OPTIONS] (--help lists them)");
            return ExitCode::from(2);
        }
    };
    let (config, scaling) = match command {
        Command::Help => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Command::Run { config, scaling } => (config, scaling),
    };
    eprintln!(
        "load: {} {} call(s) for {} s on {} engine thread(s){}…",
        config.calls,
        config.codec.name(),
        config.seconds,
        config.threads,
        if scaling {
            " and on 1 thread (scaling)"
        } else {
            ""
        }
    );
    let command = Some(command_line);
    let outcome = if scaling {
        harness::run_scaling(&config).map(|mut r| {
            r.command = command;
            (json::to_string(&r), r.total_deadline_misses())
        })
    } else {
        harness::run(&config).map(|mut r| {
            r.command = command;
            (json::to_string(&r), r.deadline_misses)
        })
    };
    match outcome {
        Ok((Ok(json), misses)) => {
            println!("{json}");
            if misses > 0 {
                eprintln!("load: {misses} deadline miss(es): frames sent more than 10 ms late");
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Ok((Err(e), _)) => {
            eprintln!("load: cannot write the report: {e}");
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("load: {e}");
            ExitCode::from(3)
        }
    }
}
