//! `lws-openmetrics`: the worker's counters in the Prometheus text
//! exposition format (version 0.0.4), served on a
//! `callback://lws-openmetrics` mount (SPEC §6.4). Every figure is read from
//! relaxed atomics the request path updates; nothing here locks that path.
//! Counters belong to the serving worker: they start from zero with each
//! generation (a reload), as `lwsws_generation` and
//! `process_start_time_seconds` show.

use crate::conn::ConnHandle;
use crate::protocol::{ConnectInfo, Protocol, Session, VhostContext, VhostProtocol};
use crate::stats::Stats;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;

pub struct OpenMetrics;

impl Protocol for OpenMetrics {
    fn name(&self) -> &'static str {
        "lws-openmetrics"
    }

    fn for_vhost(&self, ctx: VhostContext<'_>) -> Arc<dyn VhostProtocol> {
        Arc::new(Metrics { stats: ctx.stats })
    }
}

struct Metrics {
    stats: Arc<Stats>,
}

impl VhostProtocol for Metrics {
    /// Metrics are read over HTTP only.
    fn connect(&self, _conn: &Arc<ConnHandle>, _info: &ConnectInfo) -> Option<Box<dyn Session>> {
        None
    }

    fn http(
        &self,
        _req: &http::request::Parts,
        _pmo: &[(String, String)],
    ) -> Option<http::Response<bytes::Bytes>> {
        http::Response::builder()
            .header(
                http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )
            .header(http::header::CACHE_CONTROL, "no-store")
            .body(bytes::Bytes::from(render(&self.stats)))
            .ok()
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Per vhost name (two entries of one name, one per port, are summed).
#[derive(Default)]
struct ByName {
    status: [u64; 5],
    bytes: u64,
    proxy_errors: u64,
}

/// The whole exposition.
pub fn render(s: &Stats) -> String {
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let mut names: BTreeMap<&str, ByName> = BTreeMap::new();
    for v in &s.vhosts {
        let n = names.entry(v.name.as_str()).or_default();
        for (i, c) in v.status.iter().enumerate() {
            n.status[i] += load(c);
        }
        n.bytes += load(&v.response_bytes);
        n.proxy_errors += load(&v.proxy_errors);
    }
    let mut out = String::with_capacity(4096);

    family(
        &mut out,
        "lwsws_http_requests_total",
        "counter",
        "HTTP requests answered, by vhost (\"-\": none took it) and status class.",
    );
    for (name, n) in &names {
        for (i, class) in CLASSES.iter().enumerate() {
            let _ = writeln!(
                out,
                "lwsws_http_requests_total{{vhost=\"{}\",code=\"{class}\"}} {}",
                label(name),
                n.status[i]
            );
        }
    }
    for (i, c) in s.unrouted().iter().enumerate() {
        let _ = writeln!(
            out,
            "lwsws_http_requests_total{{vhost=\"-\",code=\"{}\"}} {c}",
            CLASSES[i]
        );
    }

    family(
        &mut out,
        "lwsws_http_response_bytes_total",
        "counter",
        "Response body bytes sent, by vhost.",
    );
    for (name, n) in &names {
        let _ = writeln!(
            out,
            "lwsws_http_response_bytes_total{{vhost=\"{}\"}} {}",
            label(name),
            n.bytes
        );
    }

    family(
        &mut out,
        "lwsws_http_connections",
        "gauge",
        "Open HTTP connections (TLS included, upgraded ones excluded).",
    );
    let _ = writeln!(
        out,
        "lwsws_http_connections {}",
        s.http_connections.load(Ordering::Relaxed)
    );
    family(
        &mut out,
        "lwsws_websocket_connections",
        "gauge",
        "Open WebSocket connections.",
    );
    let _ = writeln!(
        out,
        "lwsws_websocket_connections {}",
        s.ws_connections.load(Ordering::Relaxed)
    );

    family(
        &mut out,
        "lwsws_websocket_messages_total",
        "counter",
        "WebSocket data messages, by protocol and direction (in: from clients).",
    );
    for (protocol, received, sent) in s.ws_message_counts() {
        let p = label(&protocol);
        let _ = writeln!(
            out,
            "lwsws_websocket_messages_total{{protocol=\"{p}\",direction=\"in\"}} {received}"
        );
        let _ = writeln!(
            out,
            "lwsws_websocket_messages_total{{protocol=\"{p}\",direction=\"out\"}} {sent}"
        );
    }

    family(
        &mut out,
        "lwsws_tls_handshakes_total",
        "counter",
        "TLS handshakes, by result (failed includes timed out).",
    );
    let _ = writeln!(
        out,
        "lwsws_tls_handshakes_total{{result=\"ok\"}} {}",
        load(&s.tls_handshakes)
    );
    let _ = writeln!(
        out,
        "lwsws_tls_handshakes_total{{result=\"failed\"}} {}",
        load(&s.tls_failures)
    );

    family(
        &mut out,
        "lwsws_proxy_upstream_errors_total",
        "counter",
        "Proxy mount requests the upstream failed (502, 504), by vhost.",
    );
    for (name, n) in &names {
        let _ = writeln!(
            out,
            "lwsws_proxy_upstream_errors_total{{vhost=\"{}\"}} {}",
            label(name),
            n.proxy_errors
        );
    }
    family(
        &mut out,
        "lwsws_cgi_runs_total",
        "counter",
        "CGI programs started.",
    );
    let _ = writeln!(out, "lwsws_cgi_runs_total {}", load(&s.cgi_runs));
    family(
        &mut out,
        "lwsws_cgi_timeouts_total",
        "counter",
        "CGI programs killed by cgi-timeout.",
    );
    let _ = writeln!(out, "lwsws_cgi_timeouts_total {}", load(&s.cgi_timeouts));

    family(
        &mut out,
        "lwsws_reloads_total",
        "counter",
        "Configuration reloads the supervisor did before starting this worker.",
    );
    let _ = writeln!(out, "lwsws_reloads_total {}", load(&s.reloads));
    family(
        &mut out,
        "lwsws_generation",
        "gauge",
        "Generation of the worker serving this scrape.",
    );
    let _ = writeln!(out, "lwsws_generation {}", s.generation);
    family(
        &mut out,
        "process_start_time_seconds",
        "gauge",
        "Start time of the worker process since the Unix epoch, in seconds.",
    );
    let start = s
        .started_at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let _ = writeln!(out, "process_start_time_seconds {start:.3}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::VhostStats;

    #[test]
    fn exposition_sums_vhost_names_and_escapes_labels() {
        let s = Stats::new(vec![
            VhostStats::new("a\"b".into(), "port 1".into(), Vec::new()),
            VhostStats::new("a\"b".into(), "port 2".into(), Vec::new()),
        ]);
        s.request(Some(0), 200);
        s.request(Some(1), 204);
        s.request(Some(1), 404);
        s.request(None, 421);
        s.sent(0, 10);
        s.sent(1, 5);
        let m = s.ws_messages("echo");
        m.received.fetch_add(3, Ordering::Relaxed);
        m.sent.fetch_add(4, Ordering::Relaxed);
        let text = render(&s);
        assert!(text.contains("lwsws_http_requests_total{vhost=\"a\\\"b\",code=\"2xx\"} 2\n"));
        assert!(text.contains("lwsws_http_requests_total{vhost=\"a\\\"b\",code=\"4xx\"} 1\n"));
        assert!(text.contains("lwsws_http_requests_total{vhost=\"-\",code=\"4xx\"} 1\n"));
        assert!(text.contains("lwsws_http_response_bytes_total{vhost=\"a\\\"b\"} 15\n"));
        assert!(
            text.contains("lwsws_websocket_messages_total{protocol=\"echo\",direction=\"in\"} 3\n")
        );
        assert!(
            text.contains(
                "lwsws_websocket_messages_total{protocol=\"echo\",direction=\"out\"} 4\n"
            )
        );
        // One HELP and one TYPE per family, before its samples.
        assert_eq!(text.matches("# TYPE lwsws_http_requests_total").count(), 1);
    }
}
