//! Whether an analyzer URL leads back to this distributor: registering one that does would
//! send every packet routed there back in, forever.
//!
//! A host has many spellings (`127.1`, `0x7f.1`, `2130706433`, `[::ffff:127.0.0.1]`, the
//! machine's own name, ...), so the URL is judged by what its host resolves to, with the
//! resolver the delivery client uses: hyper's `HttpConnector` parses an IP literal and
//! otherwise asks getaddrinfo, and so does [`tokio::net::lookup_host`]. The decision itself
//! is [`reaching`], a pure function; [`check`] is the I/O around it (resolve, probe which
//! addresses are this machine's).
//!
//! What it cannot see: a name that resolves elsewhere now and here later (DNS rebinding),
//! a port forwarded to this one (NAT, a container's published port), and a loop through
//! another distributor. Those need a guard on the packets themselves.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use crate::distributor::delivery::address::AnalyzerUrl;

/// How long resolving an analyzer's host may take, so that a registration cannot hang its
/// handler (getaddrinfo itself cannot be cancelled: it finishes on a blocking thread).
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Refuses `url` if its host does not resolve, or if any address it resolves to reaches
/// the distributor listening on `listen`. The error says which spelling resolved to what.
pub async fn check(url: &AnalyzerUrl, listen: SocketAddr) -> Result<(), String> {
    check_with(url, listen, is_local).await
}

/// [`check`], with `is_local` telling this machine's addresses (tests give their own).
pub async fn check_with(
    url: &AnalyzerUrl,
    listen: SocketAddr,
    is_local: impl Fn(IpAddr) -> bool,
) -> Result<(), String> {
    let resolved = resolve(url).await?;
    match reaching(listen, &resolved, is_local) {
        Some(addr) => Err(format!(
            "{} resolves to {addr}, which is this distributor itself; packets routed there would come back forever",
            url.base
        )),
        None => Ok(()),
    }
}

/// Every address `url`'s host resolves to, at its port, within [`RESOLVE_TIMEOUT`].
async fn resolve(url: &AnalyzerUrl) -> Result<Vec<SocketAddr>, String> {
    let host = url.bare_host();
    let lookup = tokio::net::lookup_host((host, url.port));
    let addrs: Vec<SocketAddr> = match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
        Ok(Ok(addrs)) => addrs.collect(),
        Ok(Err(e)) => return Err(format!("`{host}` does not resolve: {e}")),
        Err(_) => {
            return Err(format!(
                "`{host}` does not resolve: no answer within {RESOLVE_TIMEOUT:?}"
            ));
        }
    };
    if addrs.is_empty() {
        return Err(format!("`{host}` does not resolve: no addresses"));
    }
    Ok(addrs)
}

/// The first of `resolved` (in canonical form) that reaches a distributor listening on
/// `listen`, if any: at the same port, an address that is
///
/// - the listen address itself;
/// - a loopback address (`127.0.0.0/8`, `::1`), whatever address the listener has;
/// - unspecified (`0.0.0.0`, `::`): connecting to it reaches this machine;
/// - one of this machine's own addresses (`is_local`), whatever address the listener has.
///
/// The last two rules are conservative: a listener bound to `127.0.0.1` is not reached at
/// `192.0.2.2` even when that is this machine's; refusing it costs only a second service on
/// this machine at the same port, and spares knowing whether a `[::]` listener takes IPv4
/// too, or whether this machine redirects one of its addresses to another.
///
/// IPv4-mapped addresses (`::ffff:127.0.0.1`) are judged as the IPv4 address they carry,
/// which is where a dual-stack socket connects; so are the deprecated IPv4-compatible ones
/// (`::127.0.0.1`), for safety.
pub fn reaching(
    listen: SocketAddr,
    resolved: &[SocketAddr],
    is_local: impl Fn(IpAddr) -> bool,
) -> Option<SocketAddr> {
    let own = listen.ip().to_canonical();
    let reaches = |ip: IpAddr| ip == own || ip.is_loopback() || ip.is_unspecified() || is_local(ip);
    resolved
        .iter()
        .filter(|addr| addr.port() == listen.port())
        .map(|addr| SocketAddr::new(addr.ip().to_canonical(), addr.port()))
        .find(|addr| {
            let compatible = match addr.ip() {
                IpAddr::V6(v6) if !v6.is_loopback() => v6.to_ipv4().map(IpAddr::V4),
                _ => None,
            };
            reaches(addr.ip()) || compatible.is_some_and(reaches)
        })
}

