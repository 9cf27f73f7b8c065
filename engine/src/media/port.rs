//! `RtpPort`: the call's media over a packet transport — a UDP socket in production,
//! an in-memory pipe in tests — implementing the driver's `MediaPort`.
//!
//! A tokio `UdpSocket` wakes the call task for every datagram; a [`PolledUdpSocket`] wakes
//! nothing and is read at the media clock's ticks, one wake-up per call per 20 ms.

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
    /// Like [`PacketTransport::try_recv_from`], plus when the datagram arrived, if the
    /// transport knows (a kernel receive timestamp); `None` means "stamp it now".
    fn try_recv_stamped(
        &mut self,
        buf: &mut [u8],
    ) -> io::Result<Option<(usize, SocketAddr, Option<Instant>)>> {
        Ok(self.try_recv_from(buf)?.map(|(n, from)| (n, from, None)))
    }
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

/// A UDP socket read only when the call's media clock ticks: non-blocking and never
/// registered with the async reactor, so an arriving datagram wakes no thread and no task.
///
/// With a tokio `UdpSocket` every caller packet wakes the call task (and often a parked
/// worker thread) between two ticks; the tick then wakes it again. Read on the tick instead,
/// a call costs one wake-up per 20 ms. A packet is taken in at the first tick after it
/// arrived, which is when its frame could be played at the earliest anyway; DTMF and the
/// remote's address are seen up to 20 ms later. A datagram waits in the kernel meanwhile
/// (the socket's receive buffer holds seconds of RTP).
///
/// On Linux the kernel stamps each datagram when it arrives (`SO_TIMESTAMPNS`), so the jitter
/// buffer sees true arrival times, free of the call task's scheduling delay; elsewhere (or if
/// the kernel refuses) a datagram is stamped when the tick takes it, up to 20 ms late.
#[derive(Debug)]
pub struct PolledUdpSocket {
    socket: std::net::UdpSocket,
    kernel_stamps: bool,
}

impl PolledUdpSocket {
    /// Takes over `socket`, makes it non-blocking and asks for kernel receive timestamps.
    pub fn new(socket: std::net::UdpSocket) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        let kernel_stamps = stamps::enable(&socket);
        Ok(PolledUdpSocket {
            socket,
            kernel_stamps,
        })
    }

    /// True when datagrams carry the kernel's arrival time.
    pub fn has_kernel_stamps(&self) -> bool {
        self.kernel_stamps
    }

    /// The socket's local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }
}

impl PacketTransport for PolledUdpSocket {
    fn recv_from<'a>(
        &'a mut self,
        _buf: &'a mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + Send + 'a {
        // Nothing wakes on arrival: datagrams are taken by `try_recv_from` at the ticks.
        std::future::pending()
    }

