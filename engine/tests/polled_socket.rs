//! `PolledUdpSocket`: a call socket read on the media clock. Datagrams wait in the kernel until
//! the tick polls them, carry the kernel's arrival stamp (Linux), and the port answers the
//! remote it learned from them.

use std::net::UdpSocket;

use tokio::time::Instant;
use voxline_engine::codecs::{AudioFrame, FrameOrigin, PayloadRegistry, SampleRate};
use voxline_engine::driver::{MediaInput, MediaPort};
use voxline_engine::media::{MediaConfig, PacketTransport, PolledUdpSocket, RtpPort};

/// A PCMU RTP packet of 20 ms of µ-law silence.
fn pcmu_packet(seq: u16, ts: u32) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    p.extend_from_slice(&[0xFF; 160]);
    p
}

/// Polls until a datagram is there: loopback delivery is immediate, but not promised to be
/// complete when `send_to` returns. Bounded, and without sleeping.
fn poll_until_some<T>(mut poll: impl FnMut() -> Option<T>) -> T {
    for _ in 0..1_000_000 {
        if let Some(v) = poll() {
            return v;
        }
        std::thread::yield_now();
    }
    panic!("the datagram never arrived");
}

#[test]
fn datagrams_wait_in_the_kernel_and_carry_their_arrival_stamp() {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let local = socket.local_addr().expect("address");
    let mut polled = PolledUdpSocket::new(socket).expect("polled socket");
    let mut buf = [0u8; 64];
    assert!(polled.try_recv_stamped(&mut buf).expect("poll").is_none());

    let peer = UdpSocket::bind("127.0.0.1:0").expect("bind peer");
    peer.send_to(b"hello", local).expect("send");
    let (n, from, stamp) = poll_until_some(|| polled.try_recv_stamped(&mut buf).expect("poll"));
    assert_eq!(&buf[..n], b"hello");
    assert_eq!(from, peer.local_addr().expect("peer address"));
    if cfg!(target_os = "linux") {
        assert!(polled.has_kernel_stamps());
        let stamp = stamp.expect("a kernel arrival stamp");
        assert!(stamp <= Instant::now(), "stamped in the future");
    }
    assert!(polled.try_recv_stamped(&mut buf).expect("poll").is_none());
}

#[test]
fn a_port_takes_in_what_arrived_at_the_poll_and_answers_the_learned_remote() {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let local = socket.local_addr().expect("address");
    let config = MediaConfig::new(PayloadRegistry::new(), 0);
    let mut port =
        RtpPort::new(PolledUdpSocket::new(socket).expect("polled"), &config).expect("port");
    let epoch = Instant::now();
    assert_eq!(port.poll_received(epoch).expect("poll"), None);

    let peer = UdpSocket::bind("127.0.0.1:0").expect("bind peer");
    peer.set_nonblocking(true).expect("non-blocking peer");
    for i in 0..3u16 {
        peer.send_to(&pcmu_packet(100 + i, 160 * u32::from(i)), local)
            .expect("send");
    }
    poll_until_some(|| {
        assert_eq!(port.poll_received(epoch).expect("poll"), None::<MediaInput>);
        (port.inbound().counters().audio_packets == 3).then_some(())
    });
    assert_eq!(port.inbound().remote(), peer.local_addr().ok());

    // The agent's frame goes back to the address the packets came from.
    let mut frame = AudioFrame::silent(SampleRate::Hz8000);
    frame.set_origin(FrameOrigin::Generated);
    port.send_agent_frame(epoch.elapsed(), Some(&frame))
        .expect("send agent frame");
    let mut buf = [0u8; 512];
    let (n, from) = poll_until_some(|| peer.recv_from(&mut buf).ok());
    assert_eq!(from, local);
    assert_eq!(n, 12 + 160);
    assert_eq!(port.unsent, 0);
}
