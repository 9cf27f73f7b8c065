//! The standalone RTP endpoint: decoding, pacing, numbering and statistics on virtual time
//! over an in-memory transport, and symmetric RTP with foreign sources over real UDP.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::{sleep, Instant};
use voxline_codecs::{
    AudioFrame, FrameOrigin, PayloadFormat, PayloadRegistry, RtpPacket, SampleRate,
};
use voxline_engine::media::{
    EndpointOptions, InboundMedia, MediaConfig, MemoryTransport, OutboundMedia, PacketTransport,
    RtpEndpoint,
};
use voxline_engine::testkit::voiced_signal;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

fn opus_config() -> MediaConfig {
    let mut registry = PayloadRegistry::new();
    registry
        .insert(
            111,
            PayloadFormat::Opus {
                pcm_rate: SampleRate::Hz48000,
            },
        )
        .expect("opus mapping");
    MediaConfig::new(registry, 111)
}

/// Voiced 20 ms frames at `rate`, starting at frame `index`.
fn voiced_frame(rate: SampleRate, index: usize) -> AudioFrame {
    let mut f = AudioFrame::silent(rate);
    f.set_origin(FrameOrigin::Received);
    voiced_signal(rate, index * rate.frame_samples(), f.samples_mut());
    f
}

/// A received RTP packet's header fields.
#[derive(Clone, Copy, Debug)]
struct Seen {
    at: Duration,
    seq: u16,
    ts: u32,
    marker: bool,
}

/// Sends `frames` voiced frames as Opus every 20 ms over `transport` (dropping the indices in
/// `drop`), then keeps collecting for `tail`; returns the packets the far end sent back.
async fn run_client(
    mut transport: MemoryTransport,
    frames: usize,
    drop: &[usize],
    tail: Duration,
) -> (MemoryTransport, Vec<(Seen, Vec<u8>)>) {
    let mut config = opus_config();
    config.ssrc = 0x1234_5678;
    let mut out = OutboundMedia::new(&config).expect("outbound");
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut seen = Vec::new();
    let to = addr("10.0.0.2:5000");
    let mut i = 0;
    loop {
        tick.tick().await;
        let now = start.elapsed();
        if i < frames {
            let frame = voiced_frame(SampleRate::Hz48000, i);
            if let Some(p) = out.next_packet(Some(&frame)) {
                if !drop.contains(&i) {
                    transport.send_to(p, to).expect("memory send");
                }
            }
            i += 1;
        } else if now > Duration::from_millis(20 * frames as u64) + tail {
            break;
        }
        while let Some((pkt, _)) = transport.try_recv() {
            let p = RtpPacket::parse(&pkt).expect("endpoint sends valid RTP");
            seen.push((
                Seen {
                    at: now,
                    seq: p.sequence(),
                    ts: p.timestamp(),
                    marker: p.marker(),
                },
                pkt.clone(),
            ));
        }
    }
    (transport, seen)
}

