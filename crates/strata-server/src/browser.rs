//! Browser safety (docs/design.md, "Browser safety"): what keeps a web page the user happens to visit
//! from using their browser against a Strata it can reach — appending, deleting or scavenging (CSRF),
//! or reading it through a name of the attacker's that resolves to it (DNS rebinding) — and CORS for
//! the origins the operator lists. Always on, before routing and before any handler:
//!
//! - `Host` must name a loopback host (`localhost`, `*.localhost`), an IP address, or one of
//!   `--allowed-hosts`, else 403 `host_not_allowed`. A rebinding page reaches the server under the
//!   attacker's name; an IP address cannot be rebound, so it can only name this server.
//! - A request that may change state (any method but GET, HEAD and OPTIONS) whose `Origin` is neither
//!   the server's own (the scheme-less authority it was sent to, its `Host`) nor a `--cors-origin` is
//!   refused with 403 `origin_not_allowed` — `Origin: null` (a sandboxed page, a file) too. Browsers
//!   send `Origin` with every such request; programs (the CLI, `strata-client`, curl) send none.
//! - Such a request declaring a content type a page may send without asking first (a form's
//!   `application/x-www-form-urlencoded` or `multipart/form-data`, `text/plain`) is refused with 415
//!   `unsupported_media_type`, whatever its `Origin`. Bodies are JSON, read only when declared so
//!   ([`crate::extract::JsonBody`]), which makes every request with a body one a browser must ask for
//!   first (CORS preflight) — and the server answers a preflight only for a listed origin.
//! - CORS: a preflight (`OPTIONS` with `Access-Control-Request-Method`) from a listed origin is
//!   answered 204 with what it may send; from any other origin 403 `origin_not_allowed`. Answers to a
//!   listed origin carry `Access-Control-Allow-Origin`; nothing else gets CORS headers.
//!
//! Every refusal of this layer is counted in `/metrics` (`strata_browser_refusals_total{rule}`).

use crate::error::ApiError;
use crate::metrics::BrowserRefusal;
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::ops::ControlFlow;

/// How long a browser may keep an answered preflight.
const PREFLIGHT_MAX_AGE_SECONDS: u32 = 600;
/// What a listed origin may send: the API's methods and the request headers it reads.
const CORS_ALLOW_METHODS: &str = "GET, POST, PUT, DELETE";
const CORS_ALLOW_HEADERS: &str = "content-type, last-event-id";

/// The hosts and origins a server accepts from browsers beyond its own (`--allowed-hosts`,
/// `--cors-origin`).
#[derive(Debug, Clone, Default)]
pub struct BrowserPolicy {
    /// Host names, lowercase, without a port or a trailing dot.
    allowed_hosts: Vec<String>,
    /// `--allowed-hosts '*'`: any host (behind a proxy that checks it).
    any_host: bool,
    /// Origins, lowercase, `scheme://host[:port]` without a default port.
    cors_origins: Vec<String>,
    /// The server serves HTTPS: its own origin is `https://` the host it is reached by.
    tls: bool,
}

impl BrowserPolicy {
    /// Checks and keeps the operator's lists: host names (a port is ignored; `*` allows any host) and
    /// origins (`http://` or `https://`, a host, an optional port, nothing after).
    pub fn new(allowed_hosts: &[String], cors_origins: &[String]) -> Result<Self, String> {
        let mut policy = BrowserPolicy::default();
        for host in allowed_hosts {
            let host = host.trim();
            if host == "*" {
                policy.any_host = true;
                continue;
            }
            if host.contains('*') {
                return Err(format!(
                    "--allowed-hosts {host:?}: wildcards are not supported; name each host, or give `*` alone for any"
                ));
            }
            let name = host_name(host).filter(|name| !name.is_empty() && !name.contains('/'));
            match name {
                Some(name) => policy.allowed_hosts.push(name.to_ascii_lowercase()),
                None => return Err(format!("--allowed-hosts {host:?} is not a host name (e.g. strata.example.com)")),
            }
        }
        for origin in cors_origins {
            match normalize_origin(origin.trim()) {
                Some(origin) => policy.cors_origins.push(origin),
                None => {
                    return Err(format!(
                        "--cors-origin {origin:?} is not an origin: scheme, host and optional port, nothing after \
                         (e.g. https://console.example.com or http://localhost:5173)"
                    ));
                }
            }
        }
        Ok(policy)
    }

