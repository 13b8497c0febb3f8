//! TLS for the websocket port (`wss://`, and the demo page over https) and
//! for the channel link between nodes, with rustls and its `ring` provider
//! (no OpenSSL, nothing but a C compiler to build).
//!
//! Why it looks the way it does:
//!
//! - Certificates are read from PEM files (a chain, and a PKCS#8, PKCS#1 or
//!   SEC1 key) at start, and every failure is an error naming the file and
//!   what is wrong with it, so a typo stops the start rather than every
//!   handshake.
//! - A [`ServerTls`] keeps the acceptor behind a lock that is only held to
//!   clone or swap an `Arc`: [`ServerTls::reload`] reads the files again
//!   and swaps the configuration, so new handshakes use the new certificate
//!   while open connections keep the session they have. A failed reload
//!   keeps the old one.
//! - [`Socket`] is what a connection task reads and writes: plain TCP or
//!   TLS. Plain TCP pays one `match` per call and keeps its vectored writes;
//!   the TLS state is boxed, so a plain connection's task does not grow by
//!   its size.
//! - A client that speaks plain HTTP to a TLS port is told so in plain HTTP
//!   (400, as nginx does) and counted, rather than left to a handshake
//!   error it cannot read.

use std::io::{self, IoSlice};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use parking_lot::RwLock;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::error::{Error, Result};

/// The first byte of a TLS record carrying a handshake (a ClientHello).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// What a plain HTTP client gets on a TLS port.
pub(crate) const PLAIN_ON_TLS_PORT: &str =
    "This port speaks TLS: connect with wss:// (or https:// for a page).\n";

/// The protocol versions and algorithms every TLS endpoint of groupcast
/// uses: rustls's safe defaults (TLS 1.2 and 1.3) with `ring`.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_error(what: &str, path: &Path, why: impl std::fmt::Display) -> Error {
    Error::Config(format!("{what} {}: {why}", path.display()))
}

/// Reads a PEM file whole, with an error that names it.
fn read_pem(what: &str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| tls_error(what, path, format!("cannot read it: {e}")))
}

/// The certificate chain in `path`, leaf first.
///
/// # Errors
///
/// [`Error::Config`] naming the file: unreadable, or no certificate in it.
pub(crate) fn load_certs(what: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = read_pem(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| tls_error(what, path, format!("not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(tls_error(
            what,
            path,
            "no certificate in it (expected PEM \"BEGIN CERTIFICATE\" blocks)",
        ));
    }
    Ok(certs)
}

/// The private key in `path`: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let pem = read_pem("tls_key", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => tls_error(
            "tls_key",
            path,
            "no private key in it (expected PEM \"BEGIN PRIVATE KEY\", \"BEGIN RSA PRIVATE KEY\" or \"BEGIN EC PRIVATE KEY\")",
        ),
        other => tls_error("tls_key", path, format!("not valid PEM: {other}")),
    })
}

/// A server configuration from a certificate chain and its key, with
/// ALPN `http/1.1` (what a websocket upgrade and the demo page speak).
fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>> {
    let chain = load_certs("tls_cert", cert)?;
    let key_der = load_key(key)?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| {
            let why = match e {
                rustls::Error::InconsistentKeys(_) => format!(
                    "does not match the certificate in {} (a key from another pair?)",
                    cert.display()
                ),
                other => format!("cannot be used with the certificate: {other}"),
            };
            tls_error("tls_key", key, why)
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A server's TLS: the files it was given and the acceptor made from them,
/// which [`ServerTls::reload`] replaces.
pub(crate) struct ServerTls {
    /// The certificate chain file, read again on reload.
    cert: PathBuf,
    /// The key file, read again on reload.
    key: PathBuf,
    /// The acceptor for new handshakes. Held only to clone or swap the
    /// `Arc` inside, never across `.await`.
    acceptor: RwLock<TlsAcceptor>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Reads the certificate chain and key.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the file that is missing, unreadable, not
    /// PEM, or a key that does not match the certificate.
    pub(crate) fn load(cert: &Path, key: &Path) -> Result<ServerTls> {
        let config = server_config(cert, key)?;
        Ok(ServerTls {
            cert: cert.to_owned(),
            key: key.to_owned(),
            acceptor: RwLock::new(TlsAcceptor::from(config)),
        })
    }

    /// Reads the files again: new handshakes use what they hold now, open
    /// connections keep their sessions.
    ///
    /// # Errors
    ///
    /// As [`ServerTls::load`]; the certificate in use stays.
    pub(crate) fn reload(&self) -> Result<()> {
        let config = server_config(&self.cert, &self.key)?;
        *self.acceptor.write() = TlsAcceptor::from(config);
        tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
        Ok(())
    }

    /// The acceptor for a new handshake.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.read().clone()
    }

    /// Accepts a TLS connection on `tcp`. A client that speaks first and
    /// not TLS (plain HTTP on the TLS port) gets a short 400 in plain
    /// text; the error then says so.
    ///
    /// # Errors
    ///
    /// The handshake's error, or [`io::ErrorKind::InvalidData`] for a plain
    /// client.
    pub(crate) async fn accept(&self, mut tcp: TcpStream) -> io::Result<Socket> {
        let mut first = [0u8; 1];
        let n = tcp.peek(&mut first).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if first[0] != TLS_HANDSHAKE_RECORD {
            answer_plain_client(&mut tcp).await;
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "plain (not TLS) request on the TLS port",
            ));
        }
        let stream = self.acceptor().accept(tcp).await?;
        Ok(Socket::Tls(Box::new(TlsSocket::new(stream.into()))))
    }
}

