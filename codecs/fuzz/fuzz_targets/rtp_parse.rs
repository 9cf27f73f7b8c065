//! Fuzzes the RTP receive path: one input is a stream of length-prefixed datagrams, each
//! parsed, then fed to the source tracker, its statistics and the DTMF receiver.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use voxline_codecs::dtmf::DtmfReceiver;
use voxline_codecs::rtp::{RtpPacket, RtpSource, SourceConfig};

/// Payload type treated as telephone-event in the fuzzed stream.
const EVENT_PT: u8 = 101;

fuzz_target!(|data: &[u8]| {
    // The whole input as one datagram.
    let _ = RtpPacket::parse(data);

    let mut source = RtpSource::new(SourceConfig {
        clock_rate: 8000,
        ssrc_probation: 2,
        untimed_payload_type: Some(EVENT_PT),
    });
    let mut dtmf = DtmfReceiver::new(8000);
    let mut now = Duration::ZERO;
    let mut rest = data;
    // Each datagram: a 2-byte big-endian length (11 bits used) then that many bytes.
    while let [hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo]) & 0x07FF).min(tail.len());
        let (datagram, next) = tail.split_at(len);
        rest = next;
        now += Duration::from_millis(20);
        let Ok(packet) = RtpPacket::parse(datagram) else {
            continue;
        };
        let _ = source.receive_at(&packet.header(), now);
        if packet.payload_type() == EVENT_PT {
            let _ = dtmf.on_packet(packet.timestamp(), packet.payload(), now);
        }
        let _ = dtmf.poll_timeout(now);
    }
    let _ = source.report_block(now);
});
