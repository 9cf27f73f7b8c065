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

#[test]
fn one_receive_call_takes_what_waits_and_says_when_the_socket_was_left_empty() {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let local = socket.local_addr().expect("address");
    let mut polled = PolledUdpSocket::new(socket).expect("polled socket");
    let peer = UdpSocket::bind("127.0.0.1:0").expect("bind peer");
    // More than one batch: all arrive, in order, each with its stamp.
    let sent = 2 * voxline_engine::media::port::RECV_BATCH + 1;
    for i in 0..sent {
        peer.send_to(&[i as u8; 3], local).expect("send");
    }
    let mut buf = [0u8; 64];
    let mut got = Vec::new();
    let mut last_more = true;
    while got.len() < sent {
        let (n, from, stamp) = poll_until_some(|| polled.try_recv_stamped(&mut buf).expect("poll"));
        assert_eq!(from, peer.local_addr().expect("peer address"));
        assert_eq!(n, 3);
        if cfg!(target_os = "linux") {
            assert!(
                stamp.is_some(),
                "datagram {} without its arrival stamp",
                got.len()
            );
        }
        got.push(buf[0]);
        last_more = polled.may_have_more();
    }
    assert_eq!(got, (0..sent as u8).collect::<Vec<_>>());
    if cfg!(target_os = "linux") {
        // The last receive call took fewer than a batch: the socket was empty then.
        assert!(!last_more, "the drained socket is not reported as such");
    }
    assert!(polled.try_recv_stamped(&mut buf).expect("poll").is_none());

    // A datagram longer than the buffer given is cut to it, and the next one is whole.
    peer.send_to(&[7u8; 100], local).expect("send");
    peer.send_to(&[8u8; 5], local).expect("send");
    let mut small = [0u8; 10];
    let (n, _, _) = poll_until_some(|| polled.try_recv_stamped(&mut small).expect("poll"));
    assert_eq!((n, small[0]), (10, 7));
    let (n, _, _) = poll_until_some(|| polled.try_recv_stamped(&mut small).expect("poll"));
    assert_eq!((n, small[0]), (5, 8));
}

/// A polled socket that counts the receive calls a port makes on it.
struct Counted {
    socket: PolledUdpSocket,
    receives: usize,
}

impl PacketTransport for Counted {
    fn recv_from<'a>(
        &'a mut self,
        buf: &'a mut [u8],
    ) -> impl std::future::Future<Output = std::io::Result<(usize, std::net::SocketAddr)>> + Send + 'a
    {
        self.socket.recv_from(buf)
    }

    fn send_to(&mut self, buf: &[u8], to: std::net::SocketAddr) -> std::io::Result<bool> {
        self.socket.send_to(buf, to)
    }

    fn try_recv_from(
        &mut self,
        buf: &mut [u8],
    ) -> std::io::Result<Option<(usize, std::net::SocketAddr)>> {
        self.receives += 1;
        self.socket.try_recv_from(buf)
    }

    fn try_recv_stamped(
        &mut self,
        buf: &mut [u8],
    ) -> std::io::Result<Option<(usize, std::net::SocketAddr, Option<Instant>)>> {
        self.receives += 1;
        self.socket.try_recv_stamped(buf)
    }

    fn may_have_more(&self) -> bool {
        self.socket.may_have_more()
    }
}

#[test]
fn a_tick_that_takes_one_packet_asks_the_socket_once() {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let local = socket.local_addr().expect("address");
    let config = MediaConfig::new(PayloadRegistry::new(), 0);
    let counted = Counted {
        socket: PolledUdpSocket::new(socket).expect("polled"),
        receives: 0,
    };
    let mut port = RtpPort::new(counted, &config).expect("port");
    let epoch = Instant::now();
    let peer = UdpSocket::bind("127.0.0.1:0").expect("bind peer");
    for i in 0..5u16 {
        peer.send_to(&pcmu_packet(100 + i, 160 * u32::from(i)), local)
            .expect("send");
        // Loopback delivery is immediate but not promised complete when `send_to` returns:
        // poll until the packet is taken, and look at the poll that took it.
        let asked = poll_until_some(|| {
            let (packets, receives) = (
                port.inbound().counters().audio_packets,
                port.transport().receives,
            );
            assert_eq!(port.poll_received(epoch).expect("poll"), None::<MediaInput>);
            (port.inbound().counters().audio_packets > packets)
                .then(|| port.transport().receives - receives)
        });
        let expected = if cfg!(target_os = "linux") { 1 } else { 2 };
        assert_eq!(
            asked, expected,
            "packet {i}: receive calls of the poll that took it"
        );
    }
    assert_eq!(port.inbound().counters().audio_packets, 5);
}
