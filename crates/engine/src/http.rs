//! A minimal HTTP/1.1 client for the few Engine API calls: one request per
//! connection (`Connection: close`), a request body streamed in chunks,
//! responses read by `Content-Length`, chunked or to the end.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::endpoint::Endpoint;
use crate::ssh::SshStream;
use crate::tls::TlsStream;

/// The largest response head read (status line and headers).
const MAX_HEAD: usize = 64 * 1024;

/// A connected stream to an engine.
pub enum Conn {
    Unix(UnixStream),
    Tcp(TcpStream),
    /// TLS over TCP (`DOCKER_TLS_VERIFY`, a context's TLS material).
    Tls(TlsStream),
    /// `docker system dial-stdio` over ssh.
    Ssh(SshStream),
}

impl Conn {
    /// Connects to `endpoint`; a reply may be silent up to `timeout`. A TLS error
    /// carries a [`rustls::Error`] or a [`crate::tls::FileError`], a failed
    /// ssh a [`crate::ssh::DialError`]; [`crate::Error::from_io`] sorts
    /// them.
    pub fn open(endpoint: &Endpoint, timeout: Duration) -> io::Result<Conn> {
        match endpoint {
            Endpoint::Unix(path) => {
                let s = UnixStream::connect(path)?;
                s.set_read_timeout(Some(timeout))?;
                Ok(Conn::Unix(s))
            }
            Endpoint::Tcp { host, port } => Ok(Conn::Tcp(tcp(host, *port, timeout)?)),
            Endpoint::Tls { host, port, files } => {
                let config = files.client_config().map_err(io::Error::other)?;
                let sock = tcp(host, *port, timeout)?;
                Ok(Conn::Tls(TlsStream::connect(sock, host, config)?))
            }
            Endpoint::Ssh { user, host, port, socket } => {
                let argv = crate::ssh::dial_command(user.as_deref(), host, *port, socket.as_deref());
                Ok(Conn::Ssh(SshStream::spawn(&argv, timeout)?))
            }
        }
    }

    /// A second handle on the same connection (one may read while the
    /// other writes).
    pub fn try_clone(&self) -> io::Result<Conn> {
        Ok(match self {
            Conn::Unix(s) => Conn::Unix(s.try_clone()?),
            Conn::Tcp(s) => Conn::Tcp(s.try_clone()?),
            Conn::Tls(s) => Conn::Tls(s.try_clone()?),
            Conn::Ssh(s) => Conn::Ssh(s.clone()),
        })
    }
}

