//! The agent's socket for `--protocol syslog-tcp|syslog-udp`: a packet's body (written
//! by [`super::encode`]) goes to `--syslog-target` as it is over TCP (octet-counted
//! frames, so one write), or a datagram per line over UDP. Syslog has no answer, so a
//! packet written whole is acknowledged; a connection that fails is opened again for the
//! next packet.

use std::net::SocketAddr;

use http::StatusCode;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};

use super::outcome::{Failure, FailureKind};
use super::protocol::Protocol;

/// One agent's syslog socket, opened at its first packet.
pub(crate) struct SyslogSocket {
    protocol: Protocol,
    target: SocketAddr,
    tcp: Option<TcpStream>,
    udp: Option<UdpSocket>,
}

impl SyslogSocket {
    pub(crate) fn new(protocol: Protocol, target: SocketAddr) -> Self {
        Self {
            protocol,
            target,
            tcp: None,
            udp: None,
        }
    }

    /// Writes `body`; 200 when it was written whole.
    pub(crate) async fn send(&mut self, body: &[u8]) -> Result<StatusCode, Failure> {
        let result = match self.protocol {
            Protocol::SyslogUdp => self.send_udp(body).await,
            _ => self.send_tcp(body).await,
        };
        if result.is_err() {
            self.tcp = None;
            self.udp = None;
        }
        result.map(|()| StatusCode::OK)
    }

    async fn send_tcp(&mut self, body: &[u8]) -> Result<(), Failure> {
        if self.tcp.is_none() {
            let stream = TcpStream::connect(self.target)
                .await
                .map_err(|e| Failure::new(FailureKind::Connect, format!("{}: {e}", self.target)))?;
            let _ = stream.set_nodelay(true);
            self.tcp = Some(stream);
        }
        let stream = self.tcp.as_mut().expect("connected above");
        stream
            .write_all(body)
            .await
            .map_err(|e| Failure::new(FailureKind::Other, format!("writing: {e}")))
    }

    async fn send_udp(&mut self, body: &[u8]) -> Result<(), Failure> {
        if self.udp.is_none() {
            let local: SocketAddr = match self.target {
                SocketAddr::V4(_) => ([0, 0, 0, 0], 0).into(),
                SocketAddr::V6(_) => ([0u16; 8], 0).into(),
            };
            let connect = |e: std::io::Error| {
                Failure::new(FailureKind::Connect, format!("{}: {e}", self.target))
            };
            let socket = UdpSocket::bind(local).await.map_err(connect)?;
            socket.connect(self.target).await.map_err(connect)?;
            self.udp = Some(socket);
        }
        let socket = self.udp.as_ref().expect("bound above");
        for line in body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            socket.send(line).await.map_err(|e| {
                // A port nobody listens on answers with ICMP, which a later send reports.
                Failure::new(FailureKind::Connect, format!("sending a datagram: {e}"))
            })?;
        }
        Ok(())
    }
}
