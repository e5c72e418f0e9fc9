//! One tunnel stream as a byte pipe (`AsyncRead + AsyncWrite`) over an HTTP/2 stream.
use bytes::{Buf, Bytes};
use h2::{RecvStream, SendStream};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub struct TunnelStream {
    send: SendStream<Bytes>,
    recv: RecvStream,
    pending: Bytes,
}

impl TunnelStream {
    pub(crate) fn new(send: SendStream<Bytes>, recv: RecvStream) -> Self {
        TunnelStream {
            send,
            recv,
            pending: Bytes::new(),
        }
    }
}

fn h2_to_io(e: h2::Error) -> io::Error {
    if e.is_io() {
        e.into_io()
            .unwrap_or_else(|| io::Error::other("h2 i/o error"))
    } else {
        io::Error::other(e)
    }
}

impl AsyncRead for TunnelStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                buf.put_slice(&self.pending[..n]);
                self.pending.advance(n);
                if self.pending.is_empty() {
                    // An empty view still holds the frame's buffer: let it go.
                    self.pending = Bytes::new();
                }
                let _ = self.recv.flow_control().release_capacity(n);
                return Poll::Ready(Ok(()));
            }
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => self.pending = data,
                Some(Err(e))
                    if e.reason() == Some(h2::Reason::NO_ERROR)
                        || e.reason() == Some(h2::Reason::CANCEL) =>
                {
                    return Poll::Ready(Ok(()))
                }
                Some(Err(e)) => return Poll::Ready(Err(h2_to_io(e))),
                None => return Poll::Ready(Ok(())),
            }
        }
    }
}

impl AsyncWrite for TunnelStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        self.send.reserve_capacity(buf.len());
        match ready!(self.send.poll_capacity(cx)) {
            Some(Ok(n)) => {
                let n = n.min(buf.len());
                match self
                    .send
                    .send_data(Bytes::copy_from_slice(&buf[..n]), false)
                {
                    Ok(()) => Poll::Ready(Ok(n)),
                    Err(e) => Poll::Ready(Err(h2_to_io(e))),
                }
            }
            Some(Err(e)) => Poll::Ready(Err(h2_to_io(e))),
            None => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.send.send_data(Bytes::new(), true) {
            Ok(()) => Poll::Ready(Ok(())),
            // Already closed (reset or ended): nothing left to say.
            Err(_) => Poll::Ready(Ok(())),
        }
    }
}

/// Bytes read from TCP at most at once: big pieces mean few syscalls, frames and records.
const PIECE: usize = 256 * 1024;
/// A new buffer is taken once less than this is left of the last one.
const MIN_ROOM: usize = 16 * 1024;

impl TunnelStream {
    /// Moves bytes both ways between `tcp` and this stream until both directions have
    /// ended. TCP is read in pieces of up to [`PIECE`] bytes that HTTP/2 sends as they are
    /// (no copy in between); received frames are written to TCP as they came. One side's
    /// end of input is passed on as the other side's end (half-close), as with
    /// [`tokio::io::copy_bidirectional`]. An idle stream holds no buffer and no reserved
    /// flow-control window, so thousands of idle streams cost little.
    pub async fn relay(self, tcp: tokio::net::TcpStream) -> io::Result<()> {
        let TunnelStream {
            mut send,
            mut recv,
            pending,
        } = self;
        let (mut tcp_read, mut tcp_write) = tcp.into_split();
        let up = async {
            let r = tcp_to_h2(&mut tcp_read, &mut send).await;
            if r.is_err() {
                send.send_reset(h2::Reason::CANCEL);
            }
            r
        };
        let down = async {
            let r = h2_to_tcp(pending, &mut recv, &mut tcp_write).await;
            // Ends our writing side, so the TCP peer sees the end of input.
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut tcp_write).await;
            r
        };
        // The first failure ends both directions (dropping the stream resets it).
        tokio::try_join!(up, down).map(|_| ())
    }
}

async fn tcp_to_h2(
    tcp: &mut tokio::net::tcp::OwnedReadHalf,
    send: &mut SendStream<Bytes>,
) -> io::Result<()> {
    let mut buf = bytes::BytesMut::new();
    loop {
        tcp.readable().await?;
        if buf.capacity() - buf.len() < MIN_ROOM {
            buf = bytes::BytesMut::with_capacity(PIECE);
        }
        let n = match tcp.try_read_buf(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Nothing to read now: hold no memory while waiting.
                buf = bytes::BytesMut::new();
                continue;
            }
            Err(e) => return Err(e),
        };
        if n == 0 {
            return send.send_data(Bytes::new(), true).map_err(h2_to_io);
        }
        let mut data = buf.split().freeze();
        // Flow control: send what the peer's window allows, wait for the rest. Reading
        // stops meanwhile, so a slow peer holds back the TCP sender instead of a queue.
        while !data.is_empty() {
            send.reserve_capacity(data.len());
            while send.capacity() == 0 {
                match std::future::poll_fn(|cx| send.poll_capacity(cx)).await {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(h2_to_io(e)),
                    None => return Err(io::ErrorKind::BrokenPipe.into()),
                }
            }
            let room = send.capacity().min(data.len());
            send.send_data(data.split_to(room), false)
                .map_err(h2_to_io)?;
        }
    }
}

async fn h2_to_tcp(
    pending: Bytes,
    recv: &mut RecvStream,
    tcp: &mut tokio::net::tcp::OwnedWriteHalf,
) -> io::Result<()> {
    use tokio::io::AsyncWriteExt;
    if !pending.is_empty() {
        tcp.write_all(&pending).await?;
        let _ = recv.flow_control().release_capacity(pending.len());
    }
    loop {
        match recv.data().await {
            Some(Ok(data)) => {
                tcp.write_all(&data).await?;
                let _ = recv.flow_control().release_capacity(data.len());
            }
            Some(Err(e))
                if e.reason() == Some(h2::Reason::NO_ERROR)
                    || e.reason() == Some(h2::Reason::CANCEL) =>
            {
                return Ok(())
            }
            Some(Err(e)) => return Err(h2_to_io(e)),
            None => return Ok(()),
        }
    }
}
