//! TLS to an engine on `tcp://`, as the docker CLI does it: `ca.pem`,
//! `cert.pem` and `key.pem` of `DOCKER_CERT_PATH` (default `~/.docker`)
//! or of a docker context's TLS directory, a file that is missing left out
//! (no client certificate, the system's roots), verification unless asked
//! not to (`SkipTLSVerify`, `DOCKER_TLS` without `DOCKER_TLS_VERIFY`).
//!
//! The stream is full duplex: a clone shares the session, one side may read
//! while the other writes.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// The TLS material of an endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The directory the files come from (for messages).
    pub dir: PathBuf,
    /// `ca.pem`, if present: the only roots trusted; else the system's.
    pub ca: Option<PathBuf>,
    /// `cert.pem` and `key.pem`, if present: the client certificate.
    pub cert: Option<(PathBuf, PathBuf)>,
    /// Whether the engine's certificate is verified.
    pub verify: bool,
}

/// A file of the TLS material that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{}: {why}", path.display())]
pub struct FileError {
    pub path: PathBuf,
    pub why: String,
}

impl TlsFiles {
    /// The files of `dir` (`ca.pem`, `cert.pem`, `key.pem`), each left out
    /// when missing; a certificate without its key (or the reverse) is an
    /// error naming the missing file.
    pub fn in_dir(dir: &Path, verify: bool) -> Result<TlsFiles, FileError> {
        let file = |name: &str| Some(dir.join(name)).filter(|p| p.exists());
        let cert = match (file("cert.pem"), file("key.pem")) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            (Some(_), None) => return Err(missing(dir.join("key.pem"), "cert.pem has no key beside it")),
            (None, Some(_)) => return Err(missing(dir.join("cert.pem"), "key.pem has no certificate beside it")),
        };
        Ok(TlsFiles { dir: dir.to_path_buf(), ca: file("ca.pem"), cert, verify })
    }

    /// A rustls client configuration of these files.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, FileError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| FileError { path: self.dir.clone(), why: e.to_string() })?;
        let builder = if self.verify {
            builder.with_root_certificates(self.roots()?)
        } else {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
        };
        let config = match &self.cert {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = certificates(cert)?;
                let bytes = read(key)?;
                let der = PrivateKeyDer::from_pem_slice(&bytes)
                    .map_err(|e| FileError { path: key.clone(), why: format!("no private key: {e}") })?;
                builder
                    .with_client_auth_cert(chain, der)
                    .map_err(|e| FileError { path: cert.clone(), why: format!("with {}: {e}", key.display()) })?
            }
        };
        Ok(Arc::new(config))
    }

    fn roots(&self) -> Result<RootCertStore, FileError> {
        let mut roots = RootCertStore::empty();
        match &self.ca {
            Some(ca) => {
                for c in certificates(ca)? {
                    roots.add(c).map_err(|e| FileError { path: ca.clone(), why: e.to_string() })?;
                }
            }
            None => {
                let _ = roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            }
        }
        Ok(roots)
    }
}

fn missing(path: PathBuf, why: &str) -> FileError {
    FileError { path, why: why.to_string() }
}

fn read(path: &Path) -> Result<Vec<u8>, FileError> {
    std::fs::read(path).map_err(|e| FileError { path: path.to_path_buf(), why: e.to_string() })
}

/// The certificates of a PEM file; none is an error.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, FileError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| FileError { path: path.to_path_buf(), why: format!("not PEM certificates: {e}") })?;
    if certs.is_empty() {
        return Err(missing(path.to_path_buf(), "no PEM certificate in it"));
    }
    Ok(certs)
}

/// Accepts any server certificate (the signatures of the handshake are
/// still checked): `SkipTLSVerify`.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS session over TCP; clones share it.
pub struct TlsStream {
    sock: TcpStream,
    state: Arc<Mutex<State>>,
}

