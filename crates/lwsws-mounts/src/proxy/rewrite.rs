//! What points at the upstream is made to point at the mountpoint: URLs in
//! `Location` and `Content-Location`, cookie `Path`s, and links in HTML.
//! An absolute path (or a URL starting with the origin URL) under the
//! origin's path maps to the mountpoint plus the rest; anything else is left.

use http::{HeaderMap, HeaderValue, header};
use lwsws_config::{ProxyOrigin, ProxyTarget};

/// The mapping of one proxy mount.
#[derive(Debug, Clone)]
pub struct Rewriter {
    /// The mountpoint without a trailing `/` (`""` for `/`).
    mount: String,
    /// The origin's path without a trailing `/` (`""` for the root).
    origin_path: String,
    /// Lower-case `scheme://authority` spellings of the origin.
    origin_prefixes: Vec<String>,
}

impl Rewriter {
    pub fn new(mountpoint: &str, origin: &ProxyOrigin) -> Rewriter {
        let scheme = if origin.tls { "https" } else { "http" };
        let mut origin_prefixes = Vec::new();
        if let ProxyTarget::Tcp { host, port } = &origin.target {
            let host = if host.contains(':') {
                format!("[{host}]")
            } else {
                host.to_ascii_lowercase()
            };
            origin_prefixes.push(format!("{scheme}://{host}:{port}"));
            if *port == if origin.tls { 443 } else { 80 } {
                origin_prefixes.push(format!("{scheme}://{host}"));
            }
        }
        Rewriter {
            mount: mountpoint.trim_end_matches('/').to_string(),
            origin_path: origin.path.trim_end_matches('/').to_string(),
            origin_prefixes,
        }
    }

    /// The URL as the client should see it, or `None` to leave it alone.
    pub fn map_url(&self, url: &str) -> Option<String> {
        let path = if url.starts_with('/') {
            if url.starts_with("//") {
                return None;
            }
            url
        } else {
            let lower = url.get(..url.len().min(300))?.to_ascii_lowercase();
            let prefix = self.origin_prefixes.iter().find(|p| {
                lower.starts_with(p.as_str())
                    && matches!(
                        lower.as_bytes().get(p.len()),
                        None | Some(b'/') | Some(b'?') | Some(b'#')
                    )
            })?;
            let rest = &url[prefix.len()..];
            if rest.is_empty() { "/" } else { rest }
        };
        let rest = if self.origin_path.is_empty() {
            path
        } else {
            let r = path.strip_prefix(self.origin_path.as_str())?;
            if !(r.is_empty() || r.starts_with('/') || r.starts_with('?') || r.starts_with('#')) {
                return None;
            }
            r
        };
        let mut out = String::with_capacity(self.mount.len() + rest.len() + 1);
        out.push_str(&self.mount);
        if !rest.starts_with('/') {
            out.push('/');
        }
        out.push_str(rest);
        Some(out)
    }

    /// Rewrites `Location`, `Content-Location` and `Set-Cookie` paths.
    pub fn response_headers(&self, h: &mut HeaderMap) {
        for name in [header::LOCATION, header::CONTENT_LOCATION] {
            if let Some(v) = h.get(&name).and_then(|v| v.to_str().ok())
                && let Some(mapped) = self.map_url(v)
                && let Ok(v) = HeaderValue::from_str(&mapped)
            {
                h.insert(name, v);
            }
        }
        let cookies: Vec<HeaderValue> = h.get_all(header::SET_COOKIE).iter().cloned().collect();
        if cookies.is_empty() {
            return;
        }
        h.remove(header::SET_COOKIE);
        for c in cookies {
            let v = c
                .to_str()
                .ok()
                .and_then(|s| self.cookie_path(s))
                .and_then(|s| HeaderValue::from_str(&s).ok())
                .unwrap_or(c);
            h.append(header::SET_COOKIE, v);
        }
    }

    /// A `Set-Cookie` value with its `Path` mapped, if it has one to map.
    fn cookie_path(&self, cookie: &str) -> Option<String> {
        let mut changed = false;
        let parts: Vec<String> = cookie
            .split(';')
            .enumerate()
            .map(|(i, attr)| {
                let t = attr.trim_start();
                if i > 0
                    && t.len() >= 5
                    && t[..5].eq_ignore_ascii_case("path=")
                    && let Some(mapped) = self.map_url(t[5..].trim())
                {
                    changed = true;
                    let lead = &attr[..attr.len() - t.len()];
                    return format!("{lead}Path={mapped}");
                }
                attr.to_string()
            })
            .collect();
        changed.then(|| parts.join(";"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(mount: &str, path: &str) -> Rewriter {
        Rewriter::new(
            mount,
            &ProxyOrigin {
                tls: false,
                target: ProxyTarget::Tcp {
                    host: "origin".into(),
                    port: 80,
                },
                path: path.into(),
            },
        )
    }

    #[test]
    fn urls() {
        let x = r("/p", "");
        assert_eq!(x.map_url("/a").as_deref(), Some("/p/a"));
        assert_eq!(x.map_url("http://origin/b").as_deref(), Some("/p/b"));
        assert_eq!(x.map_url("http://ORIGIN:80/b?q").as_deref(), Some("/p/b?q"));
        assert_eq!(x.map_url("http://origin").as_deref(), Some("/p/"));
        assert_eq!(x.map_url("https://other/c"), None);
        assert_eq!(x.map_url("http://originx/c"), None);
        assert_eq!(x.map_url("//cdn/x"), None);
        assert_eq!(x.map_url("rel/x"), None);
        let y = r("/p/", "/app");
        assert_eq!(y.map_url("/app/x").as_deref(), Some("/p/x"));
        assert_eq!(y.map_url("/app").as_deref(), Some("/p/"));
        assert_eq!(y.map_url("/apple"), None);
        assert_eq!(y.map_url("/other"), None);
        let z = r("/", "");
        assert_eq!(z.map_url("/a").as_deref(), Some("/a"));
    }

    #[test]
    fn headers_and_cookies() {
        let x = r("/p", "/app");
        let mut h = HeaderMap::new();
        h.insert(
            header::LOCATION,
            HeaderValue::from_static("http://origin/app/next"),
        );
        h.append(
            header::SET_COOKIE,
            HeaderValue::from_static("a=1; Path=/app; HttpOnly"),
        );
        h.append(
            header::SET_COOKIE,
            HeaderValue::from_static("b=2; path=/app/sub"),
        );
        h.append(header::SET_COOKIE, HeaderValue::from_static("c=3"));
        x.response_headers(&mut h);
        assert_eq!(h[header::LOCATION], "/p/next");
        let c: Vec<&str> = h
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(c, ["a=1; Path=/p/; HttpOnly", "b=2; Path=/p/sub", "c=3"]);
    }
}