#[tokio::test(start_paused = true)]
async fn echo_through_the_endpoint_keeps_the_audio_and_the_numbering() {
    let (endpoint_end, client_end) =
        MemoryTransport::pair(addr("10.0.0.2:5000"), addr("10.0.0.1:4000"));
    let mut config = opus_config();
    config.remote = Some(client_end.local_addr());
    let (endpoint, audio) = RtpEndpoint::with_transport(
        endpoint_end,
        addr("10.0.0.2:5000"),
        &config,
        EndpointOptions::default(),
    )
    .expect("endpoint");
    // The host echoes every decoded frame.
    let echo = tokio::spawn(async move {
        let mut levels = Vec::new();
        while let Some(frame) = audio.received.recv().await {
            levels.push((frame.origin(), frame.level_dbfs()));
            audio.send.push(frame);
        }
        levels
    });
    let (_pipe, seen) = run_client(client_end, 100, &[], Duration::from_millis(400)).await;
    let stats = endpoint.close().await;
    let levels = echo.await.expect("echo task");

    assert_eq!(stats.inbound.audio_packets, 100);
    assert_eq!(stats.inbound.frames_decoded, 100, "{stats:?}");
    assert_eq!(stats.inbound.frames_concealed, 0);
    let voiced = levels
        .iter()
        .filter(|(o, l)| *o == FrameOrigin::Received && *l > -30.0)
        .count();
    assert!(
        voiced >= 95,
        "decoded frames carry the voiced signal: {voiced}"
    );
    // After the stream ends, the ring keeps a 20 ms timeline with generated silence.
    assert!(levels.iter().any(|(o, _)| *o == FrameOrigin::Generated));
    assert_eq!(stats.frames_delivered as usize, levels.len());

    assert!(seen.len() >= 100, "echo packets: {}", seen.len());
    for w in seen.windows(2) {
        assert_eq!(
            w[1].0.seq,
            w[0].0.seq.wrapping_add(1),
            "continuous sequence"
        );
        assert_eq!(
            w[1].0.ts.wrapping_sub(w[0].0.ts),
            960,
            "one frame per packet"
        );
    }
    assert!(seen[0].0.marker, "the first packet starts a talk-spurt");
    // Paced: one packet per 20 ms tick, never a burst.
    let mut per_instant = std::collections::HashMap::new();
    for (s, _) in &seen {
        *per_instant.entry(s.at).or_insert(0) += 1;
    }
    assert!(per_instant.values().all(|&n| n == 1), "one packet per tick");
    assert_eq!(stats.late_ticks, 0);
    assert_eq!(stats.unsent, 0);

    // The echoed Opus decodes back to the voiced signal.
    let mut back = InboundMedia::new(&opus_config()).expect("inbound");
    let mut frame = AudioFrame::silent(SampleRate::Hz16000);
    let mut loud = 0;
    for (i, (s, pkt)) in seen.iter().enumerate() {
        back.on_datagram(s.at, addr("10.0.0.2:5000"), pkt);
        if back.next_frame(Duration::from_millis(20 * i as u64 + 200), &mut frame)
            && frame.level_dbfs() > -30.0
        {
            loud += 1;
        }
    }
    assert!(loud >= 80, "echo decodes to audio: {loud}");
}

#[tokio::test(start_paused = true)]
async fn timestamps_advance_through_silence_and_the_next_talk_spurt_is_marked() {
    let (endpoint_end, client_end) =
        MemoryTransport::pair(addr("10.0.0.2:5000"), addr("10.0.0.1:4000"));
    let mut config = opus_config();
    config.remote = Some(client_end.local_addr());
    let (endpoint, audio) = RtpEndpoint::with_transport(
        endpoint_end,
        addr("10.0.0.2:5000"),
        &config,
        EndpointOptions::default(),
    )
    .expect("endpoint");
    let mut client = client_end;
    for i in 0..10 {
        assert!(audio.send.push(voiced_frame(SampleRate::Hz24000, i)));
    }
    // Ticks run at 20, 40, … ms: the first ten take the frames, the next ten (220–400 ms)
    // find the ring empty, and the second batch (pushed between ticks) starts at 420 ms.
    sleep(Duration::from_millis(410)).await;
    for i in 10..20 {
        assert!(audio.send.push(voiced_frame(SampleRate::Hz24000, i)));
    }
    sleep(Duration::from_millis(400)).await;
    let stats = endpoint.close().await;

    let mut packets = Vec::new();
    while let Some((pkt, _)) = client.try_recv() {
        let p = RtpPacket::parse(&pkt).expect("valid RTP");
        packets.push((p.sequence(), p.timestamp(), p.marker()));
    }
    assert_eq!(packets.len(), 20, "{packets:?}");
    assert_eq!(stats.outbound.packets, 20);
    assert_eq!(stats.frames_taken, 20);
    assert!(packets[0].2, "first packet marked");
    let mut gaps = 0;
    for w in packets.windows(2) {
        let (s0, t0, _) = w[0];
        let (s1, t1, m1) = w[1];
        assert_eq!(s1, s0.wrapping_add(1), "no sequence gap across silence");
        let step = t1.wrapping_sub(t0);
        assert_eq!(step % 960, 0);
        if step > 960 {
            gaps += 1;
            // 400 ms = 20 ticks, 10 of them with audio: 10 silent ticks plus the frame itself.
            assert_eq!(step, 11 * 960, "timestamp kept advancing through silence");
            assert!(m1, "new talk-spurt carries the marker");
        } else {
            assert!(!m1, "no marker inside a talk-spurt");
        }
    }
    assert_eq!(gaps, 1);
}