    /// The same lists for a server that serves HTTPS (`true`) or plain HTTP.
    pub fn serving_tls(mut self, tls: bool) -> Self {
        self.tls = tls;
        self
    }

    /// Whether a request sent to `host` (a `Host` header or a URI's authority) may be answered. Runs
    /// on every request: it compares in place, allocating nothing.
    pub fn host_allowed(&self, host: &str) -> bool {
        if self.any_host {
            return true;
        }
        if let Some(bracketed) = host.strip_prefix('[') {
            return bracketed.split_once(']').is_some_and(|(address, port)| {
                address.parse::<std::net::Ipv6Addr>().is_ok() && (port.is_empty() || is_port(port.strip_prefix(':')))
            });
        }
        let Some(name) = host_name(host) else { return false };
        let bytes = name.as_bytes();
        name.parse::<std::net::Ipv4Addr>().is_ok()
            || name.eq_ignore_ascii_case("localhost")
            || (bytes.len() > LOCALHOST_SUFFIX.len()
                && bytes[bytes.len() - LOCALHOST_SUFFIX.len()..].eq_ignore_ascii_case(LOCALHOST_SUFFIX))
            || self.allowed_hosts.iter().any(|allowed| allowed.eq_ignore_ascii_case(name))
    }

    /// The origin as listed, if `origin` is one of `--cors-origin`.
    fn listed(&self, origin: &str) -> bool {
        normalize_origin(origin).is_some_and(|origin| self.cors_origins.contains(&origin))
    }
}

/// Names under `localhost` are loopback names (RFC 6761).
const LOCALHOST_SUFFIX: &[u8] = b".localhost";

fn is_port(port: Option<&str>) -> bool {
    port.is_some_and(|port| !port.is_empty() && port.bytes().all(|byte| byte.is_ascii_digit()))
}

/// `host[:port]` → the host without a trailing dot; `None` if the port is not a number.
fn host_name(host: &str) -> Option<&str> {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => {
            if !is_port(Some(port)) {
                return None;
            }
            name
        }
        _ => host,
    };
    Some(name.trim_end_matches('.'))
}

/// `scheme://host[:port]`, lowercase, the scheme's default port left out; `None` for anything else
/// (`null`, a path, another scheme).
fn normalize_origin(origin: &str) -> Option<String> {
    let origin = origin.to_ascii_lowercase();
    let (scheme, authority) = origin.split_once("://")?;
    let default_port = match scheme {
        "http" => ":80",
        "https" => ":443",
        _ => return None,
    };
    let valid = !authority.is_empty()
        && authority.bytes().all(|byte| byte.is_ascii_alphanumeric() || b".-:[]".contains(&byte))
        && (authority.starts_with('[') || authority.matches(':').count() <= 1);
    if !valid {
        return None;
    }
    let authority = authority.strip_suffix(default_port).unwrap_or(authority);
    Some(format!("{scheme}://{authority}"))
}

/// Whether `origin` is the origin of the server the request was sent to as `host`: scheme (`https`
/// when it serves TLS), host and port, the scheme's default port left out on both sides.
fn same_origin(origin: &str, host: Option<&str>, tls: bool) -> bool {
    let scheme = if tls { "https" } else { "http" };
    let (Some(origin), Some(own)) =
        (normalize_origin(origin), host.and_then(|host| normalize_origin(&format!("{scheme}://{host}"))))
    else {
        return false;
    };
    origin == own
}

