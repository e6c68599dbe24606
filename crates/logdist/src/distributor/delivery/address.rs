//! Who an analyzer is and where it lives: its id, and the base URL deliveries and probes go
//! to. Shared by `--analyzer`, `POST /analyzer/register` and every delivery protocol.
//!
//! The protocols over HTTP take `http://` and `https://` URLs; `forward`, a TCP stream,
//! takes `tcp://host:port` and `tls://host:port` (see [`AnalyzerUrl::check_protocol`]).

use std::net::IpAddr;
use std::str::FromStr;

use http::Uri;
use http::uri::{Authority, PathAndQuery, Scheme};

/// How an analyzer is reached: the scheme of its URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `http://`, port 80 by default.
    Http,
    /// `https://`, port 443 by default.
    Https,
    /// `tcp://`: a plain TCP stream, port 24224 (Fluent forward's) by default.
    Tcp,
    /// `tls://`: a TCP stream in TLS, port 24224 by default.
    Tls,
}

impl Transport {
    /// Whether it is HTTP (in TLS or not), as opposed to a bare stream.
    pub fn is_http(self) -> bool {
        matches!(self, Self::Http | Self::Https)
    }
}

/// Where an analyzer receives packets: an `http://host:port` or `https://host:port` base
/// URL, or `tcp://host:port` or `tls://host:port` for a protocol over a TCP stream,
/// checked so that registration cannot point the distributor at other schemes, at
/// paths, or at addresses no analyzer lives at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalyzerUrl {
    /// The base URL as shown in stats, without a trailing slash.
    pub base: String,
    /// The host as written (a name, an IPv4 address, or an IPv6 address in brackets).
    pub host: String,
    /// The port, explicit or the scheme's default.
    pub port: u16,
    scheme: Scheme,
    authority: Authority,
    transport: Transport,
}

impl AnalyzerUrl {
    /// The host as resolvers take it: an IPv6 address without its brackets. Whether the
    /// URL leads back to the distributor itself is judged by what this resolves to (see
    /// `self_loop`).
    pub fn bare_host(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }

    /// How it is reached: its URL's scheme.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// `{base}{path}`: where a delivery protocol sends (`/packets`, `/health`...). Cheap:
    /// the scheme and authority were parsed once, and are shared, not copied.
    pub fn uri(&self, path: &'static str) -> Uri {
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(PathAndQuery::from_static(path))
            .build()
            .expect("a checked base URL and a static absolute path make a URI")
    }
}

impl FromStr for AnalyzerUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (scheme, default_port, transport) = match s.split_once("://") {
            Some(("http", _)) => ("http", 80, Transport::Http),
            Some(("https", _)) => ("https", 443, Transport::Https),
            Some(("tcp", _)) => ("tcp", 24224, Transport::Tcp),
            Some(("tls", _)) => ("tls", 24224, Transport::Tls),
            Some((other, _)) => {
                return Err(format!(
                    "URL scheme `{other}` is not supported; use http://host:port or https://host:port (tcp://host:port or tls://host:port for protocol forward)"
                ));
            }
            None => return Err(format!("`{s}` has no scheme; use http://host:port")),
        };
        let uri: Uri = s.parse().map_err(|e| format!("`{s}` is not a URL: {e}"))?;
        let authority = uri
            .authority()
            .ok_or_else(|| format!("`{s}` has no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!("`{s}` carries credentials; analyzer URLs may not"));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(format!(
                "`{s}` has a path or query; give the base URL {scheme}://host:port"
            ));
        }
        if s.contains('#') {
            return Err(format!(
                "`{s}` has a fragment; give the base URL {scheme}://host:port"
            ));
        }
        let host = authority.host().to_owned();
        // What follows the host: nothing, or `:PORT` with a port that fits in 16 bits.
        let port = match authority.as_str()[host.len()..].strip_prefix(':') {
            None => default_port,
            Some(digits) => match digits.parse::<u16>() {
                Ok(0) => return Err(format!("`{s}` has port 0, which nothing listens on")),
                Ok(port) if digits.bytes().all(|b| b.is_ascii_digit()) => port,
                _ => {
                    return Err(format!(
                        "`{s}` has port `{digits}`; a port is a number from 1 to 65535"
                    ));
                }
            },
        };
        check_host(&host).map_err(|why| format!("`{s}`: {why}"))?;
        let base = format!("{scheme}://{authority}");
        Ok(Self {
            scheme: uri.scheme().cloned().unwrap_or(Scheme::HTTP),
            authority: authority.clone(),
            host,
            port,
            base,
            transport,
        })
    }
}

