//! The HTTP client: pooled keep-alive connections per receiver, no redirects,
//! no retries of its own, and a connect-time guard against internal addresses.
//!
//! The guard runs after DNS resolution (a name that resolves to 127.0.0.1 is
//! refused even if the name looked public), inside reqwest's resolver, so the
//! address checked is the address connected to: no DNS-rebinding window. IP
//! literals skip resolution, so [`check_literal_host`] checks them up front.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why an address is refused, or None when it is a public address.
pub fn refused_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_loopback() {
                Some("loopback address")
            } else if o == [169, 254, 169, 254] {
                Some("cloud metadata address")
            } else if v4.is_private() {
                Some("private address")
            } else if v4.is_link_local() {
                Some("link-local address")
            } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
                Some("shared (CGNAT) address")
            } else if v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast() || o[0] == 0 {
                Some("non-routable address")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return refused_range(IpAddr::V4(v4));
            }
            let s = v6.segments();
            if v6.is_loopback() {
                Some("loopback address")
            } else if s[0] == 0xfd00 && s[1] == 0x0ec2 && s[7] == 0x0254 {
                Some("cloud metadata address")
            } else if (s[0] & 0xfe00) == 0xfc00 {
                Some("private address")
            } else if (s[0] & 0xffc0) == 0xfe80 {
                Some("link-local address")
            } else if v6.is_unspecified() || v6.is_multicast() {
                Some("non-routable address")
            } else {
                None
            }
        }
    }
}

/// Resolves with the system resolver and drops refused addresses.
struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let allowed: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| match refused_range(a.ip()) {
                    Some(why) => {
                        refused.get_or_insert((a.ip(), why));
                        false
                    }
                    None => true,
                })
                .collect();
            if allowed.is_empty() {
                let message = match refused {
                    Some((ip, why)) => format!(
                        "refused to connect to {ip} ({host}): {why}; set walhook.settings \
                         allow_insecure_targets = true to allow it"
                    ),
                    None => format!("{host} did not resolve to any address"),
                };
                return Err(message.into());
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// Refuse an IP-literal host in a refused range (reqwest does not resolve those).
pub fn check_literal_host(url: &url::Url) -> Result<(), String> {
    let ip = match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
        _ => return Ok(()),
    };
    match refused_range(ip) {
        Some(why) => Err(format!(
            "refused to connect to {ip}: {why}; set walhook.settings allow_insecure_targets = true to allow it"
        )),
        None => Ok(()),
    }
}

/// The two clients; which one a request uses follows `allow_insecure_targets`.
#[derive(Clone)]
pub struct Clients {
    guarded: reqwest::Client,
    open: reqwest::Client,
}

fn builder(max_in_flight: usize) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        // a failed attempt is walhook's to retry, on the subscription's
        // schedule and recorded; reqwest's own retries (of HTTP/2 refused
        // streams) also cloned every request's headers in case they were needed
        .retry(reqwest::retry::never().max_retries_per_request(0))
        .no_proxy()
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(90))
        // as many idle connections as requests can run: with fewer, every
        // request over the pool's size closed its connection on return and
        // the next one opened a new one (a fan-out to 10 subscriptions of
        // one host spent a quarter of walhook's CPU connecting)
        .pool_max_idle_per_host(max_in_flight)
        .tcp_nodelay(true)
        .user_agent(concat!("walhook/", env!("CARGO_PKG_VERSION")))
}

impl Clients {
    /// Clients for at most `max_in_flight` requests at once.
    pub fn new(max_in_flight: usize) -> Result<Clients, reqwest::Error> {
        Ok(Clients {
            guarded: builder(max_in_flight)
                .dns_resolver(Arc::new(GuardedResolver))
                .build()?,
            open: builder(max_in_flight).build()?,
        })
    }

    pub fn get(&self, allow_insecure_targets: bool) -> &reqwest::Client {
        if allow_insecure_targets {
            &self.open
        } else {
            &self.guarded
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fc00::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
        ] {
            assert!(refused_range(ip.parse().unwrap()).is_some(), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:2800:220:1::1", "100.128.0.1"] {
            assert!(refused_range(ip.parse().unwrap()).is_none(), "{ip}");
        }
        assert_eq!(
            refused_range("169.254.169.254".parse().unwrap()),
            Some("cloud metadata address")
        );
        assert!(check_literal_host(&"https://127.0.0.1/x".parse().unwrap()).is_err());
        assert!(check_literal_host(&"https://example.com/x".parse().unwrap()).is_ok());
    }
}