/// Tells a plain HTTP client that the port speaks TLS, and closes: the
/// request is read (so closing does not reset the answer away) within a
/// second.
async fn answer_plain_client(tcp: &mut TcpStream) {
    use tokio::io::AsyncWriteExt;
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{PLAIN_ON_TLS_PORT}",
        PLAIN_ON_TLS_PORT.len()
    );
    let send = async {
        tcp.write_all(answer.as_bytes()).await?;
        tcp.shutdown().await?;
        let mut sink = [0u8; 1024];
        while tcp.read(&mut sink).await? > 0 {}
        Ok::<_, io::Error>(())
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), send).await;
}

/// A client's TLS: the CA that signs the server's certificate and the name
/// to check it against.
#[derive(Clone)]
pub(crate) struct ClientTls {
    connector: TlsConnector,
    /// The name the server's certificate must carry.
    name: ServerName<'static>,
}

impl ClientTls {
    /// Trusts the certificates in `ca` (one or more, PEM) and checks the
    /// server's certificate against `name`: a DNS name or an IP address.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the CA file, or for a name that is neither.
    pub(crate) fn new(ca: &Path, name: &str) -> Result<ClientTls> {
        let mut roots = RootCertStore::empty();
        for cert in load_certs("channel_ca", ca)? {
            roots
                .add(cert)
                .map_err(|e| tls_error("channel_ca", ca, format!("not a usable CA: {e}")))?;
        }
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Config(format!("TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = Vec::new();
        let name = ServerName::try_from(name.to_owned()).map_err(|_| {
            Error::Config(format!(
                "channel_server_name {name:?} is neither a DNS name nor an IP address"
            ))
        })?;
        Ok(ClientTls {
            connector: TlsConnector::from(Arc::new(config)),
            name,
        })
    }

    /// Makes the TLS session on a connected `tcp`.
    ///
    /// # Errors
    ///
    /// The handshake's error (an untrusted certificate, a wrong name).
    pub(crate) async fn connect(&self, tcp: TcpStream) -> io::Result<Socket> {
        let stream = self.connector.connect(self.name.clone(), tcp).await?;
        Ok(Socket::Tls(Box::new(TlsSocket::new(stream.into()))))
    }
}

/// The host part of `HOST:PORT` (without brackets for IPv6), the name a
/// server's certificate is checked against when no other is given.
pub(crate) fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// A TLS session and what was read ahead of the reader (a peeked request
/// head), served before anything else.
pub(crate) struct TlsSocket {
    stream: tokio_rustls::TlsStream<TcpStream>,
    /// Bytes read by [`Socket::peek`] and not yet taken by a read.
    ahead: Vec<u8>,
    /// How many of `ahead` a read has taken.
    taken: usize,
}

impl TlsSocket {
    fn new(stream: tokio_rustls::TlsStream<TcpStream>) -> Self {
        TlsSocket {
            stream,
            ahead: Vec::new(),
            taken: 0,
        }
    }
}

/// A connection's byte stream: plain TCP or TLS.
pub(crate) enum Socket {
    Plain(TcpStream),
    Tls(Box<TlsSocket>),
}

impl Socket {
    /// Reads into `buf` without consuming: what a later read returns starts
    /// with these bytes. On plain TCP it is the kernel's peek (returns what
    /// is there); on TLS it reads more of the decrypted stream into a
    /// buffer ahead of the reader (waits for at least one more byte, unless
    /// `buf` is already full). `Ok(0)`: the peer closed before more came.
    ///
    /// # Errors
    ///
    /// The socket's.
    pub(crate) async fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Plain(tcp) => tcp.peek(buf).await,
            Socket::Tls(tls) => {
                let have = tls.ahead.len() - tls.taken;
                if have < buf.len() {
                    let start = tls.ahead.len();
                    tls.ahead.resize(start + (buf.len() - have), 0);
                    let read = tls.stream.read(&mut tls.ahead[start..]).await;
                    let n = *read.as_ref().unwrap_or(&0);
                    tls.ahead.truncate(start + n);
                    if read? == 0 {
                        return Ok(0);
                    }
                }
                let ahead = &tls.ahead[tls.taken..];
                let n = ahead.len().min(buf.len());
                buf[..n].copy_from_slice(&ahead[..n]);
                Ok(n)
            }
        }
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Socket::Tls(tls) => {
                if tls.taken < tls.ahead.len() {
                    let ahead = &tls.ahead[tls.taken..];
                    let n = ahead.len().min(buf.remaining());
                    buf.put_slice(&ahead[..n]);
                    tls.taken += n;
                    if tls.taken == tls.ahead.len() {
                        tls.ahead = Vec::new();
                        tls.taken = 0;
                    }
                    return Poll::Ready(Ok(()));
                }
                Pin::new(&mut tls.stream).poll_read(cx, buf)
            }
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Socket::Tls(tls) => Pin::new(&mut tls.stream).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Socket::Tls(tls) => Pin::new(&mut tls.stream).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Socket::Plain(tcp) => tcp.is_write_vectored(),
            Socket::Tls(tls) => tls.stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Socket::Tls(tls) => Pin::new(&mut tls.stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Socket::Tls(tls) => Pin::new(&mut tls.stream).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_of_an_address_is_what_the_certificate_is_checked_against() {
        assert_eq!(host_of("example.com:2206"), "example.com");
        assert_eq!(host_of("127.0.0.1:2206"), "127.0.0.1");
        assert_eq!(host_of("[::1]:2206"), "::1");
    }

    #[test]
    fn missing_files_are_named_in_the_error() {
        let error = ServerTls::load(Path::new("/nonexistent/cert.pem"), Path::new("/x/key.pem"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("tls_cert /nonexistent/cert.pem"), "{error}");
        assert!(error.contains("cannot read it"), "{error}");
    }
}
