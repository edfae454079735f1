//! Reading the name servers of resolv.conf (reference §2.4): every
//! `nameserver` entry in file order, both families. Lines the parser does not
//! understand are reported and skipped, as the C library does.

use std::net::IpAddr;
use std::path::Path;

use crate::error::UsageError;

/// The name servers listed in `path`.
pub fn nameservers(path: &Path, warnings: &mut Vec<String>) -> Result<Vec<IpAddr>, UsageError> {
    let bytes = std::fs::read(path).map_err(|e| {
        UsageError::new(format!(
            "unable to read file {} (redirect.dns.resolvConfigPath), needed by --redirect-dns to find the DNS servers: {e}",
            path.display()
        ))
    })?;
    Ok(parse(&bytes, &path.display().to_string(), warnings))
}

/// Parses resolv.conf text.
pub fn parse(bytes: &[u8], shown: &str, warnings: &mut Vec<String>) -> Vec<IpAddr> {
    let (cfg, errors) = resolv_conf::Config::parse_with_errors(bytes);
    for e in errors {
        warnings.push(format!("{shown}: {e} (line skipped)"));
    }
    cfg.nameservers
        .iter()
        .map(|s| match s {
            resolv_conf::ScopedIp::V4(v4) => IpAddr::V4(*v4),
            resolv_conf::ScopedIp::V6(v6, _) => IpAddr::V6(*v6),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_families_in_file_order() {
        let mut w = Vec::new();
        let got = parse(
            b"# comment\nsearch example.com\nnameserver 10.0.0.2\nnameserver fd00::53\noptions ndots:2\nnameserver 127.0.0.53\n",
            "resolv.conf",
            &mut w,
        );
        let want: Vec<IpAddr> = vec![
            "10.0.0.2".parse().unwrap(),
            "fd00::53".parse().unwrap(),
            "127.0.0.53".parse().unwrap(),
        ];
        assert_eq!(got, want);
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn unreadable_files_are_usage_errors_naming_the_path() {
        let mut w = Vec::new();
        let e = nameservers(Path::new("/nonexistent/resolv.conf"), &mut w).unwrap_err();
        assert!(e.0.contains("/nonexistent/resolv.conf"), "{}", e.0);
    }
}
