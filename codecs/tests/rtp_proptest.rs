//! Property tests for the RTP path: hostile bytes never panic the parser, the source tracker,
//! the statistics or the DTMF decoder, and what the writer builds parses back unchanged.

use std::time::Duration;

use proptest::prelude::*;
use voxline_codecs::dtmf::{DtmfReceiver, DtmfSender, TelephoneEvent};
use voxline_codecs::registry::parse_rtpmap;
use voxline_codecs::rtp::{
    Continuity, RtpHeader, RtpPacket, RtpSource, RtpWriter, SourceConfig, SourceOutcome,
    HEADER_LEN, MAX_CSRCS,
};
use voxline_codecs::stats::ReceiverStats;
use voxline_codecs::SampleRate;

/// Bytes biased towards version-2 packets so the deeper parse paths get exercised.
fn packet_bytes() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<u8>(),
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), 0..160),
    )
        .prop_map(|(first, force_v2, rest)| {
            let first = if force_v2 {
                (first & 0x3F) | 0x80
            } else {
                first
            };
            let mut v = Vec::with_capacity(rest.len() + 1);
            v.push(first);
            v.extend_from_slice(&rest);
            v
        })
}

fn rtp_header() -> impl Strategy<Value = RtpHeader> {
    (
        any::<bool>(),
        0u8..=127,
        any::<u16>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(
            |(marker, payload_type, sequence, timestamp, ssrc)| RtpHeader {
                marker,
                payload_type,
                sequence,
                timestamp,
                ssrc,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parser_never_panics_and_views_are_consistent(bytes in packet_bytes()) {
        if let Ok(p) = RtpPacket::parse(&bytes) {
            let ext_len = p.extension().map_or(0, |e| 4 + e.data.len());
            let total = HEADER_LEN + 4 * p.csrc_count() + ext_len + p.payload().len()
                + usize::from(p.padding());
            prop_assert_eq!(total, bytes.len());
            prop_assert!(p.payload_type() <= 127);
            prop_assert!(p.csrc_count() <= MAX_CSRCS);
            prop_assert_eq!(p.csrcs().count(), p.csrc_count());
        }
    }

    #[test]
    fn hostile_streams_never_panic_the_receive_path(
        packets in proptest::collection::vec((packet_bytes(), any::<u32>(), any::<u32>()), 1..40),
        probation in 0u32..4,
    ) {
        let mut cfg = SourceConfig::new(8000);
        cfg.ssrc_probation = probation;
        cfg.untimed_payload_type = Some(101);
        let mut source = RtpSource::new(cfg);
        let mut dtmf = DtmfReceiver::new(8000);
        let mut now = Duration::ZERO;
        let mut accepted = 0u64;
        for (bytes, arrival, step_us) in &packets {
            now += Duration::from_micros(u64::from(*step_us % 100_000));
            let Ok(p) = RtpPacket::parse(bytes) else { continue };
            match source.receive(&p.header(), *arrival) {
                SourceOutcome::Accepted(r) => {
                    accepted += 1;
                    if r.continuity != Continuity::Continuous {
                        accepted = 1;
                    }
                }
                SourceOutcome::ForeignSsrc { .. } | SourceOutcome::SequenceJump { .. } => {}
            }
            for ev in dtmf.on_packet(p.timestamp(), p.payload(), now).into_iter().flatten() {
                prop_assert!(ev.duration_ticks <= 0xFFFF * 64);
            }
            let _ = dtmf.poll_timeout(now);
            let _ = source.report_block(now);
        }
        // Since the last (re)start, every accepted packet is counted as received, nothing else.
        prop_assert_eq!(source.stats().received(), accepted);
    }

    #[test]
    fn stats_never_panic_on_arbitrary_input(
        records in proptest::collection::vec((any::<u64>(), any::<u32>(), any::<u32>(), any::<bool>()), 0..64),
        ntp in any::<u64>(),
        clock in any::<u32>(),
    ) {
        let mut stats = ReceiverStats::new(clock);
        for (seq, ts, arrival, timed) in records {
            // Keep extended numbers within the tracker's 48-bit range, as SeqUnwrapper produces.
            let seq = seq >> 16;
            if timed {
                let _ = stats.record(seq, ts, arrival);
            } else {
                let _ = stats.record_untimed(seq);
            }
            stats.on_sender_report(ntp, Duration::from_nanos(u64::from(arrival)));
            let rb = stats.report_block(Duration::from_secs(u64::from(ts)));
            prop_assert!(rb.cumulative_lost >= -0x80_0000 && rb.cumulative_lost <= 0x7F_FFFF);
        }
        let _ = stats.jitter();
    }

    #[test]
    fn dtmf_payload_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..12)) {
        if let Ok(ev) = TelephoneEvent::decode(&bytes) {
            prop_assert_eq!(bytes.len(), 4);
            prop_assert_eq!(TelephoneEvent::decode(&ev.encode()), Ok(ev));
        }
    }

    #[test]
    fn rtpmap_parser_never_panics(line in "\\PC{0,60}", tail in "[ -~]{0,30}") {
        let _ = parse_rtpmap(&line, SampleRate::Hz48000);
        let _ = parse_rtpmap(&format!("a=rtpmap:{tail}"), SampleRate::Hz16000);
    }

    #[test]
    fn build_then_parse_round_trips(
        header in rtp_header(),
        csrcs in proptest::collection::vec(any::<u32>(), 0..=MAX_CSRCS),
        extension in proptest::option::of((any::<u16>(), proptest::collection::vec(any::<u8>(), 0..16))),
        pad_to in proptest::option::of(2u8..=255),
        payload in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let ext_data: Vec<u8> = extension
            .as_ref()
            .map(|(_, words)| words.iter().flat_map(|&b| [b, b ^ 1, b ^ 2, b ^ 3]).collect())
            .unwrap_or_default();
        let mut writer = RtpWriter::new(header, &payload).csrcs(&csrcs);
        if let Some((profile, _)) = extension {
            writer = writer.extension(profile, &ext_data);
        }
        if let Some(multiple) = pad_to {
            writer = writer.pad_to(multiple);
        }
        let mut buf = vec![0xEEu8; writer.packet_len() + 8];
        let n = writer.write(&mut buf).unwrap();
        prop_assert_eq!(n, writer.packet_len());
        if let Some(multiple) = pad_to {
            prop_assert_eq!(n % usize::from(multiple), 0);
        }

        let p = RtpPacket::parse(&buf[..n]).unwrap();
        prop_assert_eq!(p.header(), header);
        prop_assert_eq!(p.csrcs().collect::<Vec<_>>(), csrcs);
        prop_assert_eq!(p.payload(), &payload[..]);
        match extension {
            Some((profile, _)) => {
                let e = p.extension().unwrap();
                prop_assert_eq!(e.profile, profile);
                prop_assert_eq!(e.data, &ext_data[..]);
            }
            None => prop_assert!(p.extension().is_none()),
        }
    }

    #[test]
    fn header_only_write_round_trips(header in rtp_header(), payload in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut buf = vec![0u8; HEADER_LEN + payload.len()];
        buf[HEADER_LEN..].copy_from_slice(&payload);
        prop_assert_eq!(header.write(&mut buf), Ok(HEADER_LEN));
        let p = RtpPacket::parse(&buf).unwrap();
        prop_assert_eq!(p.header(), header);
        prop_assert_eq!(p.payload(), &payload[..]);
    }

    #[test]
    fn tracker_extends_sequence_through_wrap_with_loss_and_reorder(
        start_seq in any::<u16>(),
        start_ts in any::<u32>(),
        drops in proptest::collection::vec(any::<bool>(), 200),
        swaps in proptest::collection::vec(0usize..199, 0..20),
    ) {
        // 200 packets from a random start (so many cases cross the 16- and 32-bit wraps),
        // with some dropped and some adjacent pairs swapped.
        let mut order: Vec<u16> = (0..200).collect();
        for &i in &swaps {
            order.swap(i, i + 1);
        }
        let mut source = RtpSource::new(SourceConfig::new(8000));
        let mut first: Option<(u16, u64, u64)> = None;
        for &i in &order {
            if drops[usize::from(i)] && first.is_some() {
                continue;
            }
            let header = RtpHeader {
                marker: false,
                payload_type: 0,
                sequence: start_seq.wrapping_add(i),
                timestamp: start_ts.wrapping_add(u32::from(i) * 160),
                ssrc: 42,
            };
            let SourceOutcome::Accepted(r) = source.receive(&header, u32::from(i) * 160) else {
                return Err(TestCaseError::fail("in-window packet not accepted"));
            };
            match first {
                None => first = Some((i, r.ext_seq, r.ext_timestamp)),
                Some((i0, s0, t0)) => {
                    prop_assert_eq!(r.continuity, Continuity::Continuous);
                    prop_assert_eq!(r.ext_seq as i64 - s0 as i64, i64::from(i) - i64::from(i0));
                    prop_assert_eq!(r.ext_timestamp as i64 - t0 as i64, (i64::from(i) - i64::from(i0)) * 160);
                }
            }
        }
    }

    #[test]
    fn dtmf_tone_survives_any_loss_as_at_most_one_event(
        digit in proptest::sample::select(vec!['0', '5', '9', '*', '#', 'A', 'D']),
        duration_ms in 20u64..2000,
        start in any::<u32>(),
        lost in proptest::collection::vec(any::<bool>(), 64),
        dup in proptest::collection::vec(any::<bool>(), 64),
    ) {
        let tx = DtmfSender::new(8000).unwrap();
        let mut rx = DtmfReceiver::new(8000);
        let tone = tx.tone(digit, Duration::from_millis(duration_ms), start).unwrap();
        let total = tone.duration_ticks();
        let mut events = Vec::new();
        let mut delivered = 0;
        for (k, p) in tone.enumerate() {
            if lost.get(k).copied().unwrap_or(false) {
                continue;
            }
            delivered += 1;
            let now = Duration::from_millis(u64::from(p.send_offset) / 8);
            let copies = if dup.get(k).copied().unwrap_or(false) { 2 } else { 1 };
            for _ in 0..copies {
                events.extend(rx.on_packet(p.timestamp, &p.payload(), now).unwrap());
            }
        }
        events.extend(rx.poll_timeout(Duration::from_secs(3600)));
        prop_assert_eq!(events.len(), usize::from(delivered > 0));
        if let Some(ev) = events.first() {
            prop_assert_eq!(ev.digit, digit);
            prop_assert_eq!(ev.started_at, start);
            prop_assert!(ev.duration_ticks <= total);
        }
    }
}