#[tokio::test(start_paused = true)]
async fn losses_are_concealed_and_reported() {
    let (endpoint_end, client_end) =
        MemoryTransport::pair(addr("10.0.0.2:5000"), addr("10.0.0.1:4000"));
    let options = EndpointOptions {
        report_interval: Duration::from_secs(1),
        ..EndpointOptions::default()
    };
    let (endpoint, audio) =
        RtpEndpoint::with_transport(endpoint_end, addr("10.0.0.2:5000"), &opus_config(), options)
            .expect("endpoint");
    let collector = tokio::spawn(async move {
        let mut origins = Vec::new();
        while let Some(f) = audio.received.recv().await {
            origins.push(f.origin());
        }
        origins
    });
    // 5 % loss in single packets, then a burst of 3.
    let lost = [10, 30, 50, 70, 90, 120, 121, 122];
    let (_pipe, _) = run_client(client_end, 150, &lost, Duration::from_millis(300)).await;
    let mid = endpoint.stats();
    assert!(mid.receiver.is_some());
    let stats = endpoint.close().await;
    let origins = collector.await.expect("collector");

    let rx = stats.receiver.expect("receiver report");
    assert_eq!(rx.ssrc, 0x1234_5678);
    assert_eq!(rx.expected, 150);
    assert_eq!(rx.received, 142);
    assert_eq!(rx.cumulative_lost, 8);
    assert_eq!(rx.duplicates, 0);
    // Each single loss is rebuilt from the next packet's FEC. The first one comes before the
    // buffer keeps any look-ahead: its tick waits (a silent filler on the timeline) for the
    // next packet, and from then on the buffer keeps 40 ms. The burst of three outlasts that:
    // the jitter buffer sees nothing buffered (an underrun, which it cannot tell from a pause)
    // until the packet after it arrives, and then FEC rebuilds the last one.
    let lossy = stats.inbound.frames_concealed + stats.inbound.frames_recovered;
    assert!((6..=8).contains(&lossy), "{:?}", stats.inbound);
    assert!(
        stats.inbound.frames_recovered >= 6,
        "losses recovered from FEC: {:?}",
        stats.inbound
    );
    assert_eq!(stats.inbound.frames_decoded, 142);
    let filled = origins.iter().filter(|o| o.is_loss()).count() as u64;
    assert_eq!(filled, lossy);
    // The 20 ms timeline stays whole: decoded, rebuilt and filled frames cover all 150, plus
    // the one tick the first loss waited (nothing was dropped to make up for it).
    let first = origins
        .iter()
        .position(|o| *o == FrameOrigin::Received)
        .expect("audio");
    let last = origins
        .iter()
        .rposition(|o| *o == FrameOrigin::Received)
        .expect("audio");
    assert_eq!(last - first + 1, 151);
    let waited = origins[first..=last]
        .iter()
        .filter(|o| **o == FrameOrigin::Generated)
        .count();
    // Fillers: the first loss's wait, and the burst's first two packets (underruns).
    assert_eq!(waited, 3, "{:?}", stats.inbound);
    assert!(stats.jitter_target_delay.is_some());
    // No network jitter on virtual time: the A.8 estimate stays at zero.
    assert_eq!(rx.jitter, Duration::ZERO);
}

#[tokio::test]
async fn symmetric_rtp_learns_the_source_and_ignores_intruders() {
    let (endpoint, audio) = RtpEndpoint::bind(addr("127.0.0.1:0"), opus_config())
        .await
        .expect("bind");
    let target = endpoint.local_addr();
    let caller = UdpSocket::bind("127.0.0.1:0").await.expect("caller socket");
    let intruder = UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("intruder socket");

    let mut caller_cfg = opus_config();
    caller_cfg.ssrc = 1;
    let mut caller_out = OutboundMedia::new(&caller_cfg).expect("caller media");
    let mut other_cfg = opus_config();
    other_cfg.ssrc = 2;
    let mut other_out = OutboundMedia::new(&other_cfg).expect("other media");

    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for i in 0..25 {
        tick.tick().await;
        let frame = voiced_frame(SampleRate::Hz48000, i);
        if let Some(p) = caller_out.next_packet(Some(&frame)) {
            caller.send_to(p, target).await.expect("send");
        }
        if i >= 5 {
            // Another SSRC from the caller's own address, and anything from elsewhere.
            if let Some(p) = other_out.next_packet(Some(&frame)) {
                caller.send_to(p, target).await.expect("send");
                intruder.send_to(p, target).await.expect("send");
            }
            audio.send.push(frame);
        }
    }
    sleep(Duration::from_millis(200)).await;
    let stats = endpoint.close().await;

    assert_eq!(
        stats.remote,
        Some(caller.local_addr().expect("caller addr"))
    );
    assert_eq!(stats.inbound.audio_packets, 25);
    assert_eq!(stats.inbound.foreign_ssrc, 20, "{:?}", stats.inbound);
    assert_eq!(stats.inbound.wrong_source, 20, "{:?}", stats.inbound);
    assert_eq!(stats.receiver.map(|r| r.ssrc), Some(1));

    // The endpoint's audio went to the learned source only.
    let mut buf = [0u8; 1500];
    let mut to_caller = 0;
    while let Ok(Ok((n, from))) =
        tokio::time::timeout(Duration::from_millis(50), caller.recv_from(&mut buf)).await
    {
        assert_eq!(from, target);
        assert!(RtpPacket::parse(&buf[..n]).is_ok());
        to_caller += 1;
    }
    assert!(to_caller >= 15, "agent packets at the caller: {to_caller}");
    let intruder_got =
        tokio::time::timeout(Duration::from_millis(50), intruder.recv_from(&mut buf)).await;
    assert!(intruder_got.is_err(), "nothing sent to the intruder");
}

