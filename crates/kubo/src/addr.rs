//! API addresses: turns what a user or a Kubo repository gives (an HTTP URL such
//! as `http://127.0.0.1:5001`, a bare `host:port`, or a multiaddr such as
//! `/ip4/127.0.0.1/tcp/5001` as Kubo writes into `$IPFS_PATH/api`) into the base
//! URL the client posts to.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use r3mes_ipfs::{Error, Result};

/// Normalises an API address into a base URL without trailing slash, such as
/// `http://127.0.0.1:5001`.
///
/// Accepted forms: `http://host:port` (a trailing `/` or `/api/v0` is dropped),
/// `host:port`, and the multiaddrs `/ip4/A/tcp/P`, `/ip6/A/tcp/P`,
/// `/dns/H/tcp/P`, `/dns4/H/tcp/P`, `/dns6/H/tcp/P`, each optionally followed by
/// `/http`. Unspecified addresses (`0.0.0.0`, `::`) become loopback, since a
/// daemon listening on every interface answers there. HTTPS and Unix sockets are
/// refused: this client is built without TLS and speaks TCP only.
pub fn api_base_url(address: &str) -> Result<String> {
    let text = address.trim();
    if text.is_empty() {
        return Err(invalid(address, "empty address"));
    }
    let url = if text.starts_with('/') {
        multiaddr_to_url(text).map_err(|reason| invalid(address, &reason))?
    } else if let Some(rest) = text.strip_prefix("http://") {
        format!("http://{rest}")
    } else if text.starts_with("https://") {
        return Err(invalid(
            address,
            "HTTPS is not supported (this client is built without TLS); use the daemon's local http:// address",
        ));
    } else if text.contains("://") {
        return Err(invalid(
            address,
            "only http:// URLs and multiaddrs are supported",
        ));
    } else {
        format!("http://{text}")
    };
    let trimmed = url.trim_end_matches('/');
    let trimmed = trimmed
        .strip_suffix("/api/v0")
        .unwrap_or(trimmed)
        .trim_end_matches('/');
    let parsed = reqwest::Url::parse(trimmed).map_err(|e| invalid(address, &e.to_string()))?;
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid(address, "no host"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(invalid(
            address,
            "a query or fragment has no place in an API address",
        ));
    }
    Ok(trimmed.to_string())
}

/// Converts a TCP multiaddr into an `http://` URL; the error is the reason.
fn multiaddr_to_url(text: &str) -> std::result::Result<String, String> {
    let parts: Vec<&str> = text.split('/').skip(1).collect();
    let mut iter = parts.iter().copied();
    let host = match (iter.next(), iter.next()) {
        (Some("ip4"), Some(ip)) => {
            let ip: Ipv4Addr = ip
                .parse()
                .map_err(|_| format!("{ip:?} is not an IPv4 address"))?;
            let ip = if ip.is_unspecified() {
                Ipv4Addr::LOCALHOST
            } else {
                ip
            };
            IpAddr::V4(ip).to_string()
        }
        (Some("ip6"), Some(ip)) => {
            let ip: Ipv6Addr = ip
                .parse()
                .map_err(|_| format!("{ip:?} is not an IPv6 address"))?;
            let ip = if ip.is_unspecified() {
                Ipv6Addr::LOCALHOST
            } else {
                ip
            };
            format!("[{ip}]")
        }
        (Some("dns" | "dns4" | "dns6"), Some(name)) if !name.is_empty() => name.to_string(),
        (Some("unix"), _) => return Err("Unix-socket API addresses are not supported".into()),
        (Some(proto), _) => return Err(format!("unsupported multiaddr protocol {proto:?}")),
        (None, _) => return Err("empty multiaddr".into()),
    };
    let port = match (iter.next(), iter.next()) {
        (Some("tcp"), Some(port)) => port
            .parse::<u16>()
            .map_err(|_| format!("{port:?} is not a TCP port"))?,
        _ => return Err("expected /tcp/<port> after the host".into()),
    };
    match iter.next() {
        None | Some("") | Some("http") => {}
        Some("https" | "tls") => {
            return Err("HTTPS is not supported (this client is built without TLS)".into());
        }
        Some(other) => return Err(format!("unexpected multiaddr component {other:?}")),
    }
    if let Some(extra) = iter.find(|p| !p.is_empty()) {
        return Err(format!("unexpected multiaddr component {extra:?}"));
    }
    Ok(format!("http://{host}:{port}"))
}

/// The multiaddr Kubo uses for a loopback TCP listener on `port`.
pub fn loopback_multiaddr(port: u16) -> String {
    format!("/ip4/127.0.0.1/tcp/{port}")
}

fn invalid(address: &str, reason: &str) -> Error {
    Error::InvalidArgument(format!("invalid IPFS API address {address:?}: {reason}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_urls() {
        assert_eq!(
            api_base_url("http://127.0.0.1:5001").unwrap(),
            "http://127.0.0.1:5001"
        );
        assert_eq!(
            api_base_url(" http://127.0.0.1:5001/ ").unwrap(),
            "http://127.0.0.1:5001"
        );
        assert_eq!(
            api_base_url("http://localhost:5001/api/v0/").unwrap(),
            "http://localhost:5001"
        );
        assert_eq!(
            api_base_url("127.0.0.1:5001").unwrap(),
            "http://127.0.0.1:5001"
        );
        assert_eq!(
            api_base_url("http://[::1]:5001").unwrap(),
            "http://[::1]:5001"
        );
    }

    #[test]
    fn accepts_multiaddrs() {
        assert_eq!(
            api_base_url("/ip4/127.0.0.1/tcp/5001").unwrap(),
            "http://127.0.0.1:5001"
        );
        assert_eq!(
            api_base_url("/ip4/127.0.0.1/tcp/5001\n").unwrap(),
            "http://127.0.0.1:5001"
        );
        assert_eq!(
            api_base_url("/ip4/0.0.0.0/tcp/5001").unwrap(),
            "http://127.0.0.1:5001"
        );
        assert_eq!(
            api_base_url("/ip6/::1/tcp/5001").unwrap(),
            "http://[::1]:5001"
        );
        assert_eq!(
            api_base_url("/ip6/::/tcp/5001").unwrap(),
            "http://[::1]:5001"
        );
        assert_eq!(
            api_base_url("/dns4/ipfs.local/tcp/80/http").unwrap(),
            "http://ipfs.local:80"
        );
        assert_eq!(
            api_base_url("/dns/node/tcp/5001/").unwrap(),
            "http://node:5001"
        );
    }

    #[test]
    fn rejects_what_it_cannot_reach() {
        for bad in [
            "",
            "   ",
            "https://127.0.0.1:5001",
            "ftp://x:1",
            "/unix/tmp/ipfs.sock",
            "/ip4/127.0.0.1",
            "/ip4/300.0.0.1/tcp/5001",
            "/ip4/127.0.0.1/tcp/99999",
            "/ip4/127.0.0.1/udp/5001",
            "/ip4/127.0.0.1/tcp/5001/https",
            "/ip4/127.0.0.1/tcp/5001/http/extra",
            "/quic/1",
            "/",
            "http://",
            "http://127.0.0.1:5001?x=1",
        ] {
            let err = api_base_url(bad).expect_err(bad);
            assert!(
                err.to_string().contains("invalid IPFS API address"),
                "{err}"
            );
        }
    }

    #[test]
    fn loopback() {
        assert_eq!(loopback_multiaddr(5001), "/ip4/127.0.0.1/tcp/5001");
    }
}