/// A content type a page may send cross-origin without a preflight (the Fetch standard's
/// CORS-safelisted request content types).
fn sendable_without_preflight(content_type: &str) -> bool {
    let essence = crate::extract::media_type(content_type);
    ["application/x-www-form-urlencoded", "multipart/form-data", "text/plain"]
        .iter()
        .any(|safelisted| essence.eq_ignore_ascii_case(safelisted))
}

fn header_text<'h>(headers: &'h HeaderMap, name: &header::HeaderName) -> Option<&'h str> {
    headers.get(name).map(|value| value.to_str().unwrap_or("\u{fffd}"))
}

pub(crate) fn host_not_allowed(host: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "host_not_allowed",
        format!(
            "this server does not answer requests for host {host:?} (a page of another site may have pointed that \
             name at it); use a loopback name or an IP address, or start the server with --allowed-hosts naming it"
        ),
    )
}

fn origin_not_allowed(origin: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "origin_not_allowed",
        format!(
            "a page of origin {origin:?} may not change this server's state; nothing was done (start the server \
             with --cors-origin naming that origin to allow it)"
        ),
    )
}

fn form_refused(content_type: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!(
            "a request that changes state cannot be sent as {content_type:?} (what a web form or a page sends \
             unasked); nothing was done — send JSON with Content-Type: application/json"
        ),
    )
}

/// The checks above, then the request, then the CORS headers of a listed origin.
pub(crate) async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let allow = match check(&state, &request) {
        ControlFlow::Continue(allow) => allow,
        ControlFlow::Break(answer) => return answer,
    };
    let mut response = next.run(request).await;
    if let Some(origin) = allow {
        allow_origin(response.headers_mut(), origin);
    }
    response
}

/// What [`guard`] decides before the request goes on: a refusal or a preflight's answer (`Break`),
/// or the `Access-Control-Allow-Origin` its answer carries, if any.
fn check(state: &AppState, request: &Request) -> ControlFlow<Response, Option<HeaderValue>> {
    let policy = &state.browser;
    let headers = request.headers();
    let refuse = |refusal: BrowserRefusal, error: ApiError| {
        state.metrics.count_browser_refusal(refusal);
        ControlFlow::Break(error.into_response())
    };
    let host = header_text(headers, &header::HOST).or_else(|| request.uri().authority().map(|a| a.as_str()));
    if let Some(host) = host
        && !policy.host_allowed(host)
    {
        return refuse(BrowserRefusal::Host, host_not_allowed(host));
    }
    let origin = header_text(headers, &header::ORIGIN);
    let listed = origin.filter(|origin| policy.listed(origin)).and_then(|origin| HeaderValue::from_str(origin).ok());
    let method = request.method();
    if method == Method::OPTIONS && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
        return match (origin, listed) {
            (_, Some(listed)) => ControlFlow::Break(preflight(listed)),
            (Some(origin), None) => refuse(BrowserRefusal::Origin, origin_not_allowed(origin)),
            (None, None) => {
                ControlFlow::Break(ApiError::invalid("a CORS preflight without an Origin header").into_response())
            }
        };
    }
    if !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        if let Some(origin) = origin
            && listed.is_none()
            && !same_origin(origin, host, policy.tls)
        {
            return refuse(BrowserRefusal::Origin, origin_not_allowed(origin));
        }
        if let Some(content_type) = header_text(headers, &header::CONTENT_TYPE)
            && sendable_without_preflight(content_type)
        {
            return refuse(BrowserRefusal::ContentType, form_refused(content_type));
        }
    }
    ControlFlow::Continue(listed)
}

fn allow_origin(headers: &mut HeaderMap, origin: HeaderValue) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.append(header::VARY, HeaderValue::from_static("origin"));
}

