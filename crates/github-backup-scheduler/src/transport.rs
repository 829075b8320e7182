//! Whether credentials may travel to the configured server. A GitHub token (at `login`) or an
//! API key (every other call) sent over plain HTTP to another machine can be read by anyone on
//! the path, so that needs `--insecure-http`, and then warns every time. Loopback is exempt: the
//! traffic never leaves the machine.

use std::net::IpAddr;

use crate::exit::{CliError, CliResult};

/// `Ok(None)` when credentials may go to `server` silently, `Ok(Some(warning))` when only
/// because of `--insecure-http`, and a usage error otherwise.
pub fn check(server: &str, insecure_http: bool) -> CliResult<Option<String>> {
    let url = reqwest::Url::parse(server)
        .map_err(|e| CliError::usage(format!("{server:?} is not a server URL: {e}")))?;
    if url.scheme() != "http" || is_loopback(&url) {
        return Ok(None);
    }
    let host = url.host_str().unwrap_or_default();
    if insecure_http {
        Ok(Some(format!(
            "warning: sending credentials to {host} over plain HTTP (--insecure-http): anyone on \
             the network path can read them"
        )))
    } else {
        Err(CliError::usage(format!(
            "refusing to send credentials to {host} over plain HTTP, where anyone on the network \
             path can read them: use an https:// server URL, or pass --insecure-http if you \
             accept that"
        )))
    }
}

fn is_loopback(url: &reqwest::Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn plain_http_is_refused_off_loopback() {
        for ok in [
            "https://backup.example.com",
            "http://127.0.0.1:3000",
            "http://127.8.9.10",
            "http://localhost:3000",
            "http://[::1]:3000",
        ] {
            assert_eq!(check(ok, false).unwrap(), None, "{ok}");
        }
        for refused in [
            "http://backup.example.com",
            "http://10.0.0.5:3000",
            "http://[fe80::1]",
        ] {
            let err = check(refused, false).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{refused}");
            assert!(err.to_string().contains("--insecure-http"), "{err}");
            assert!(check(refused, true).unwrap().unwrap().contains("warning"));
        }
        assert!(check("not a url", false).is_err());
    }
}
