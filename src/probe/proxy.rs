//! One request through a forward proxy: resolve and connect to the proxy (TLS to it for an
//! `https://` proxy), then either a CONNECT tunnel (`https://` targets, and HTTP/2 with prior
//! knowledge) inside which the probe goes on as if direct, or plain forwarding (`http://`
//! targets: the request in absolute form, with the proxy's credentials).
//!
//! Everything up to a usable tunnel or forwarded request is the proxy's part: a name that does
//! not resolve, a refused or hung connection, a failed TLS handshake with it, or an answer to
//! CONNECT other than 2xx all fail with reason `proxy`, never `connect` or `status` of the
//! target. A proxy's own error answer to a forwarded request is the target's response as seen
//! through the proxy (`status`).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use http::header::PROXY_AUTHORIZATION;
use http::HeaderMap;
use http::Method;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use url::Url;

use super::budget::ReadBudget;
use super::exchange::{Probe, Response};
use super::resolve::resolve;
use super::{Failure, Phase, Reason};
use crate::config::{HttpVersion, ProxyEndpoint};
use crate::limits::{MAX_PROXY_HEAD, MAX_PROXY_HEADERS};

impl Probe<'_> {
    /// [`Probe::exchange`] through `via`.
    pub(super) async fn through(
        &mut self,
        via: &ProxyEndpoint,
        url: &Url,
        method: &Method,
        body: bytes::Bytes,
    ) -> Result<(Response, ReadBudget), Failure> {
        self.out.proxy = Some(via.shown.clone());
        let host = url
            .host_str()
            .ok_or_else(|| Failure::new(Reason::Protocol, "URL without host"))?;
        let fail = |f: Failure| Failure {
            reason: Reason::Proxy,
            detail: format!("proxy {}: {}", via.shown, f.detail),
            ..f
        };
        self.step = Phase::Resolve;
        let started = Instant::now();
        let addrs = resolve(&via.host, via.port, self.target.ip_protocol).await;
        self.out.phases.add(Phase::Resolve, started.elapsed());
        let addr = addrs.map_err(fail)?[0];
        self.out.remote = Some(addr);
        let tcp = self.connect(addr).await.map_err(fail)?;
        let budget = ReadBudget::new(self.target.max_body_bytes);
        let mut request = self.request(url, method, body)?;
        let tunnel = url.scheme() == "https" || self.target.http_version == HttpVersion::Http2;
        self.step = Phase::Proxy;
        let started = Instant::now();
        let io = self.secure_proxy(via, tcp).await.map_err(fail)?;
        if !tunnel {
            if via.tls {
                self.out.phases.add(Phase::Proxy, started.elapsed());
            }
            // Absolute form, with the proxy's credentials. Only those: a proxy forwards the
            // other headers to the target, and `proxy_connect_headers` are for the proxy alone
            // (as Go's `ProxyConnectHeader`, which blackbox_exporter users configure).
            if let Some(auth) = via.headers.get(PROXY_AUTHORIZATION) {
                request
                    .headers_mut()
                    .insert(PROXY_AUTHORIZATION, auth.clone());
            }
            let io = TokioIo::new(budget.wrap(Tunnel::new(io, Bytes::new())));
            let response = self.send(io, false, request, true).await;
            return Ok((response.map_err(|f| budget.explain(f))?, budget));
        }
        let mut io = io;
        let authority = authority(url, host);
        let answer = connect(&mut io, &authority, &via.connect_headers()).await;
        if !matches!(answer, Err(Head::Unreadable(_))) {
            // The exchange finished: the proxy answered, whatever it said.
            self.out.phases.add(Phase::Proxy, started.elapsed());
        }
        let rest = answer.map_err(|e| fail(e.into_failure(&authority)))?;
        let tunnel = budget.wrap(Tunnel::new(io, rest));
        let response = self.secure_and_send(url, host, tunnel, request);
        Ok((response.await.map_err(|f| budget.explain(f))?, budget))
    }

    /// The connection to the proxy itself: TLS for an `https://` proxy, verified with the
    /// target's TLS settings (its CA file, `insecure_skip_verify`) against the proxy's name.
    async fn secure_proxy(
        &mut self,
        via: &ProxyEndpoint,
        tcp: TcpStream,
    ) -> Result<ProxyIo, Failure> {
        if !via.tls {
            return Ok(ProxyIo::Plain(tcp));
        }
        let (config, _) = self.target.tls.client_config(&[b"http/1.1"]);
        let name = via
            .host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let name = rustls::pki_types::ServerName::try_from(name)
            .map_err(|_| Failure::new(Reason::Proxy, "invalid TLS server name"))?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| Failure::new(Reason::Proxy, format!("TLS handshake: {e}")))?;
        Ok(ProxyIo::Tls(Box::new(tls)))
    }
}

/// `host:port` of `url`, as CONNECT names it.
fn authority(url: &Url, host: &str) -> String {
    let port = url.port_or_known_default().unwrap_or(443);
    format!("{host}:{port}")
}

/// Why a CONNECT did not open a tunnel.
#[derive(Debug)]
enum Head {
    /// No complete answer: the connection failed or closed, or the answer was not HTTP or
    /// larger than [`MAX_PROXY_HEAD`].
    Unreadable(String),
    /// The proxy answered with a status other than 2xx, and this reason phrase.
    Refused(u16, String),
}