    fn send_to(&mut self, buf: &[u8], to: SocketAddr) -> io::Result<bool> {
        match self.socket.send_to(buf, to) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn try_recv_from(&mut self, buf: &mut [u8]) -> io::Result<Option<(usize, SocketAddr)>> {
        match self.socket.recv_from(buf) {
            Ok(r) => Ok(Some(r)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn try_recv_stamped(
        &mut self,
        buf: &mut [u8],
    ) -> io::Result<Option<(usize, SocketAddr, Option<Instant>)>> {
        if !self.kernel_stamps {
            return Ok(self.try_recv_from(buf)?.map(|(n, from)| (n, from, None)));
        }
        match stamps::recv(&self.socket, buf) {
            Ok((n, from, wall)) => Ok(Some((n, from, wall.and_then(wall_to_instant)))),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The monotonic instant of a wall-clock (`CLOCK_REALTIME`) kernel timestamp: now, moved back
/// by how long ago the stamp is. `None` when the stamp is in the future or more than a second
/// old (the wall clock was stepped): the caller stamps the datagram now instead.
fn wall_to_instant(wall: Duration) -> Option<Instant> {
    let now = Instant::now();
    let wall_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    let ago = wall_now.checked_sub(wall)?;
    (ago <= Duration::from_secs(1)).then(|| now.checked_sub(ago).unwrap_or(now))
}

/// Kernel receive timestamps (`SO_TIMESTAMPNS`, `recvmsg`) on Linux.
#[cfg(target_os = "linux")]
mod stamps {
    use std::io;
    use std::mem::{size_of, zeroed};
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    /// Asks the kernel to stamp every datagram `socket` receives; false if it refuses.
    pub(super) fn enable(socket: &UdpSocket) -> bool {
        let one: libc::c_int = 1;
        // SAFETY: `socket` owns a valid descriptor; the option value points to a live c_int
        // and its exact size is passed.
        let r = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                (&one as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        r == 0
    }

    /// One non-blocking `recvmsg`: length, source and the kernel's wall-clock arrival stamp.
    pub(super) fn recv(
        socket: &UdpSocket,
        buf: &mut [u8],
    ) -> io::Result<(usize, SocketAddr, Option<Duration>)> {
        // SAFETY: all-zero bytes are a valid value of these plain C structs.
        let mut addr: libc::sockaddr_storage = unsafe { zeroed() };
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // Room for one timespec control message, aligned for `cmsghdr`.
        let mut control = [0u64; 8];
        // SAFETY: as above.
        let mut msg: libc::msghdr = unsafe { zeroed() };
        msg.msg_name = (&mut addr as *mut libc::sockaddr_storage).cast();
        msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = size_of::<[u64; 8]>() as _;
        // SAFETY: every pointer in `msg` refers to a live buffer of the length given with it,
        // and none of them outlives this call.
        let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let from = source(&addr)?;
        let mut stamp = None;
        // SAFETY: `msg` was filled by `recvmsg`; the CMSG macros walk the control buffer
        // within `msg_controllen`, and a timestamp message carries one `timespec`, read
        // unaligned.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET
                    && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
                {
                    let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                    if let (Ok(s), Ok(ns)) = (u64::try_from(ts.tv_sec), u32::try_from(ts.tv_nsec)) {
                        stamp = Some(Duration::new(s, ns));
                    }
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        Ok((n as usize, from, stamp))
    }

    /// The datagram's source address.
    fn source(addr: &libc::sockaddr_storage) -> io::Result<SocketAddr> {
        match libc::c_int::from(addr.ss_family) {
            libc::AF_INET => {
                // SAFETY: the family says the storage holds a `sockaddr_in`, which fits in it.
                let a: libc::sockaddr_in =
                    unsafe { std::ptr::read((addr as *const libc::sockaddr_storage).cast()) };
                Ok(SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                    u16::from_be(a.sin_port),
                )))
            }
            libc::AF_INET6 => {
                // SAFETY: the family says the storage holds a `sockaddr_in6`, which fits in it.
                let a: libc::sockaddr_in6 =
                    unsafe { std::ptr::read((addr as *const libc::sockaddr_storage).cast()) };
                Ok(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(a.sin6_addr.s6_addr),
                    u16::from_be(a.sin6_port),
                    a.sin6_flowinfo,
                    a.sin6_scope_id,
                )))
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "datagram from an address that is neither IPv4 nor IPv6",
            )),
        }
    }
}

/// Without kernel timestamps: datagrams are stamped when the tick takes them.
#[cfg(not(target_os = "linux"))]
mod stamps {
    use std::io;
    use std::net::{SocketAddr, UdpSocket};
    use std::time::Duration;

    pub(super) fn enable(_socket: &UdpSocket) -> bool {
        false
    }

    pub(super) fn recv(
        socket: &UdpSocket,
        buf: &mut [u8],
    ) -> io::Result<(usize, SocketAddr, Option<Duration>)> {
        socket.recv_from(buf).map(|(n, from)| (n, from, None))
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

/// Datagrams [`RtpPort`] takes in per [`MediaPort::poll_received`] (per 20 ms tick): far more
/// than a stream sends (one to three packets per tick, plus DTMF and RTCP).
const MAX_DATAGRAMS_PER_POLL: usize = 64;

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

    fn poll_received(&mut self, epoch: Instant) -> io::Result<Option<MediaInput>> {
        // Bounded, so a flood cannot hold the tick: the rest waits in the socket.
        for _ in 0..MAX_DATAGRAMS_PER_POLL {
            let (n, from, arrived) = match self.transport.try_recv_stamped(&mut self.recv_buf[..]) {
                Ok(Some(r)) => r,
                Ok(None) => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {
                    return Ok(Some(MediaInput::Closed))
                }
                Err(e) => return Err(e),
            };
            let now = arrived
                .unwrap_or_else(Instant::now)
                .saturating_duration_since(epoch);
            if let PacketVerdict::Dtmf(d) = self.inbound.on_datagram(now, from, &self.recv_buf[..n])
            {
                return Ok(Some(MediaInput::Dtmf(d)));
            }
        }
        Ok(None)
    }

    fn caller_frame(&mut self, now: Duration, out: &mut AudioFrame) -> bool {
        self.inbound.next_frame(now, out)
    }

    fn playout_slack(&self) -> Option<Duration> {
        self.inbound.playout_slack()
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

    fn agent_rate(&self) -> SampleRate {
        self.outbound.codec_rate()
    }

    fn set_load_shedding(&mut self, shed: bool) {
        self.outbound.set_load_shedding(shed);
    }

    fn set_catch_up(&mut self, on: bool) {
        self.inbound.set_catch_up(on);
    }

    fn caller_frame_ahead(&mut self, now: Duration, out: &mut AudioFrame) -> bool {
        self.inbound.next_frame_ahead(now, out)
    }

    fn caller_frame_wait(&self) -> Duration {
        self.inbound.frame_wait()
    }
}