#[tokio::test]
async fn bad_config_is_a_typed_error_and_drop_stops_the_task() {
    let err = RtpEndpoint::bind(
        addr("127.0.0.1:0"),
        MediaConfig::new(PayloadRegistry::new(), 96),
    )
    .await
    .expect_err("payload type 96 is not negotiated");
    assert!(err.to_string().contains("96"), "{err}");
    let io: std::io::Error = err.into();
    assert_eq!(io.kind(), std::io::ErrorKind::InvalidInput);

    let (endpoint, audio) = RtpEndpoint::bind(addr("127.0.0.1:0"), opus_config())
        .await
        .expect("bind");
    assert!(endpoint.is_running());
    drop(endpoint);
    // The task ends and the rings report it.
    let ended = tokio::time::timeout(Duration::from_secs(2), audio.received.recv()).await;
    assert_eq!(ended.ok().flatten().map(|f| f.rate()), None);
}

#[tokio::test(start_paused = true)]
async fn key_presses_reach_the_dtmf_ring() {
    use voxline_codecs::rtp::SenderConfig;
    use voxline_codecs::{DtmfSender, RtpSender};

    let (endpoint_end, mut client) =
        MemoryTransport::pair(addr("10.0.0.2:5000"), addr("10.0.0.1:4000"));
    let mut registry = PayloadRegistry::new();
    registry
        .insert(101, PayloadFormat::TelephoneEvent { clock_rate: 8000 })
        .expect("telephone-event mapping");
    let (endpoint, audio) = RtpEndpoint::with_transport(
        endpoint_end,
        addr("10.0.0.2:5000"),
        &MediaConfig::new(registry, 0),
        EndpointOptions::default(),
    )
    .expect("endpoint");
    let mut tx = RtpSender::new(SenderConfig {
        ssrc: 7,
        payload_type: 0,
        initial_sequence: 100,
        initial_timestamp: 8000,
        ticks_per_frame: 160,
    })
    .expect("sender");
    let mut buf = [0u8; 256];
    let to = addr("10.0.0.2:5000");
    // Some PCMU audio first, so the stream is known, then the key '5' for 100 ms.
    for _ in 0..5 {
        let n = tx.write_frame(&[0xFF; 160], &mut buf).expect("write");
        client.send_to(&buf[..n], to).expect("send");
        sleep(Duration::from_millis(20)).await;
    }
    let start_ts = tx.next_timestamp();
    let tone = DtmfSender::new(8000)
        .expect("dtmf sender")
        .tone('5', Duration::from_millis(100), start_ts)
        .expect("tone");
    let mut sent_at = 0;
    for packet in tone {
        let wait = packet.send_offset.saturating_sub(sent_at);
        sleep(Duration::from_micros(u64::from(wait) * 125)).await;
        sent_at = packet.send_offset;
        let n = tx
            .write_event(
                101,
                packet.marker,
                packet.timestamp,
                &packet.payload(),
                &mut buf,
            )
            .expect("write event");
        client.send_to(&buf[..n], to).expect("send");
    }
    let digit = tokio::time::timeout(Duration::from_secs(1), audio.dtmf.recv())
        .await
        .expect("a key press within 1 s");
    assert_eq!(digit, Some('5'));
    let stats = endpoint.close().await;
    assert_eq!(stats.inbound.dtmf_events, 1, "{:?}", stats.inbound);
    assert!(audio.dtmf.try_pop().is_none(), "one press, reported once");
}

