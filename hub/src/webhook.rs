//! Webhooks as the Standard Webhooks convention has them: where they may go (HTTPS, and no
//! private, link-local or loopback address unless the operator allowed it), how they are
//! signed (`v1,` + base64 HMAC-SHA256 of `id.timestamp.body`), and how one is sent.
//!
//! The address checks run twice: when an endpoint is registered, and at every delivery on
//! the addresses its name resolves to then (a name that later resolves to a private address
//! reaches nothing). Redirects are not followed.

use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use base64::Engine as _;

/// The prefix of a Standard Webhooks secret.
pub(crate) const SECRET_PREFIX: &str = "whsec_";
/// Shortest and longest signing key accepted, in bytes (Standard Webhooks: 24 to 64).
const KEY_BYTES: std::ops::RangeInclusive<usize> = 24..=64;

/// What an endpoint may reach, as the operator registered it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Reach {
    /// Plain HTTP to a loopback address (tests, a local receiver).
    pub(crate) loopback: bool,
    /// Private and link-local addresses (a receiver inside the organisation's network).
    pub(crate) private: bool,
}

/// Why an address is special, if it is.
fn special(ip: IpAddr) -> Option<&'static str> {
    let ip = match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_loopback() {
                Some("loopback")
            } else if v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast() || o[0] == 0 {
                Some("unroutable")
            } else if v4.is_link_local() {
                Some("link-local")
            } else if v4.is_private() || (o[0] == 100 && (64..128).contains(&o[1])) {
                Some("private")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() || v6.is_multicast() {
                Some("unroutable")
            } else if s[0] & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if s[0] & 0xfe00 == 0xfc00 {
                Some("private")
            } else {
                None
            }
        }
    }
}

/// Whether one resolved address may be reached; the refusal says why.
fn allowed(ip: IpAddr, reach: Reach) -> Result<(), String> {
    match special(ip) {
        None => Ok(()),
        Some("loopback") if reach.loopback => Ok(()),
        Some("private" | "link-local") if reach.private => Ok(()),
        Some(kind) => Err(format!(
            "the endpoint's address is {kind} ({ip}); webhooks go to public addresses unless the operator allows {} at registration",
            match kind {
                "loopback" => "loopback (--allow-loopback)",
                "unroutable" => "nothing of the kind",
                _ => "private addresses (--allow-private)",
            }
        )),
    }
}

/// Checks an endpoint before it is registered: an absolute `https://` URL without
/// credentials, or `http://` to a loopback address when `reach.loopback`; literal addresses
/// (and names that resolve now) must be public unless `reach` allows them.
pub(crate) fn check_endpoint(endpoint: &str, reach: Reach) -> Result<String, String> {
    let url = url::Url::parse(endpoint.trim())
        .map_err(|e| format!("the endpoint is not an absolute URL ({e})"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("the endpoint must not carry a user name or password; Steward signs each request instead".into());
    }
    let host = url
        .host()
        .ok_or_else(|| "the endpoint names no host".to_string())?;
    let literal: Option<IpAddr> = match host {
        url::Host::Ipv4(a) => Some(IpAddr::V4(a)),
        url::Host::Ipv6(a) => Some(IpAddr::V6(a)),
        url::Host::Domain(_) => None,
    };
    let is_loopback_name =
        matches!(host, url::Host::Domain(d) if d.eq_ignore_ascii_case("localhost"));
    match url.scheme() {
        "https" => {}
        "http" if reach.loopback
            && (is_loopback_name || literal.is_some_and(|ip| special(ip) == Some("loopback"))) => {}
        "http" => {
            return Err("the endpoint must use https (plain http only to a loopback address, with --allow-loopback)".into())
        }
        other => return Err(format!("the endpoint's scheme `{other}` is not https")),
    }
    if let Some(ip) = literal {
        allowed(ip, reach)?;
    } else if is_loopback_name {
        if !reach.loopback {
            return Err(
                "the endpoint is localhost; allow loopback at registration (--allow-loopback)"
                    .into(),
            );
        }
    } else if let Ok(addrs) = (
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or(443),
    )
        .to_socket_addrs()
    {
        // A name that does not resolve here may still be registered: it is checked again,
        // on the addresses it resolves to, at every delivery.
        for a in addrs {
            allowed(a.ip(), reach)?;
        }
    }
    Ok(url.to_string())
}

/// Decodes a Standard Webhooks secret (`whsec_` + base64 of 24 to 64 key bytes).
pub(crate) fn parse_secret(text: &str) -> Result<Vec<u8>, String> {
    let b64 = text.trim().strip_prefix(SECRET_PREFIX).ok_or_else(|| {
        format!("a signing secret starts with `{SECRET_PREFIX}` followed by base64")
    })?;
    let key = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| "the signing secret after `whsec_` is not base64".to_string())?;
    if !KEY_BYTES.contains(&key.len()) {
        return Err(format!(
            "the signing secret holds {} bytes; Standard Webhooks keys are 24 to 64",
            key.len()
        ));
    }
    Ok(key)
}

/// A new secret: 32 random bytes, as `whsec_…`.
pub(crate) fn new_secret() -> Option<(Vec<u8>, String)> {
    let mut key = vec![0u8; 32];
    if !vault::crypto::fill_random(&mut key) {
        return None;
    }
    let text = format!(
        "{SECRET_PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(&key)
    );
    Some((key, text))
}

