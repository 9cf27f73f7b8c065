//! What the ffmpeg tests share: making sure ffmpeg with libopus is there (installing it through
//! `scripts/setup.sh` when it is not) and finding RTP port pairs on 127.0.0.1.

use std::net::UdpSocket;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// Makes sure ffmpeg with the libopus encoder runs, installing it through `scripts/setup.sh`
/// when it does not; panics with the reason otherwise (the tests must not pass silently).
pub fn ensure() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
        if usable().is_ok() {
            return Ok(());
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let setup = root.join("scripts/setup.sh");
        let out = Command::new("bash")
            .arg(&setup)
            .current_dir(root)
            .output()
            .map_err(|e| format!("cannot run {}: {e}", setup.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{} failed ({}): {}",
                setup.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        usable()
    });
    if let Err(why) = ready {
        panic!(
            "these tests need ffmpeg with libopus and it is not usable: {why}. \
             Run ./scripts/setup.sh as root (or install the Debian package ffmpeg) and re-run."
        );
    }
}

fn usable() -> Result<(), String> {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-encoders"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot start ffmpeg: {e}"))?;
    if !out.status.success() {
        return Err(format!("ffmpeg -encoders failed: {}", out.status));
    }
    if !String::from_utf8_lossy(&out.stdout).contains("libopus") {
        return Err("this ffmpeg has no libopus encoder".into());
    }
    Ok(())
}

/// An even UDP port on 127.0.0.1 whose successor is free too (RTP and RTCP for ffmpeg).
pub fn free_rtp_port() -> u16 {
    for _ in 0..200 {
        let Ok(a) = UdpSocket::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(port) = a.local_addr().map(|a| a.port()) else {
            continue;
        };
        if port % 2 == 0 && port < u16::MAX && UdpSocket::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no free pair of UDP ports on 127.0.0.1");
}
