//! `PUT /v1/webhook`: any body. A URL the strict policy (outside the local stack) accepts is https,
//! carries no credentials, and does not name an internal address or this machine.

#![no_main]

use std::net::IpAddr;

use keel_security::egress::{is_public, EgressPolicy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let Ok(raw) = serde_json::from_slice::<serde_json::Value>(body) else {
        return;
    };
    let Some(url) = raw.get("url").and_then(|u| u.as_str()) else {
        return;
    };
    let local = EgressPolicy {
        allow_http: true,
        allow_private_targets: true,
    };
    let _ = local.check_url(url);
    if let Ok(accepted) = EgressPolicy::default().check_url(url) {
        assert_eq!(accepted.scheme(), "https", "{url}");
        assert!(accepted.username().is_empty() && accepted.password().is_none());
        match accepted.host() {
            Some(url::Host::Ipv4(ip)) => assert!(is_public(IpAddr::V4(ip)), "{url}"),
            Some(url::Host::Ipv6(ip)) => assert!(is_public(IpAddr::V6(ip)), "{url}"),
            Some(url::Host::Domain(name)) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                assert!(
                    name != "localhost" && !name.ends_with(".localhost"),
                    "{url}"
                );
            }
            None => panic!("an accepted URL has a host: {url}"),
        }
    }
});