struct State {
    conn: ClientConnection,
    /// Bytes read from the socket that the session has not taken yet.
    pending: Vec<u8>,
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl TlsStream {
    /// Runs the handshake with `host` over `sock`.
    pub fn connect(sock: TcpStream, host: &str, config: Arc<ClientConfig>) -> io::Result<TlsStream> {
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{host}: {e}")))?;
        let mut conn = ClientConnection::new(config, name).map_err(tls_error)?;
        let mut s = &sock;
        while conn.is_handshaking() {
            conn.complete_io(&mut s)?;
        }
        Ok(TlsStream { sock, state: Arc::new(Mutex::new(State { conn, pending: Vec::new() })) })
    }

    pub fn try_clone(&self) -> io::Result<TlsStream> {
        Ok(TlsStream { sock: self.sock.try_clone()?, state: self.state.clone() })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Processes what arrived and sends what the session wants to send
    /// (an alert too, when processing failed).
    fn process(&self, st: &mut State) -> io::Result<()> {
        let processed = st.conn.process_new_packets().map(|_| ()).map_err(tls_error);
        let mut s = &self.sock;
        while st.conn.wants_write() {
            if st.conn.write_tls(&mut s).is_err() {
                break;
            }
        }
        processed
    }

    /// How long a read of the socket waits (none: as long as it takes).
    pub fn set_read_timeout(&self, timeout: Option<std::time::Duration>) -> io::Result<()> {
        self.sock.set_read_timeout(timeout)
    }

    /// Ends both directions of the TCP stream.
    pub fn shutdown_both(&self) {
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
    }

    /// Sends `close_notify` and ends the TCP stream's sending side.
    pub fn shutdown_write(&self) {
        let mut st = self.lock();
        st.conn.send_close_notify();
        let _ = self.process(&mut st);
        let _ = self.sock.shutdown(std::net::Shutdown::Write);
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut raw = [0u8; 16 * 1024];
        loop {
            {
                let mut guard = self.lock();
                let st = &mut *guard;
                match st.conn.reader().read(buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    other => return other,
                }
                if !st.pending.is_empty() {
                    let mut slice: &[u8] = &st.pending;
                    let n = st.conn.read_tls(&mut slice)?;
                    st.pending.drain(..n);
                    self.process(st)?;
                    continue;
                }
            }
            // Read without the lock, so that a writer can go on meanwhile.
            let n = (&self.sock).read(&mut raw)?;
            let mut st = self.lock();
            if n == 0 {
                st.conn.read_tls(&mut &[][..])?;
            } else {
                st.pending.extend_from_slice(&raw[..n]);
                continue;
            }
            self.process(&mut st)?;
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut st = self.lock();
        let n = st.conn.writer().write(buf)?;
        let mut s = &self.sock;
        while st.conn.wants_write() {
            st.conn.write_tls(&mut s)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut st = self.lock();
        st.conn.writer().flush()?;
        let mut s = &self.sock;
        while st.conn.wants_write() {
            st.conn.write_tls(&mut s)?;
        }
        Ok(())
    }
}

/// The rustls error in an I/O error's chain, if any.
pub fn rustls_error(e: &io::Error) -> Option<&rustls::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = e.get_ref().map(|i| i as _);
    while let Some(inner) = cur {
        if let Some(r) = inner.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        cur = inner.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_of_a_dir() {
        let d = tempfile::tempdir().unwrap();
        let t = TlsFiles::in_dir(d.path(), true).unwrap();
        assert_eq!((t.ca.as_ref(), t.cert.as_ref(), t.verify), (None, None, true));
        std::fs::write(d.path().join("cert.pem"), "x").unwrap();
        let e = TlsFiles::in_dir(d.path(), true).unwrap_err().to_string();
        assert!(e.contains("key.pem") && e.contains(&d.path().display().to_string()), "{e}");
        std::fs::write(d.path().join("key.pem"), "not a key").unwrap();
        std::fs::write(d.path().join("ca.pem"), "not a cert").unwrap();
        let t = TlsFiles::in_dir(d.path(), false).unwrap();
        assert_eq!(t.ca, Some(d.path().join("ca.pem")));
        assert!(t.cert.is_some() && !t.verify);
        // Bad contents name the file.
        let e = TlsFiles { verify: true, ..t.clone() }.client_config().unwrap_err().to_string();
        assert!(e.contains("ca.pem") && e.contains("no PEM certificate"), "{e}");
        let e = TlsFiles { ca: None, ..t }.client_config().unwrap_err().to_string();
        assert!(e.contains("cert.pem"), "{e}");
    }
}
