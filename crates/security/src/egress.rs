//! Where Keel may send a participant's webhook. A webhook URL is chosen by a participant, so without
//! a check it could point Keel at its own insides (the ops ports, the databases, a cloud metadata
//! endpoint). Outside the local stack a webhook must be `https` and must not reach a loopback,
//! private, link-local or otherwise internal address, at registration (the URL as written) and at
//! every delivery (every address its name resolves to, so a name re-pointed later is caught too).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use url::{Host, Url};

/// `[webhooks]` settings that widen what is allowed; both off unless configured (the local stack
/// turns them on: its test receivers listen on loopback over plain HTTP).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EgressPolicy {
    /// Allow `http` URLs as well as `https`.
    pub allow_http: bool,
    /// Allow loopback, private, link-local and other internal addresses.
    pub allow_private_targets: bool,
}

/// Why a webhook target is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressRefusal {
    #[error("not an absolute URL: {0}")]
    NotAUrl(String),
    #[error("scheme {0} is not allowed: webhooks use https")]
    Scheme(String),
    #[error("the URL has no host")]
    NoHost,
    #[error("the URL must not carry credentials")]
    Credentials,
    #[error("{0} is an internal address (loopback, private, link-local or reserved); webhooks go to public addresses")]
    Internal(IpAddr),
    #[error("{0} names this machine; webhooks go to public addresses")]
    Localhost(String),
}

impl EgressPolicy {
    /// The URL, if a webhook may be registered at it.
    pub fn check_url(&self, raw: &str) -> Result<Url, EgressRefusal> {
        let url = Url::parse(raw).map_err(|e| EgressRefusal::NotAUrl(e.to_string()))?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            other => return Err(EgressRefusal::Scheme(other.to_owned())),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(EgressRefusal::Credentials);
        }
        match url.host().ok_or(EgressRefusal::NoHost)? {
            Host::Ipv4(ip) => self.check_ip(IpAddr::V4(ip))?,
            Host::Ipv6(ip) => self.check_ip(IpAddr::V6(ip))?,
            Host::Domain(name) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                if !self.allow_private_targets
                    && (name == "localhost" || name.ends_with(".localhost"))
                {
                    return Err(EgressRefusal::Localhost(name));
                }
            }
        }
        Ok(url)
    }

    /// Whether a delivery may connect to `ip`.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), EgressRefusal> {
        if self.allow_private_targets || is_public(ip) {
            Ok(())
        } else {
            Err(EgressRefusal::Internal(ip))
        }
    }
}

/// Whether `ip` is an ordinary public unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared address space (RFC 6598)
                || (a == 192 && b == 0) // IETF protocol assignments
                || (a == 198 && (b == 18 || b == 19)) // benchmarking
                || a >= 240) // reserved
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || (first == 0x2001 && v6.segments()[1] == 0x0db8)) // documentation
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: EgressPolicy = EgressPolicy {
        allow_http: false,
        allow_private_targets: false,
    };

    #[test]
    fn outside_the_local_stack_only_public_https_targets_are_allowed() {
        assert!(STRICT.check_url("https://hooks.example.com/keel").is_ok());
        assert!(STRICT.check_url("https://93.184.216.34/keel").is_ok());
        for (url, expected) in [
            ("http://hooks.example.com/keel", "scheme http"),
            ("ftp://hooks.example.com/", "scheme ftp"),
            ("https://127.0.0.1:9111/metrics", "internal address"),
            ("https://localhost/", "names this machine"),
            ("https://api.localhost./", "names this machine"),
            ("https://10.0.0.7/", "internal"),
            ("https://172.20.1.1/", "internal"),
            ("https://192.168.1.1/", "internal"),
            ("https://169.254.169.254/latest/meta-data/", "internal"),
            ("https://100.64.0.1/", "internal"),
            ("https://0.0.0.0/", "internal"),
            ("https://[::1]/", "internal"),
            ("https://[fe80::1]/", "internal"),
            ("https://[fd00::1]/", "internal"),
            ("https://[::ffff:127.0.0.1]/", "internal"),
            ("https://user:pw@hooks.example.com/", "credentials"),
            ("not a url", "not an absolute URL"),
        ] {
            let refused = STRICT.check_url(url).unwrap_err().to_string();
            assert!(refused.contains(expected), "{url}: {refused}");
        }
    }

    #[test]
    fn the_local_stack_may_allow_loopback_over_http() {
        let local = EgressPolicy {
            allow_http: true,
            allow_private_targets: true,
        };
        assert!(local.check_url("http://127.0.0.1:9999/hook").is_ok());
        assert!(local.check_ip("127.0.0.1".parse().unwrap()).is_ok());
        assert!(STRICT.check_ip("127.0.0.1".parse().unwrap()).is_err());
        assert!(STRICT.check_ip("8.8.8.8".parse().unwrap()).is_ok());
    }
}