impl Head {
    fn into_failure(self, authority: &str) -> Failure {
        match self {
            Head::Unreadable(why) => {
                Failure::new(Reason::Proxy, format!("CONNECT {authority}: {why}"))
            }
            Head::Refused(code, phrase) => Failure::new(
                Reason::Proxy,
                format!("CONNECT {authority} answered {code} {phrase}"),
            ),
        }
    }
}

/// Sends `CONNECT authority` with `headers` and reads the proxy's answer head, at most
/// [`MAX_PROXY_HEAD`] bytes of it. On a 2xx, the bytes read after the head (which belong to the
/// tunnel: an HTTP/2 server may speak first).
async fn connect<S>(io: &mut S, authority: &str, headers: &HeaderMap) -> Result<Bytes, Head>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n").into_bytes();
    for (name, value) in headers {
        request.extend_from_slice(name.as_str().as_bytes());
        request.extend_from_slice(b": ");
        request.extend_from_slice(value.as_bytes());
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");
    let unreadable = |e: io::Error| Head::Unreadable(e.to_string());
    io.write_all(&request).await.map_err(unreadable)?;
    io.flush().await.map_err(unreadable)?;
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        let room = (MAX_PROXY_HEAD - buf.len()) as u64;
        if room == 0 {
            return Err(Head::Unreadable(format!(
                "the answer's head exceeds {MAX_PROXY_HEAD} bytes"
            )));
        }
        let n = (&mut *io)
            .take(room)
            .read_buf(&mut buf)
            .await
            .map_err(unreadable)?;
        if n == 0 {
            return Err(Head::Unreadable(
                "the proxy closed the connection without an answer".into(),
            ));
        }
        let mut lines = [httparse::EMPTY_HEADER; MAX_PROXY_HEADERS];
        let mut head = httparse::Response::new(&mut lines);
        match head.parse(&buf) {
            Ok(httparse::Status::Partial) => continue,
            Ok(httparse::Status::Complete(len)) => {
                let code = head.code.unwrap_or(0);
                if !(200..300).contains(&code) {
                    let phrase: String =
                        head.reason.unwrap_or_default().chars().take(100).collect();
                    return Err(Head::Refused(code, phrase));
                }
                buf.advance(len);
                return Ok(buf.freeze());
            }
            Err(e) => return Err(Head::Unreadable(format!("not an HTTP answer: {e}"))),
        }
    }
}

/// The connection to a proxy: plain TCP, or TLS for an `https://` proxy.
pub(super) enum ProxyIo {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// The stream a probe speaks through a proxy: the bytes read past the CONNECT answer's head
/// first, then the connection.
pub(super) struct Tunnel {
    rest: Bytes,
    io: ProxyIo,
}

impl Tunnel {
    fn new(io: ProxyIo, rest: Bytes) -> Self {
        Self { rest, io }
    }
}

impl AsyncRead for Tunnel {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.rest.is_empty() {
            let n = self.rest.len().min(buf.remaining());
            buf.put_slice(&self.rest[..n]);
            self.rest.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncRead for ProxyIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut *self {
            ProxyIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ProxyIo::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ProxyIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut *self {
            ProxyIo::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ProxyIo::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut *self {
            ProxyIo::Plain(s) => Pin::new(s).poll_flush(cx),
            ProxyIo::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut *self {
            ProxyIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ProxyIo::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl AsyncWrite for Tunnel {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scripted proxy end: what it answers CONNECT with, and what the probe wrote.
    async fn answer(reply: &[u8]) -> (Result<Bytes, Head>, String) {
        let (mut client, mut server) = tokio::io::duplex(64 << 10);
        let reply = reply.to_vec();
        let proxy = tokio::spawn(async move {
            let mut seen = vec![0u8; 4096];
            let n = server.read(&mut seen).await.unwrap();
            server.write_all(&reply).await.unwrap();
            drop(server);
            String::from_utf8_lossy(&seen[..n]).into_owned()
        });
        let mut headers = HeaderMap::new();
        headers.insert("x-team", "probe".parse().unwrap());
        let result = connect(&mut client, "example.com:443", &headers).await;
        (result, proxy.await.unwrap())
    }

    #[tokio::test]
    async fn a_2xx_opens_the_tunnel_and_keeps_what_follows_the_head() {
        let (result, sent) = answer(b"HTTP/1.1 200 Connection established\r\n\r\nPRI *").await;
        assert_eq!(&result.unwrap()[..], b"PRI *");
        assert_eq!(
            sent,
            "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nx-team: probe\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn anything_else_says_what_the_proxy_answered() {
        let (result, _) = answer(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n").await;
        assert!(
            matches!(result, Err(Head::Refused(407, ref p)) if p == "Proxy Authentication Required")
        );
        let (result, _) = answer(b"SSH-2.0-OpenSSH\r\n\r\n").await;
        assert!(
            matches!(result, Err(Head::Unreadable(ref w)) if w.starts_with("not an HTTP answer"))
        );
        let (result, _) = answer(b"HTTP/1.1 200 OK\r\n").await;
        assert!(matches!(result, Err(Head::Unreadable(ref w)) if w.contains("without an answer")));
    }

    #[tokio::test]
    async fn an_endless_head_is_cut_at_the_limit() {
        let mut flood = b"HTTP/1.1 200 OK\r\nX-Long: ".to_vec();
        flood.resize(MAX_PROXY_HEAD + 100, b'y');
        let (result, _) = answer(&flood).await;
        assert!(
            matches!(result, Err(Head::Unreadable(ref w)) if w.contains("exceeds 16384 bytes")),
            "{result:?}"
        );
    }
}