/// Feeds 150 in-order PCMU packets (quiet room noise or voice) to inbound media that starts
/// with 100 ms of delay, one tick per packet; returns the counters and the final delay.
fn shrink_run(loud: bool) -> (voxline_engine::media::InboundCounters, Duration) {
    let mut registry = PayloadRegistry::new();
    registry
        .insert(0, PayloadFormat::Pcmu)
        .expect("pcmu mapping");
    let mut config = MediaConfig::new(registry, 0);
    config.jitter_delay = (
        Duration::from_millis(10),
        Duration::from_millis(100),
        Duration::from_millis(200),
    );
    let mut sender = OutboundMedia::new(&config).expect("outbound");
    let mut inbound = InboundMedia::new(&config).expect("inbound");
    let from = addr("10.0.0.1:4000");
    let mut out = AudioFrame::silent(SampleRate::Hz8000);
    for i in 0..150usize {
        let now = Duration::from_millis(20 * i as u64);
        let frame = if loud {
            voiced_frame(SampleRate::Hz8000, i)
        } else {
            let mut f = AudioFrame::silent(SampleRate::Hz8000);
            f.set_origin(FrameOrigin::Received);
            for (k, s) in f.samples_mut().iter_mut().enumerate() {
                *s = if (k + i) % 2 == 0 { 12 } else { -12 };
            }
            f
        };
        let packet = sender
            .next_packet(Some(&frame))
            .expect("a packet per frame");
        inbound.on_datagram(now, from, packet);
        inbound.next_frame(now + Duration::from_millis(1), &mut out);
    }
    let delay = inbound.jitter_stats().expect("jitter buffer").playout_delay;
    (inbound.counters(), delay)
}

#[test]
fn surplus_delay_is_shed_in_pauses_and_never_in_voice() {
    // Room noise: once the buffer has measured that there is no jitter, the quiet frames it
    // asks to shorten are dropped until the delay is back near its target.
    let (quiet, delay) = shrink_run(false);
    assert!(quiet.frames_shortened >= 3, "{quiet:?}");
    assert!(delay <= Duration::from_millis(40), "{delay:?}");
    // Voice: nothing is dropped; the delay stays.
    let (voice, delay) = shrink_run(true);
    assert_eq!(voice.frames_shortened, 0, "{voice:?}");
    assert!(delay >= Duration::from_millis(80), "{delay:?}");
}

#[test]
fn shedding_load_lowers_the_opus_complexity_and_gives_it_back() {
    let config = opus_config();
    let mut out = OutboundMedia::new(&config).expect("opus outbound");
    let rate = out.codec_rate();
    assert_eq!(out.opus_complexity(), Some(config.opus.complexity));
    let mut sent = 0;
    for i in 0..150 {
        match i {
            50 => out.set_load_shedding(true),
            100 => out.set_load_shedding(false),
            _ => {}
        }
        let want = if (50..100).contains(&i) {
            config.opus_shed_complexity
        } else {
            config.opus.complexity
        };
        assert_eq!(out.opus_complexity(), Some(want), "frame {i}");
        assert_eq!(out.is_shedding_load(), (50..100).contains(&i));
        if out.next_packet(Some(&voiced_frame(rate, i))).is_some() {
            sent += 1;
        }
    }
    // Every frame went out whatever the complexity, and no change failed.
    assert_eq!(sent, 150);
    assert_eq!(out.counters().encode_errors, 0);

    // G.711 costs next to nothing: there is no complexity to lower.
    let mut registry = PayloadRegistry::new();
    registry
        .insert(0, PayloadFormat::Pcmu)
        .expect("pcmu mapping");
    let mut pcmu = OutboundMedia::new(&MediaConfig::new(registry, 0)).expect("pcmu outbound");
    pcmu.set_load_shedding(true);
    assert_eq!(pcmu.opus_complexity(), None);
    assert!(pcmu.is_shedding_load());

    // A shed complexity libopus does not have is refused when the media is built.
    let bad = MediaConfig {
        opus_shed_complexity: 11,
        ..opus_config()
    };
    assert!(OutboundMedia::new(&bad).is_err());
    // A G.711 line has no Opus encoder, so its Opus settings are not its concern.
    let mut registry = PayloadRegistry::new();
    registry
        .insert(0, PayloadFormat::Pcmu)
        .expect("pcmu mapping");
    let pcmu_bad = MediaConfig {
        opus_shed_complexity: 11,
        ..MediaConfig::new(registry, 0)
    };
    assert!(OutboundMedia::new(&pcmu_bad).is_ok());
}
