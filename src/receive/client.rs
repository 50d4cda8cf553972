//! Who sent a request: the TCP peer, or behind trusted reverse proxies the rightmost
//! `X-Forwarded-For` (else RFC 7239 `Forwarded: for=`) address that is not a trusted proxy.

use std::net::IpAddr;

use crate::config::IpRange;

/// The client address of `req` (its `X-Forwarded-For` lines joined, a proxy may append its
/// own; else its `Forwarded` header) behind the `trusted` proxies.
pub fn of_request(req: &actix_web::HttpRequest, trusted: &[IpRange]) -> Option<IpAddr> {
    let xff: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .collect();
    let forwarded = (!xff.is_empty()).then(|| xff.join(", ")).or_else(|| {
        req.headers()
            .get("forwarded")
            .and_then(|v| v.to_str().ok())
            .map(forwarded_for)
    });
    client_ip(
        req.peer_addr().map(|a| a.ip()),
        forwarded.as_deref(),
        trusted,
    )
}

/// The client address of a request.
pub fn client_ip(
    peer: Option<IpAddr>,
    forwarded_for: Option<&str>,
    trusted: &[IpRange],
) -> Option<IpAddr> {
    let peer = peer?;
    let is_trusted = |ip: IpAddr| trusted.iter().any(|r| r.contains(ip));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let Some(header) = forwarded_for else {
        return Some(peer);
    };
    let mut last = peer;
    for hop in header.rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) if is_trusted(ip) => last = ip,
            Ok(ip) => return Some(ip),
            Err(_) => return Some(last),
        }
    }
    Some(last)
}

/// The `for=` addresses of an RFC 7239 `Forwarded` header, as an `X-Forwarded-For` list
/// (`for="[2001:db8::1]:4711"` → `2001:db8::1`; obfuscated and unknown nodes are kept as text
/// and stop the walk).
pub fn forwarded_for(header: &str) -> String {
    header
        .split(',')
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (k, v) = pair.trim().split_once('=')?;
                k.trim().eq_ignore_ascii_case("for").then(|| {
                    let v = v.trim().trim_matches('"');
                    match v.strip_prefix('[') {
                        Some(rest) => rest.split(']').next().unwrap_or(rest).to_string(),
                        None => v.split(':').next().unwrap_or(v).to_string(),
                    }
                })
            })
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_ip_range;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_forwarded_header_is_read_like_x_forwarded_for() {
        assert_eq!(
            forwarded_for(
                r#"for=192.0.2.60;proto=http;by=203.0.113.43, for="[2001:db8:cafe::17]:4711""#
            ),
            "192.0.2.60, 2001:db8:cafe::17"
        );
        let trusted = [parse_ip_range("10.0.0.0/8").unwrap()];
        let list = forwarded_for("for=198.51.100.7, for=10.0.0.5");
        assert_eq!(
            client_ip(Some(ip("10.0.0.2")), Some(&list), &trusted),
            Some(ip("198.51.100.7"))
        );
    }

    #[test]
    fn forwarded_for_from_an_untrusted_peer_is_ignored() {
        let trusted = [parse_ip_range("10.0.0.0/8").unwrap()];
        assert_eq!(
            client_ip(Some(ip("203.0.113.9")), Some("1.2.3.4"), &trusted),
            Some(ip("203.0.113.9"))
        );
    }

    #[test]
    fn the_client_is_the_rightmost_address_that_is_not_a_trusted_proxy() {
        let trusted = [parse_ip_range("10.0.0.0/8").unwrap()];
        assert_eq!(
            client_ip(
                Some(ip("10.0.0.2")),
                Some("6.6.6.6, 198.51.100.7, 10.0.0.5"),
                &trusted
            ),
            Some(ip("198.51.100.7"))
        );
        assert_eq!(
            client_ip(Some(ip("10.0.0.2")), None, &trusted),
            Some(ip("10.0.0.2"))
        );
    }
}