/// Whether `ip` is one of this machine's addresses: a UDP socket binds to it (at port 0,
/// so no port is taken, and nothing is sent).
///
/// Edge cases, on Linux: every `127.0.0.0/8` address binds (loopback is the whole block),
/// and so do `0.0.0.0` and `::`, a subnet's broadcast address, `255.255.255.255` and
/// multicast addresses; [`reaching`] refuses the first ones anyway, and the others only at
/// this distributor's port, where no analyzer can be. With `net.ipv4.ip_nonlocal_bind=1`
/// (or `net.ipv6.ip_nonlocal_bind=1`) every address binds, so every address at this port is
/// refused: safe, if strict. An IPv6 link-local address binds only with its scope, which a
/// URL cannot carry (and `check_host` refuses), and an IPv6 address still in duplicate
/// address detection does not bind yet.
pub fn is_local(ip: IpAddr) -> bool {
    UdpSocket::bind((ip, 0)).is_ok()
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    /// Port of the listeners below.
    const P: u16 = 3000;

    fn at(ip: &str, port: u16) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), port)
    }

    /// The pure decision, over listeners and addresses, with a fixed idea of this machine:
    /// its addresses are the loopback ones, 192.0.2.2 and fd00::2.
    #[test]
    fn decision_table() {
        let local = |ip: IpAddr| {
            ip.is_loopback()
                || ip.is_unspecified()
                || ip == IpAddr::from([192, 0, 2, 2])
                || ip == "fd00::2".parse::<IpAddr>().unwrap()
        };
        let listeners = ["127.0.0.1", "0.0.0.0", "::", "::1", "192.0.2.2"];
        let refused = [
            "127.0.0.1",
            "127.0.0.2",
            "::1",
            "::ffff:127.0.0.1",
            "::127.0.0.1",
            "0.0.0.0",
            "::",
            "::ffff:0.0.0.0",
            "192.0.2.2",
            "::ffff:192.0.2.2",
            "fd00::2",
        ];
        let accepted = ["192.0.2.10", "::ffff:192.0.2.10", "fd00::3", "10.0.0.5"];
        for listener in listeners {
            let listen = at(listener, P);
            for ip in refused {
                let hit = reaching(listen, &[at("192.0.2.10", P), at(ip, P)], local);
                assert!(hit.is_some(), "{ip} accepted for a listener on {listen}");
                // Another port is another service, whatever the address.
                assert_eq!(reaching(listen, &[at(ip, P + 1)], local), None, "{ip}");
            }
            for ip in accepted {
                assert_eq!(reaching(listen, &[at(ip, P)], local), None, "{ip}");
            }
        }
        // The listen address itself, even where the probe does not count it as local.
        assert!(reaching(at("10.0.0.5", P), &[at("10.0.0.5", P)], |_| false).is_some());
        assert!(reaching(at("10.0.0.5", P), &[at("::ffff:10.0.0.5", P)], |_| false).is_some());
        // The address reported is the canonical one.
        assert_eq!(
            reaching(at("0.0.0.0", P), &[at("::ffff:127.0.0.1", P)], |_| false),
            Some(at("127.0.0.1", P))
        );
        assert_eq!(reaching(at("0.0.0.0", P), &[], local), None);
    }

    /// The probe on this machine: loopback and unspecified addresses are local; TEST-NET-3
    /// (203.0.113.0/24, documentation only) and a documentation IPv6 address are not.
    #[test]
    fn the_probe_knows_this_machine() {
        assert!(is_local(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert!(is_local(IpAddr::V4(Ipv4Addr::UNSPECIFIED)));
        assert!(!is_local(IpAddr::from([203, 0, 113, 77])));
        assert!(!is_local("2001:db8::77".parse().unwrap()));
    }

    /// This machine's name, as the kernel has it.
    fn hostname() -> Option<String> {
        let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
        Some(name.trim().to_owned()).filter(|n| !n.is_empty())
    }

    /// Every spelling of this machine an adversary used, through the real resolver and
    /// probe, for a listener on loopback and on every address. Spellings that are IP
    /// literals or inet_aton forms always resolve and must be refused as loops; names
    /// (`localhost.`, `localhost.localdomain`, the host name) depend on this machine's
    /// resolver, and must be refused either as loops or as not resolving.
    #[tokio::test]
    async fn every_spelling_of_this_machine_is_refused() {
        let always = [
            "127.0.0.1",
            "localhost",
            "[::1]",
            "127.1",
            "0x7f.1",
            "2130706433",
            "0177.0.0.1",
            "[::ffff:127.0.0.1]",
            "[::ffff:7f00:1]",
            "0",
            "[::ffff:0.0.0.0]",
        ];
        let name = hostname();
        let mut names = vec!["localhost.".to_owned(), "localhost.localdomain".to_owned()];
        names.extend(name.clone());
        for listener in ["127.0.0.1", "0.0.0.0"] {
            let listen = at(listener, P);
            for host in always {
                let url: AnalyzerUrl = format!("http://{host}:{P}").parse().unwrap();
                let error = check(&url, listen).await.unwrap_err();
                assert!(
                    error.contains("which is this distributor itself"),
                    "{host} for {listen}: {error}"
                );
                // The same host at another port is another service.
                let url: AnalyzerUrl = format!("http://{host}:{}", P + 1).parse().unwrap();
                assert_eq!(check(&url, listen).await, Ok(()), "{host}");
            }
            for host in &names {
                let url: AnalyzerUrl = format!("http://{host}:{P}").parse().unwrap();
                let error = check(&url, listen).await.unwrap_err();
                if error.contains("does not resolve") {
                    eprintln!("`{host}` does not resolve on this machine: refused as such");
                } else {
                    assert!(
                        error.contains("which is this distributor itself"),
                        "{host} for {listen}: {error}"
                    );
                }
            }
        }
        if name.is_none() {
            eprintln!("/proc/sys/kernel/hostname is not readable: the host's name is not checked");
        }
        // A name that never resolves (RFC 6761) is refused, and says so.
        let url: AnalyzerUrl = format!("http://nowhere.invalid:{P}").parse().unwrap();
        let error = check(&url, at("127.0.0.1", P)).await.unwrap_err();
        assert!(
            error.starts_with("`nowhere.invalid` does not resolve: "),
            "{error}"
        );
    }

    /// Another machine's address, with a probe saying it is not this machine's, is
    /// accepted at the distributor's port; the error names the spelling and the address.
    #[tokio::test]
    async fn other_machines_are_accepted_and_errors_say_what_resolved() {
        let not_local = |_: IpAddr| false;
        for listener in ["127.0.0.1", "0.0.0.0", "::"] {
            let listen = at(listener, P);
            for host in ["192.0.2.10", "[::ffff:192.0.2.10]", "[2001:db8::10]"] {
                let url: AnalyzerUrl = format!("http://{host}:{P}").parse().unwrap();
                assert_eq!(check_with(&url, listen, not_local).await, Ok(()), "{host}");
            }
        }
        let url: AnalyzerUrl = format!("http://127.1:{P}").parse().unwrap();
        assert_eq!(
            check_with(&url, at("0.0.0.0", P), not_local).await,
            Err(format!(
                "http://127.1:{P} resolves to 127.0.0.1:{P}, which is this distributor itself; \
                 packets routed there would come back forever"
            ))
        );
    }
}