/// A TCP connection to the first address of `host` that answers.
fn tcp(host: &str, port: u16, timeout: Duration) -> io::Result<TcpStream> {
    use std::net::ToSocketAddrs as _;
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{host}: no address"));
    for addr in (host, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Ok(s) => {
                s.set_read_timeout(Some(timeout))?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

impl Conn {
    /// Ends both directions of the connection.
    pub fn shutdown_both(&self) {
        let _ = match self {
            Conn::Unix(s) => s.shutdown(std::net::Shutdown::Both),
            Conn::Tcp(s) => s.shutdown(std::net::Shutdown::Both),
            Conn::Tls(s) => {
                s.shutdown_both();
                Ok(())
            }
            Conn::Ssh(s) => {
                s.shutdown_both();
                Ok(())
            }
        };
    }

    /// Lets reads wait as long as the other end stays silent.
    pub(crate) fn no_read_timeout(&self) -> io::Result<()> {
        match self {
            Conn::Unix(s) => s.set_read_timeout(None),
            Conn::Tcp(s) => s.set_read_timeout(None),
            Conn::Tls(s) => s.set_read_timeout(None),
            Conn::Ssh(s) => {
                s.set_read_timeout(None);
                Ok(())
            }
        }
    }

    /// Ends the request side of the connection (both ends of a cloned
    /// stream share it).
    pub fn shutdown_write(&self) {
        let _ = match self {
            Conn::Unix(s) => s.shutdown(std::net::Shutdown::Write),
            Conn::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
            Conn::Tls(s) => {
                s.shutdown_write();
                Ok(())
            }
            Conn::Ssh(s) => {
                s.shutdown_write();
                Ok(())
            }
        };
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Unix(s) => s.read(buf),
            Conn::Tcp(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
            Conn::Ssh(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Unix(s) => s.write(buf),
            Conn::Tcp(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
            Conn::Ssh(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Unix(s) => s.flush(),
            Conn::Tcp(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
            Conn::Ssh(s) => s.flush(),
        }
    }
}

/// Writes a request head. With `chunked`, the body follows through a
/// [`ChunkedWriter`].
pub fn write_head(
    w: &mut impl Write,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    chunked: bool,
) -> io::Result<()> {
    write_head_with(w, method, path, content_type, chunked, false)
}

/// [`write_head`], asking the engine to keep the connection open after
/// the response with `keep_alive`.
pub fn write_head_with(
    w: &mut impl Write,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    chunked: bool,
    keep_alive: bool,
) -> io::Result<()> {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: polyarch\r\nConnection: {connection}\r\n");
    if let Some(ct) = content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    head.push_str(if chunked { "Transfer-Encoding: chunked\r\n" } else { "Content-Length: 0\r\n" });
    head.push_str("\r\n");
    w.write_all(head.as_bytes())
}

/// The chunked transfer coding of a request body; [`ChunkedWriter::finish`]
/// writes the last chunk.
pub struct ChunkedWriter<W: Write> {
    inner: W,
}

impl<W: Write> ChunkedWriter<W> {
    pub fn new(inner: W) -> Self {
        ChunkedWriter { inner }
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.inner.write_all(b"0\r\n\r\n")?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for ChunkedWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        write!(self.inner, "{:x}\r\n", buf.len())?;
        self.inner.write_all(buf)?;
        self.inner.write_all(b"\r\n")?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A response: status, headers of interest, and the body as a reader.
pub struct Response<R: Read> {
    pub status: u16,
    pub content_type: String,
    pub body: Body<R>,
    /// Whether the engine keeps the connection open after this response
    /// (HTTP/1.1 without `Connection: close`).
    pub keep_alive: bool,
}

/// How a response body ends.
pub enum Body<R: Read> {
    Length(io::Take<BufReader<R>>),
    Chunked(ChunkedReader<BufReader<R>>),
    Close(BufReader<R>),
}

impl<R: Read> Read for Body<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Body::Length(r) => r.read(buf),
            Body::Chunked(r) => r.read(buf),
            Body::Close(r) => r.read(buf),
        }
    }
}

impl<R: Read> Body<R> {
    /// The connection, when the body was read to its end and nothing
    /// follows it: ready for another request.
    pub fn into_complete(self) -> Option<R> {
        let reader = match self {
            Body::Length(r) if r.limit() == 0 => r.into_inner(),
            Body::Chunked(r) if r.done => r.inner,
            _ => return None,
        };
        reader.buffer().is_empty().then(|| reader.into_inner())
    }
}

fn bad(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// Reads a response head from `r`.
pub fn read_response<R: Read>(r: R) -> io::Result<Response<R>> {
    let mut r = BufReader::new(r);
    let mut line = String::new();
    let mut read = 0;
    let mut next = |r: &mut BufReader<R>, line: &mut String| -> io::Result<()> {
        line.clear();
        let n = r.by_ref().take((MAX_HEAD - read) as u64).read_line(line)?;
        read += n;
        if n == 0 || !line.ends_with('\n') {
            return Err(bad("the response head ended early or is too long"));
        }
        Ok(())
    };
    next(&mut r, &mut line)?;
    let status = line
        .strip_prefix("HTTP/1.")
        .and_then(|s| s.get(2..5))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| bad(format!("not an HTTP response: {:?}", line.trim_end())))?;
    let http11 = line.starts_with("HTTP/1.1");
    let mut close = false;
    let (mut length, mut chunked, mut content_type) = (None, false, String::new());
    loop {
        next(&mut r, &mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let Some((k, v)) = l.split_once(':') else { return Err(bad(format!("bad header line {l:?}"))) };
        let v = v.trim();
        match k.to_ascii_lowercase().as_str() {
            "content-length" => length = Some(v.parse::<u64>().map_err(|_| bad(format!("bad Content-Length {v:?}")))?),
            "transfer-encoding" => chunked = v.to_ascii_lowercase().contains("chunked"),
            "content-type" => content_type = v.to_string(),
            "connection" => close = v.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    let body = if chunked {
        Body::Chunked(ChunkedReader { inner: r, left: 0, done: false })
    } else if let Some(n) = length {
        Body::Length(r.take(n))
    } else {
        Body::Close(r)
    };
    Ok(Response { status, content_type, body, keep_alive: http11 && !close })
}

/// Decodes a chunked body; an early end is an error, not a short body.
pub struct ChunkedReader<R: BufRead> {
    inner: R,
    left: u64,
    done: bool,
}

impl<R: BufRead> ChunkedReader<R> {
    /// A decoder over `inner`, for tests that play the server.
    #[cfg(test)]
    pub fn for_tests(inner: R) -> Self {
        ChunkedReader { inner, left: 0, done: false }
    }

    fn line(&mut self) -> io::Result<String> {
        let mut line = String::new();
        let n = self.inner.by_ref().take(4096).read_line(&mut line)?;
        if n == 0 || !line.ends_with('\n') {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the chunked response ended early"));
        }
        Ok(line)
    }
}

impl<R: BufRead> Read for ChunkedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            let line = self.line()?;
            let size = line.trim_end().split(';').next().unwrap_or("").trim();
            self.left = u64::from_str_radix(size, 16).map_err(|_| bad(format!("bad chunk size {size:?}")))?;
            if self.left == 0 {
                // Trailers, then the empty line.
                while !self.line()?.trim_end().is_empty() {}
                self.done = true;
                return Ok(0);
            }
        }
        let max = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the chunked response ended early"));
        }
        self.left -= n as u64;
        if self.left == 0 {
            let end = self.line()?;
            if !end.trim_end().is_empty() {
                return Err(bad("a chunk does not end with CRLF"));
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_round_trip() {
        let mut w = ChunkedWriter::new(Vec::new());
        w.write_all(b"hello ").unwrap();
        w.write_all(b"").unwrap();
        w.write_all(b"world").unwrap();
        let body = w.finish().unwrap();
        assert_eq!(body, b"6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n");
        let mut resp =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n".to_vec();
        resp.extend_from_slice(&body);
        let mut r = read_response(&resp[..]).unwrap();
        assert_eq!((r.status, r.content_type.as_str()), (200, "application/json"));
        let mut s = String::new();
        r.body.read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello world");
    }

    #[test]
    fn truncated_chunked_is_an_error() {
        let resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\nhel";
        let mut r = read_response(&resp[..]).unwrap();
        let mut s = String::new();
        assert_eq!(r.body.read_to_string(&mut s).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn length_and_close() {
        let resp = b"HTTP/1.0 404 Not Found\r\ncontent-length: 4\r\n\r\nnopeextra";
        let mut r = read_response(&resp[..]).unwrap();
        let mut s = String::new();
        r.body.read_to_string(&mut s).unwrap();
        assert_eq!((r.status, s.as_str()), (404, "nope"));
        let mut r = read_response(&b"HTTP/1.1 200 OK\r\n\r\nall of it"[..]).unwrap();
        s.clear();
        r.body.read_to_string(&mut s).unwrap();
        assert_eq!(s, "all of it");
        assert!(read_response(&b"SSH-2.0-OpenSSH\r\n"[..]).is_err());
        assert!(read_response(&b"HTTP/1.1 200 OK\r\nX"[..]).is_err());
    }
}