/// The `webhook-signature` header: one `v1,` signature per key, space-separated.
pub fn signature_header(keys: &[Vec<u8>], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut signed = format!("{id}.{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    keys.iter()
        .map(|k| {
            format!(
                "v1,{}",
                base64::engine::general_purpose::STANDARD
                    .encode(vault::crypto::hmac_sha256(k, &signed))
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// What an endpoint answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// An HTTP status, with its Retry-After in seconds if it gave one.
    Status(u16, Option<u64>),
    /// No answer: refused, timed out, or an address not allowed. The words say which (no
    /// personal value: an address and a code).
    Failed(String),
}

/// Resolves a host for one delivery, keeping only the addresses the endpoint may reach.
struct Guarded(Reach);

impl ureq::Resolver for Guarded {
    fn resolve(&self, netloc: &str) -> io::Result<Vec<SocketAddr>> {
        let all: Vec<SocketAddr> = netloc.to_socket_addrs()?.collect();
        let mut why = None;
        let ok: Vec<SocketAddr> = all
            .into_iter()
            .filter(|a| match allowed(a.ip(), self.0) {
                Ok(()) => true,
                Err(e) => {
                    why = Some(e);
                    false
                }
            })
            .collect();
        if ok.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                why.unwrap_or_else(|| "the endpoint's name resolved to no address".into()),
            ));
        }
        Ok(ok)
    }
}

/// Sends one signed POST; never follows a redirect.
pub(crate) fn post(
    endpoint: &str,
    reach: Reach,
    headers: &[(&str, String)],
    body: &[u8],
) -> Answer {
    let agent = ureq::AgentBuilder::new()
        .resolver(Guarded(reach))
        .redirects(0)
        .timeout_connect(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .user_agent("Steward-Webhooks/1")
        .build();
    let mut req = agent.post(endpoint).set("content-type", "application/json");
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let retry_after = |r: &ureq::Response| {
        r.header("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    match req.send_bytes(body) {
        Ok(r) => Answer::Status(r.status(), retry_after(&r)),
        Err(ureq::Error::Status(code, r)) => Answer::Status(code, retry_after(&r)),
        Err(ureq::Error::Transport(t)) => Answer::Failed(match t.kind() {
            ureq::ErrorKind::Dns => {
                "the endpoint's name did not resolve, or resolved only to addresses not allowed"
                    .into()
            }
            ureq::ErrorKind::InvalidUrl | ureq::ErrorKind::UnknownScheme => {
                "the endpoint is not a valid URL".into()
            }
            // The transport's own words say which (refused, timed out, a certificate no
            // trusted authority signed); they name the endpoint, never a person.
            _ => {
                let mut words = t.to_string();
                words.truncate(words.floor_char_boundary(300));
                format!("the connection failed: {words}")
            }
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_must_be_https_and_public_unless_allowed() {
        let none = Reach::default();
        let lo = Reach {
            loopback: true,
            private: false,
        };
        assert!(check_endpoint("https://203.0.113.9/hook", none).is_ok());
        for bad in [
            "http://203.0.113.9/hook",
            "https://10.1.2.3/x",
            "https://192.168.0.1/x",
            "https://172.20.0.1/x",
            "https://169.254.169.254/latest/meta-data",
            "https://[fe80::1]/x",
            "https://[fd00::1]/x",
            "https://[::ffff:10.0.0.1]/x",
            "https://127.0.0.1/x",
            "https://0.0.0.0/x",
            "https://user:pw@203.0.113.9/x",
            "ftp://203.0.113.9/x",
            "not a url",
        ] {
            assert!(check_endpoint(bad, none).is_err(), "{bad} was accepted");
        }
        assert!(check_endpoint("http://127.0.0.1:9/hook", lo).is_ok());
        assert!(check_endpoint("http://localhost:9/hook", lo).is_ok());
        // Loopback allowance does not open private ranges, nor plain http elsewhere.
        assert!(check_endpoint("https://10.1.2.3/x", lo).is_err());
        assert!(check_endpoint("http://203.0.113.9/x", lo).is_err());
        let private = Reach {
            loopback: false,
            private: true,
        };
        assert!(check_endpoint("https://10.1.2.3/x", private).is_ok());
        assert!(check_endpoint("https://0.0.0.0/x", private).is_err());
    }

    #[test]
    fn secrets_and_signatures_follow_standard_webhooks() {
        let (key, text) = new_secret().expect("random");
        assert_eq!(parse_secret(&text).expect("parses"), key);
        assert!(parse_secret("abc").is_err());
        assert!(parse_secret("whsec_!!").is_err());
        assert!(parse_secret("whsec_AAAA").is_err(), "3 bytes is too short");
        // The value Python's hmac module gives for the same key (32 bytes of 0x0b) and
        // signed content ("msg_1.1700000000.{}"): an independent implementation.
        let k = vec![0x0b; 32];
        let h = signature_header(std::slice::from_ref(&k), "msg_1", 1_700_000_000, b"{}");
        assert_eq!(h, "v1,suje0OdZ1jisEDS4Z26Tij5IlAnzvsbv6JgMGBZNc7A=");
        let again = signature_header(&[k.clone(), vec![1; 32]], "msg_1", 1_700_000_000, b"{}");
        assert_eq!(again.split(' ').count(), 2);
        assert_eq!(again.split(' ').next(), Some(h.as_str()));
        assert_ne!(h, signature_header(&[k], "msg_1", 1_700_000_000, b"{ }"));
    }
}
