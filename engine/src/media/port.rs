//! `RtpPort`: the call's media over a packet transport — a UDP socket in production,
//! an in-memory pipe in tests — implementing the driver's `MediaPort`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;
use voxline_codecs::{AudioFrame, SampleRate};

use super::{InboundMedia, MediaConfig, MediaError, OutboundMedia, PacketVerdict};
use crate::driver::{MediaInput, MediaPort};

/// Sends and receives datagrams for one call.
pub trait PacketTransport: Send + 'static {
    /// Waits for the next datagram; returns its length and source.
    fn recv_from<'a>(
        &'a mut self,
        buf: &'a mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + Send + 'a;
    /// Sends a datagram without waiting; a full socket buffer drops it (returns `Ok(false)`).
    fn send_to(&mut self, buf: &[u8], to: SocketAddr) -> io::Result<bool>;
    /// Takes a datagram that is already waiting, without waiting for one.
    fn try_recv_from(&mut self, buf: &mut [u8]) -> io::Result<Option<(usize, SocketAddr)>>;
}

impl PacketTransport for UdpSocket {
    fn recv_from<'a>(
        &'a mut self,
        buf: &'a mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + Send + 'a {
        UdpSocket::recv_from(self, buf)
    }

    fn send_to(&mut self, buf: &[u8], to: SocketAddr) -> io::Result<bool> {
        match self.try_send_to(buf, to) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn try_recv_from(&mut self, buf: &mut [u8]) -> io::Result<Option<(usize, SocketAddr)>> {
        match UdpSocket::try_recv_from(self, buf) {
            Ok(r) => Ok(Some(r)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// One end of an in-memory datagram pipe, for tests on virtual time.
pub struct MemoryTransport {
    local: SocketAddr,
    rx: mpsc::UnboundedReceiver<(Vec<u8>, SocketAddr)>,
    tx: mpsc::UnboundedSender<(Vec<u8>, SocketAddr)>,
}

impl MemoryTransport {
    /// Two connected ends with the given addresses.
    pub fn pair(a: SocketAddr, b: SocketAddr) -> (MemoryTransport, MemoryTransport) {
        let (tx_a, rx_b) = mpsc::unbounded_channel();
        let (tx_b, rx_a) = mpsc::unbounded_channel();
        (
            MemoryTransport {
                local: a,
                rx: rx_a,
                tx: tx_a,
            },
            MemoryTransport {
                local: b,
                rx: rx_b,
                tx: tx_b,
            },
        )
    }

    /// This end's address (what the other end sees as the source).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Receives without waiting.
    pub fn try_recv(&mut self) -> Option<(Vec<u8>, SocketAddr)> {
        self.rx.try_recv().ok()
    }
}

impl PacketTransport for MemoryTransport {
    async fn recv_from(&mut self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        match self.rx.recv().await {
            Some((data, from)) => {
                let n = data.len().min(buf.len());
                buf[..n].copy_from_slice(&data[..n]);
                Ok((n, from))
            }
            None => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "pipe closed",
            )),
        }
    }

    fn send_to(&mut self, buf: &[u8], _to: SocketAddr) -> io::Result<bool> {
        Ok(self.tx.send((buf.to_vec(), self.local)).is_ok())
    }

    fn try_recv_from(&mut self, buf: &mut [u8]) -> io::Result<Option<(usize, SocketAddr)>> {
        match self.rx.try_recv() {
            Ok((data, from)) => {
                let n = data.len().min(buf.len());
                buf[..n].copy_from_slice(&data[..n]);
                Ok(Some((n, from)))
            }
            Err(mpsc::error::TryRecvError::Empty) => Ok(None),
            Err(mpsc::error::TryRecvError::Disconnected) => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "pipe closed",
            )),
        }
    }
}

/// A call's RTP media over a transport.
pub struct RtpPort<T: PacketTransport> {
    transport: T,
    inbound: InboundMedia,
    outbound: OutboundMedia,
    recv_buf: Box<[u8; 2048]>,
    /// Packets not sent because no remote address is known yet or the socket was full.
    pub unsent: u64,
}

impl<T: PacketTransport> RtpPort<T> {
    /// Media for `config` over `transport`.
    pub fn new(transport: T, config: &MediaConfig) -> Result<Self, MediaError> {
        Ok(RtpPort {
            transport,
            inbound: InboundMedia::new(config)?,
            outbound: OutboundMedia::new(config)?,
            recv_buf: Box::new([0; 2048]),
            unsent: 0,
        })
    }

    /// The inbound side (counters, statistics, learned remote).
    pub fn inbound(&self) -> &InboundMedia {
        &self.inbound
    }

    /// Mutable inbound side, for periodic work outside `recv` (receiver reports, DTMF timeouts).
    pub fn inbound_mut(&mut self) -> &mut InboundMedia {
        &mut self.inbound
    }

    /// The outbound side (counters).
    pub fn outbound(&self) -> &OutboundMedia {
        &self.outbound
    }
}

impl<T: PacketTransport> MediaPort for RtpPort<T> {
    async fn recv(&mut self, epoch: Instant) -> io::Result<MediaInput> {
        loop {
            let (n, from) = match self.transport.recv_from(&mut self.recv_buf[..]).await {
                Ok(r) => r,
                // The transport's far end is gone: the caller hung up.
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {
                    return Ok(MediaInput::Closed)
                }
                Err(e) => return Err(e),
            };
            // Stamp the arrival now that the datagram is here (not when the wait began).
            let now = Instant::now().saturating_duration_since(epoch);
            match self.inbound.on_datagram(now, from, &self.recv_buf[..n]) {
                PacketVerdict::Dtmf(d) => return Ok(MediaInput::Dtmf(d)),
                PacketVerdict::Audio => return Ok(MediaInput::Received),
                _ => continue,
            }
        }
    }

    fn caller_frame(&mut self, now: Duration, out: &mut AudioFrame) -> bool {
        self.inbound.next_frame(now, out)
    }

    fn send_agent_frame(&mut self, _now: Duration, frame: Option<&AudioFrame>) -> io::Result<()> {
        let remote = self.inbound.remote();
        if let Some(packet) = self.outbound.next_packet(frame) {
            match remote {
                Some(to) => {
                    if !self.transport.send_to(packet, to)? {
                        self.unsent += 1;
                    }
                }
                None => self.unsent += 1,
            }
        }
        Ok(())
    }

    fn caller_rate(&self) -> SampleRate {
        self.inbound.caller_rate()
    }
}
