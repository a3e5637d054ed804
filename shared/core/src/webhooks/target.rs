//! Which webhook targets are refused: anything but `https` (unless private targets are
//! allowed), and any address in loopback, private, link-local, shared, unspecified, multicast
//! or cloud-metadata space. Checked when an endpoint is created and against every address the
//! sender resolves before each attempt (DNS rebinding).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why a target is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("the URL is not valid")]
    InvalidUrl,
    #[error("only https URLs are accepted")]
    NotHttps,
    #[error("the URL must not carry credentials")]
    Credentials,
    #[error("the host resolves to a private, loopback, link-local or metadata address")]
    PrivateAddress,
    #[error("the host does not resolve")]
    Unresolved,
}

/// A parsed target: what the sender connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub url: url::Url,
    pub host: String,
    pub port: u16,
}

/// Checks the URL's form: scheme, host, no credentials. Addresses are checked separately,
/// after resolution ([`address_allowed`]).
pub fn parse_target(text: &str, allow_private: bool) -> Result<Target, TargetError> {
    let url = url::Url::parse(text).map_err(|_| TargetError::InvalidUrl)?;
    match url.scheme() {
        "https" => {}
        "http" if allow_private => {}
        _ => return Err(TargetError::NotHttps),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(TargetError::Credentials);
    }
    let host = match url.host() {
        Some(url::Host::Domain(d)) => d.to_owned(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => return Err(TargetError::InvalidUrl),
    };
    let port = url.port_or_known_default().ok_or(TargetError::InvalidUrl)?;
    if let Ok(ip) = host.parse::<IpAddr>()
        && !address_allowed(ip, allow_private)
    {
        return Err(TargetError::PrivateAddress);
    }
    Ok(Target { url, host, port })
}

/// Whether a resolved address may be connected to.
pub fn address_allowed(ip: IpAddr, allow_private: bool) -> bool {
    allow_private || is_public(ip)
}

fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local() // 169.254/16, the metadata service's home
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) // AWS metadata (IPv6)
        || ip.to_ipv4().is_some_and(|v4| !is_public_v4(v4)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_is_accepted_unless_private_targets_are_allowed() {
        assert!(parse_target("https://hooks.example.com/x", false).is_ok());
        assert_eq!(
            parse_target("http://hooks.example.com/x", false),
            Err(TargetError::NotHttps)
        );
        assert_eq!(
            parse_target("ftp://hooks.example.com/x", true),
            Err(TargetError::NotHttps)
        );
        assert!(parse_target("http://127.0.0.1:9/x", true).is_ok());
        assert_eq!(
            parse_target("https://u:p@hooks.example.com/", false),
            Err(TargetError::Credentials)
        );
        assert_eq!(
            parse_target("not a url", false),
            Err(TargetError::InvalidUrl)
        );
    }

    #[test]
    fn literal_private_and_metadata_addresses_are_refused() {
        for url in [
            "https://127.0.0.1/",
            "https://10.1.2.3/",
            "https://172.16.0.1/",
            "https://192.168.1.1/",
            "https://169.254.169.254/latest/meta-data/",
            "https://100.64.0.1/",
            "https://0.0.0.0/",
            "https://[::1]/",
            "https://[fe80::1]/",
            "https://[fc00::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://[fd00:ec2::254]/",
        ] {
            assert_eq!(
                parse_target(url, false),
                Err(TargetError::PrivateAddress),
                "{url}"
            );
        }
        assert!(parse_target("https://8.8.8.8/", false).is_ok());
        assert!(parse_target("https://[2606:4700::1111]/", false).is_ok());
    }

    #[test]
    fn resolved_addresses_are_judged_the_same_way() {
        assert!(!address_allowed("127.0.0.1".parse().unwrap(), false));
        assert!(!address_allowed("169.254.169.254".parse().unwrap(), false));
        assert!(address_allowed("127.0.0.1".parse().unwrap(), true));
        assert!(address_allowed("93.184.216.34".parse().unwrap(), false));
    }
}