/// A host an analyzer can live at: a DNS name, or an IP address that is not unspecified,
/// multicast, broadcast or link-local (where cloud metadata services answer).
fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("no host".to_owned());
    }
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<IpAddr>() {
        let odd = match ip {
            IpAddr::V4(v4) => {
                v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast() || v4.is_link_local()
            }
            IpAddr::V6(v6) => {
                v6.is_unspecified() || v6.is_multicast() || v6.is_unicast_link_local()
            }
        };
        if odd {
            return Err(format!(
                "{ip} is an unspecified, multicast, broadcast or link-local address, not an analyzer's"
            ));
        }
        return Ok(());
    }
    if host.len() > 253 {
        return Err("the host name is longer than 253 characters".to_owned());
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if !host.trim_end_matches('.').split('.').all(label_ok) {
        return Err(format!("`{host}` is not a valid host name"));
    }
    Ok(())
}

/// Longest analyzer id accepted.
pub const MAX_ID_LEN: usize = 128;

/// An analyzer id: 1 to 128 visible ASCII characters, so it is safe in logs, metrics
/// labels and URLs.
pub fn check_id(id: &str) -> Result<&str, String> {
    if id.is_empty() {
        return Err("analyzer id is empty".to_owned());
    }
    if id.len() > MAX_ID_LEN {
        return Err(format!(
            "analyzer id is {} bytes long; the limit is {MAX_ID_LEN}",
            id.len()
        ));
    }
    if let Some(c) = id.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "analyzer id contains {c:?}; use visible ASCII characters"
        ));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_and_bare_hosts() {
        let url: AnalyzerUrl = "https://analyzer.internal:8443".parse().unwrap();
        assert_eq!(
            url.uri("/packets"),
            "https://analyzer.internal:8443/packets"
        );
        assert_eq!(url.uri("/health"), "https://analyzer.internal:8443/health");
        assert_eq!(url.port, 8443);
        assert_eq!(url.bare_host(), "analyzer.internal");
        let url: AnalyzerUrl = "https://analyzer.internal".parse().unwrap();
        assert_eq!(url.port, 443);
        let url: AnalyzerUrl = "http://[::1]:3001".parse().unwrap();
        assert_eq!(url.host, "[::1]");
        assert_eq!(url.bare_host(), "::1");
        let url: AnalyzerUrl = "http://[::ffff:127.0.0.1]:3001".parse().unwrap();
        assert_eq!(url.bare_host(), "::ffff:127.0.0.1");
        // The inet_aton spellings are names to this parser; the resolver reads them.
        for host in ["127.1", "0x7f.1", "2130706433", "0177.0.0.1", "localhost."] {
            let url: AnalyzerUrl = format!("http://{host}:3000").parse().unwrap();
            assert_eq!(url.bare_host(), host);
        }
    }

    #[test]
    fn streams_are_for_forward_and_http_for_the_others() {
        let tcp: AnalyzerUrl = "tcp://127.0.0.1:24224".parse().unwrap();
        assert_eq!((tcp.transport(), tcp.port), (Transport::Tcp, 24224));
        assert_eq!(tcp.base, "tcp://127.0.0.1:24224");
        let tls: AnalyzerUrl = "tls://fluentd.internal".parse().unwrap();
        assert_eq!((tls.transport(), tls.port), (Transport::Tls, 24224));
        assert!(
            "udp://h:1"
                .parse::<AnalyzerUrl>()
                .unwrap_err()
                .contains("tcp://")
        );
        assert!("tcp://h:1/x".parse::<AnalyzerUrl>().is_err());
    }

    #[test]
    fn ids_are_checked() {
        assert!(check_id("analyzer_1").is_ok());
        assert!(check_id("").is_err());
        assert!(check_id(&"x".repeat(10_000)).is_err());
        assert!(check_id("a b").is_err());
        assert!(check_id("a\nb").is_err());
    }
}
