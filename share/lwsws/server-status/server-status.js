// server-status.js: the script of server-status.html.
//
// Opens a WebSocket with the subprotocol "lws-server-status" to the page's
// own directory (ws:// or wss:// like the page) and shows every status
// message it receives:
//
//   {"i": {"server", "version", "uptime", "generation", "pid",
//          "connections": {"http", "ws"}, "requests",
//          "vhosts": [{"name", "listen", "requests", "ws",
//                      "mounts": [{"mountpoint", "origin"}]}]},
//    "files": [{"path", "val"}]}
//
// Every field may be missing ("vhosts" is, when the operator sets
// hide-vhosts). The connection is retried every 2 s after it drops.
// document.body.dataset.state is "connecting", "live" (a message has
// arrived on the current connection) or "disconnected".
(function () {
  "use strict";

  var RETRY_MS = 2000;

  function $(id) { return document.getElementById(id); }

  function isNum(v) { return typeof v === "number" && isFinite(v); }

  function str(v) {
    if (v === undefined || v === null) return "";
    return typeof v === "string" ? v : String(v);
  }

  function setText(id, text) {
    var el = $(id);
    if (el && el.textContent !== text) el.textContent = text;
  }

  // A count as plain digits (tests parse these), or a dash when unknown.
  function count(v) { return isNum(v) ? String(Math.round(v)) : "—"; }

  function pad2(n) { return (n < 10 ? "0" : "") + n; }

  // 277506 -> "3 d 05:05:06"; under a day "05:05:06".
  function formatUptime(secs) {
    if (!isNum(secs) || secs < 0) return "—";
    secs = Math.floor(secs);
    var d = Math.floor(secs / 86400);
    var h = Math.floor((secs % 86400) / 3600);
    var m = Math.floor((secs % 3600) / 60);
    var s = secs % 60;
    return (d > 0 ? d + " d " : "") + pad2(h) + ":" + pad2(m) + ":" + pad2(s);
  }

  function formatRate(r) {
    if (!isNum(r) || r < 0) return "—";
    if (r >= 100) return String(Math.round(r));
    if (r >= 10) return r.toFixed(1);
    return r.toFixed(2);
  }

  function statusUrl() {
    var scheme = location.protocol === "https:" ? "wss:" : "ws:";
    // The page's directory: "/server-status/server-status.html" and
    // "/server-status/" both give "/server-status/".
    var dir = location.pathname.replace(/[^/]*$/, "");
    return scheme + "//" + location.host + dir;
  }

  // ---- connection state --------------------------------------------------

  var ws = null;
  var retryTimer = null;
  var everLive = false;

  function setState(state, text) {
    document.body.dataset.state = state;
    setText("state-text", text);
  }

  function scheduleRetry() {
    if (retryTimer !== null) return;
    retryTimer = setTimeout(function () {
      retryTimer = null;
      connect();
    }, RETRY_MS);
  }

  function connect() {
    var url = statusUrl();
    setText("endpoint", url);
    if (!location.host) {
      setState("disconnected", "disconnected (open this page from the server)");
      return;
    }
    if (!everLive && document.body.dataset.state !== "disconnected") {
      setState("connecting", "connecting…");
    } else {
      setState("disconnected", "disconnected · reconnecting…");
    }
    var sock;
    try {
      sock = new WebSocket(url, "lws-server-status");
    } catch (e) {
      setState("disconnected", "disconnected · " + (e && e.message ? e.message : e));
      scheduleRetry();
      return;
    }
    ws = sock;
    var gotMessage = false;

    sock.onopen = function () {
      if (ws !== sock) return;
      if (document.body.dataset.state !== "live") {
        setState(document.body.dataset.state, "connected · waiting for data…");
      }
    };
    sock.onmessage = function (ev) {
      if (ws !== sock || typeof ev.data !== "string") return;
      var msg;
      try {
        msg = JSON.parse(ev.data);
      } catch (e) {
        return; // not ours: keep the last good figures
      }
      if (!msg || typeof msg !== "object") return;
      if (!gotMessage) {
        gotMessage = true;
        everLive = true;
        setState("live", "live");
      }
      render(msg);
    };
    sock.onclose = function (ev) {
      if (ws !== sock) return;
      ws = null;
      lastReceived = null;
      var why = ev && ev.code && ev.code !== 1006 ? " (" + ev.code +
        (ev.reason ? " " + ev.reason : "") + ")" : "";
      setState("disconnected", "disconnected" + why + " · retrying in 2 s");
      scheduleRetry();
    };
    // An error is always followed by a close event.
    sock.onerror = function () {};
  }

  // ---- rendering ---------------------------------------------------------

  var uptimeBase = null;    // uptime (s) in the last message
  var lastReceived = null;  // performance.now() of the last message
  var prev = null;          // {requests, t, generation} for requests/s

  function tickUptime() {
    if (uptimeBase === null || lastReceived === null) return;
    var elapsed = (performance.now() - lastReceived) / 1000;
    setText("uptime", formatUptime(uptimeBase + elapsed));
  }

  function render(msg) {
    var now = performance.now();
    var i = msg.i && typeof msg.i === "object" ? msg.i : {};

    setText("server-name", str(i.server) || "server");
    setText("server-version", i.version !== undefined ? "version " + str(i.version) : "");
    setText("updated", "updated " + new Date().toLocaleTimeString());

    uptimeBase = isNum(i.uptime) ? i.uptime : null;
    lastReceived = now;
    setText("uptime", formatUptime(uptimeBase));

    var conns = i.connections && typeof i.connections === "object" ? i.connections : {};
    setText("http-connections", count(conns.http));
    setText("ws-connections", count(conns.ws));
    setText("requests", count(i.requests));

    // Requests per second between successive messages; a restart or a new
    // worker generation (the counter goes back) starts over.
    var rate = null;
    if (!isNum(i.requests)) {
      prev = null;
      setText("requests-per-second", "—");
    } else if (!prev || now - prev.t > 50) {
      if (prev && prev.generation === i.generation && i.requests >= prev.requests) {
        rate = (i.requests - prev.requests) / ((now - prev.t) / 1000);
      }
      prev = { requests: i.requests, t: now, generation: i.generation };
      setText("requests-per-second", formatRate(rate));
    }

    var worker = [];
    if (i.pid !== undefined) worker.push("pid " + str(i.pid));
    if (i.generation !== undefined) worker.push("gen " + str(i.generation));
    setText("worker", worker.length ? worker.join(" · ") : "—");

    renderVhosts(Array.isArray(i.vhosts) ? i.vhosts : null);
    renderFiles(Array.isArray(msg.files) ? msg.files : []);
  }

  var COLUMNS = ["Name", "Listen", "Requests", "WebSockets", "Mounts"];

  // A table cell; data-label names its column for the narrow-screen layout.
  function cell(tr, text, cls) {
    var td = document.createElement("td");
    if (cls) td.className = cls;
    td.dataset.label = COLUMNS[tr.children.length] || "";
    td.textContent = text;
    tr.appendChild(td);
    return td;
  }

  function renderVhosts(vhosts) {
    var table = $("vhosts");
    var hiddenNote = $("vhosts-hidden");
    $("vhosts-section").hidden = false;
    if (!vhosts) {
      table.hidden = true;
      hiddenNote.hidden = false;
      return;
    }
    hiddenNote.hidden = true;
    table.hidden = false;
    var body = document.createElement("tbody");
    body.id = "vhosts-body";
    vhosts.forEach(function (v) {
      if (!v || typeof v !== "object") return;
      var tr = document.createElement("tr");
      cell(tr, str(v.name) || "—", "name");
      cell(tr, str(v.listen) || "—");
      cell(tr, count(v.requests), "num");
      cell(tr, count(v.ws), "num");
      var td = cell(tr, "");
      var mounts = Array.isArray(v.mounts) ? v.mounts : [];
      if (mounts.length) {
        var ul = document.createElement("ul");
        ul.className = "mounts";
        mounts.forEach(function (m) {
          if (!m || typeof m !== "object") return;
          var li = document.createElement("li");
          var mp = document.createElement("code");
          mp.textContent = str(m.mountpoint) || "?";
          li.appendChild(mp);
          if (m.origin !== undefined) {
            var o = document.createElement("span");
            o.className = "origin";
            o.textContent = str(m.origin);
            li.appendChild(o);
          }
          ul.appendChild(li);
        });
        td.appendChild(ul);
      } else {
        td.textContent = "—";
      }
      body.appendChild(tr);
    });
    if (!body.firstChild) {
      var tr = document.createElement("tr");
      var td = cell(tr, "no virtual hosts");
      td.colSpan = 5;
      td.dataset.label = "";
      body.appendChild(tr);
    }
    $("vhosts-body").replaceWith(body);
  }

  function renderFiles(files) {
    var dl = $("files");
    var frag = document.createDocumentFragment();
    files.forEach(function (f) {
      if (!f || typeof f !== "object") return;
      var dt = document.createElement("dt");
      dt.textContent = str(f.path) || "?";
      var dd = document.createElement("dd");
      dd.textContent = str(f.val).replace(/\s+$/, "") || "(empty)";
      frag.appendChild(dt);
      frag.appendChild(dd);
    });
    $("files-section").hidden = !frag.firstChild;
    dl.replaceChildren(frag);
  }

  setInterval(tickUptime, 1000);
  connect();
})();