fn preflight(origin: HeaderValue) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    allow_origin(headers, origin);
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(CORS_ALLOW_METHODS));
    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static(CORS_ALLOW_HEADERS));
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(PREFLIGHT_MAX_AGE_SECONDS));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(hosts: &[&str], origins: &[&str]) -> BrowserPolicy {
        let strings = |items: &[&str]| items.iter().map(|item| item.to_string()).collect::<Vec<_>>();
        BrowserPolicy::new(&strings(hosts), &strings(origins)).unwrap()
    }

    #[test]
    fn loopback_names_ip_addresses_and_listed_hosts_are_allowed_other_names_not() {
        let open = policy(&[], &[]);
        for host in [
            "127.0.0.1:2113",
            "localhost",
            "LOCALHOST:2113",
            "localhost.:80",
            "app.localhost:3000",
            "[::1]:2113",
            "10.1.2.3:2113",
            "0.0.0.0:2113",
        ] {
            assert!(open.host_allowed(host), "{host}");
        }
        for host in [
            "evil.example:2113",
            "localhost.evil.example",
            "127.0.0.1.nip.io:2113",
            "strata",
            "[::1",
            "[::1]junk",
            "[::1]:",
            "[evil]:1",
            "localhost:x",
            "localhost:",
        ] {
            assert!(!open.host_allowed(host), "{host}");
        }
        let listed = policy(&["Strata.Example.com", "node-2:2113"], &[]);
        assert!(
            listed.host_allowed("strata.example.com:443")
                && listed.host_allowed("node-2")
                && !listed.host_allowed("node-3")
        );
        assert!(policy(&["*"], &[]).host_allowed("anything.example"));
    }

    #[test]
    fn origins_are_compared_by_scheme_host_and_port() {
        assert!(same_origin("http://127.0.0.1:2113", Some("127.0.0.1:2113"), false));
        assert!(same_origin("http://LocalHost", Some("localhost:80"), false));
        assert!(!same_origin("http://127.0.0.1:2114", Some("127.0.0.1:2113"), false));
        assert!(!same_origin("null", Some("127.0.0.1:2113"), false));
        assert!(!same_origin("http://127.0.0.1:2113", None, false));
        // The scheme counts: a plain-HTTP page is not the origin of an HTTPS server on the same port.
        assert!(!same_origin("https://127.0.0.1:2113", Some("127.0.0.1:2113"), false));
        assert!(!same_origin("http://strata.example:2113", Some("strata.example:2113"), true));
        assert!(same_origin("https://strata.example", Some("strata.example:443"), true));
        assert!(!same_origin("http://strata.example", Some("strata.example:443"), true));
        let cors = policy(&[], &["https://console.example.com:443", "http://localhost:5173"]);
        assert!(cors.listed("https://console.example.com") && cors.listed("HTTP://localhost:5173"));
        assert!(!cors.listed("https://console.example.com:8443") && !cors.listed("http://console.example.com"));
    }

    #[test]
    fn bad_lists_are_refused_with_what_to_write() {
        let refused = |hosts: &[&str], origins: &[&str]| {
            let strings = |items: &[&str]| items.iter().map(|item| item.to_string()).collect::<Vec<_>>();
            BrowserPolicy::new(&strings(hosts), &strings(origins)).unwrap_err()
        };
        assert!(refused(&["http://x/"], &[]).contains("not a host name"));
        assert!(refused(&["*.example.com"], &[]).contains("wildcards are not supported"));
        assert!(refused(&[""], &[]).contains("not a host name"));
        for origin in ["console.example.com", "https://console.example.com/app", "ftp://x", "null", "https://"] {
            assert!(refused(&[], &[origin]).contains("is not an origin"), "{origin}");
        }
    }

    #[test]
    fn form_and_text_content_types_are_the_ones_refused() {
        for content_type in [
            "text/plain",
            "text/plain;charset=UTF-8",
            "application/x-www-form-urlencoded",
            "Multipart/Form-Data; boundary=x",
        ] {
            assert!(sendable_without_preflight(content_type), "{content_type}");
        }
        for content_type in ["application/json", "application/json; charset=utf-8", "application/x-ndjson"] {
            assert!(!sendable_without_preflight(content_type), "{content_type}");
        }
    }
}
