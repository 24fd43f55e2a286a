/* SPOT bridge dashboard: fleet overview (/) and device pages (/device/<id>).
 *
 * Plain JavaScript, no framework and no build step: it reads the JSON API
 * under /api/v1 and follows the bridge live through Server-Sent Events
 * (/api/v1/events). Plots are SVG drawn here from history + live telemetry.
 * Values are shown in SI units with the names and ranges of the profiles
 * (/api/v1/profiles). Times are the bridge's clock (which may be simulated
 * and run faster than the wall clock: the dashboard measures its rate).
 */
(function () {
  "use strict";

  var API = "/api/v1";
  var SPARK_POINTS = 60;      // fleet sparklines
  var CHART_POINTS = 240;     // device plots
  var TOKEN_KEY = "spot.token";
  // ?snapshot=1: draw the page once from the API and keep no connection open
  var SNAPSHOT = (function (q) {
    return q.has("snapshot") && /^(1|true|yes|)$/.test(q.get("snapshot"));
  })(new URLSearchParams(location.search));
  var main = document.getElementById("main");

  // ------------------------------------------------------------------ helpers

  function h(tag, attrs) {
    var el = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        var v = attrs[k];
        if (v === null || v === undefined || v === false) return;
        if (k === "text") el.textContent = v;
        else if (k.slice(0, 2) === "on") el.addEventListener(k.slice(2), v);
        else el.setAttribute(k, v === true ? "" : v);
      });
    }
    for (var i = 2; i < arguments.length; i++) append(el, arguments[i]);
    return el;
  }

  // replace el's children with the rest of the arguments (nodes, strings or arrays of them)
  function fill(el) {
    while (el.firstChild) el.removeChild(el.firstChild);
    for (var i = 1; i < arguments.length; i++) append(el, arguments[i]);
    return el;
  }

  function append(el, child) {
    if (child === null || child === undefined || child === false) return;
    if (Array.isArray(child)) { child.forEach(function (c) { append(el, c); }); return; }
    el.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
  }

  var SVG = "http://www.w3.org/2000/svg";
  function s(tag, attrs) {
    var el = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (k) { el.setAttribute(k, attrs[k]); });
    return el;
  }

  function token() {
    try { return localStorage.getItem(TOKEN_KEY) || ""; } catch (e) { return ""; }
  }

  function ApiError(status, message) { this.status = status; this.message = message; }

  // fetch an API path: {data, next} (next: the Link rel="next" URL of a paged listing, or null).
  // State-changing requests always say Content-Type: application/json (the bridge refuses
  // other types there: no form can post to it from another site).
  function request(path, method, body) {
    var headers = {};
    var t = token();
    if (t) headers.Authorization = "Bearer " + t;
    var init = { method: method || "GET", headers: headers };
    if (init.method !== "GET") headers["Content-Type"] = "application/json";
    if (body !== undefined) init.body = JSON.stringify(body);
    return fetch(API + path, init).then(function (r) {
      var ct = r.headers.get("Content-Type") || "";
      var parsed = ct.indexOf("application/json") === 0 ? r.json() : Promise.resolve(null);
      return parsed.then(function (data) {
        if (r.status === 401) { loginView(data && data.error); }
        if (!r.ok) throw new ApiError(r.status, (data && data.error) || r.statusText);
        var link = /<([^>]*)>;\s*rel="next"/.exec(r.headers.get("Link") || "");
        return { data: data, next: link ? link[1] : null };
      });
    });
  }

  function api(path, method, body) {
    return request(path, method, body).then(function (res) { return res.data; });
  }

  function apiPage(path) { return request(path); }

  function enc(x) { return encodeURIComponent(x); }

  // The bridge's clock, estimated between /health samples (rate: bridge seconds per wall second).
  var clock = {
    server: Date.now() / 1000, wall: performance.now() / 1000, rate: 1, synced: false,
    now: function () { return this.server + this.rate * (performance.now() / 1000 - this.wall); },
    sync: function () {
      var self = this, w0 = performance.now() / 1000;
      return fetch(API + "/health").then(function (r) { return r.json(); }).then(function (hl) {
        var wall = (w0 + performance.now() / 1000) / 2;
        if (self.synced && wall - self.wall > 0.5) {
          var rate = (hl.time - self.server) / (wall - self.wall);
          if (rate > 0 && isFinite(rate)) self.rate = rate;
        }
        self.server = hl.time; self.wall = wall; self.synced = true;
      }).catch(function () { /* the stream reports the connection */ });
    }
  };

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function clockText(t) {
    if (t === null || t === undefined) return "never";
    var d = new Date(t * 1000);
    return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) + " " +
      pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + ":" + pad(d.getUTCSeconds()) + " UTC";
  }

  // "10:04" today (by the bridge's clock), "04-16 10:04" on another day
  function shortTime(t) {
    var d = new Date(t * 1000), today = new Date(clock.now() * 1000);
    var hm = pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes());
    if (d.toISOString().slice(0, 10) === today.toISOString().slice(0, 10)) return hm;
    return pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) + " " + hm;
  }

  function ago(t) {
    if (t === null || t === undefined) return "never";
    var dt = Math.max(0, clock.now() - t);
    if (dt < 2) return "just now";
    if (dt < 90) return Math.round(dt) + " s ago";
    if (dt < 5400) return Math.round(dt / 60) + " min ago";
    if (dt < 129600) return Math.round(dt / 3600) + " h ago";
    return Math.round(dt / 86400) + " d ago";
  }

  function timeEl(t, cls) {
    return h("time", { "class": cls || "ago", "data-t": t, datetime: t ? new Date(t * 1000).toISOString() : null,
                       title: clockText(t) }, ago(t));
  }

  function refreshTimes() {
    var els = document.querySelectorAll("time.ago");
    for (var i = 0; i < els.length; i++) {
      var t = parseFloat(els[i].getAttribute("data-t"));
      els[i].textContent = ago(isNaN(t) ? null : t);
    }
    var c = document.getElementById("clock");
    if (c && clock.synced) c.textContent = "bridge time " + clockText(Math.floor(clock.now()));
  }

  // ------------------------------------------------------------------ units and values

  var UNITS = { "Cel": "°C", "1": "", "W/m2": "W/m²", "m/s": "m/s", "%/s": "%/s" };
  function unitText(u) {
    if (!u) return "";
    if (u in UNITS) return UNITS[u];
    return u.replace("{currency}", "");
  }

  function decimals(obj) {
    if (!obj || obj.scale === null || obj.scale === undefined) return 3;
    return Math.max(0, -obj.scale);
  }

  function fmtNumber(v, obj) {
    if (typeof v !== "number") return String(v);
    var d = decimals(obj);
    if (Math.abs(v) >= 10000 && obj && obj.unit && /^(W|Wh|var|VA)$/.test(obj.unit)) {
      return (v / 1000).toFixed(Math.max(1, d)) + " k";
    }
    return v.toFixed(d);
  }

  function valueText(v, obj) {
    if (v === null || v === undefined) return "—";
    var type = obj ? obj.type : null;
    if (type === "enum" && obj.labels && obj.labels[String(v)] !== undefined) {
      return v + " · " + obj.labels[String(v)];
    }
    if (type === "binary" || typeof v === "boolean") return v ? "yes" : "no";
    if (type === "schedule" && Array.isArray(v)) return "schedule, " + (v[2] || []).length + " slots";
    if (type === "curve" && Array.isArray(v)) return "curve, " + v.length / 2 + " points";
    if (type === "alarm" && Array.isArray(v)) {
      return "code " + v[1] + ", severity " + v[2] + (v[3] ? ", active" : ", cleared");
    }
    if (typeof v === "number") {
      var n = fmtNumber(v, obj), u = unitText(obj && obj.unit);
      return n.slice(-2) === " k" ? n + (u || "") : n + (u ? " " + u : "");
    }
    if (typeof v === "object") return JSON.stringify(v);
    return String(v);
  }

  var profilesByName = null;
  function loadProfiles() {
    if (profilesByName) return Promise.resolve(profilesByName);
    return api("/profiles").then(function (list) {
      profilesByName = {};
      list.forEach(function (p) {
        p.byName = {};
        p.objects.forEach(function (o) { p.byName[o.name] = o; });
        profilesByName[p.name] = p;
      });
      return profilesByName;
    });
  }

  function objectOf(service, name) {
    var p = profilesByName && profilesByName[service];
    return p ? p.byName[name] : null;
  }

  // ------------------------------------------------------------------ live stream

  var conn = document.getElementById("conn");
  function setConn(state, text) {
    conn.className = "conn conn-" + state;
    conn.textContent = text || state;
  }

  // The live event stream, reconnecting with back-off (1 s, 2 s, 4 s ... 30 s, jittered)
  // when it drops; once back, onBack() reads what was missed. One stream at a time.
  // In snapshot mode (?snapshot=1) no stream is opened: the page is drawn once and
  // holds no connection open (for headless screenshots with --virtual-time-budget,
  // and for printing).
  var live = null;
  function stream(params, handler, onBack) {
    if (live) live.close();
    if (SNAPSHOT) { setConn("snapshot", "snapshot " + clockText(Math.floor(clock.now()))); return null; }
    var q = new URLSearchParams(params || {});
    var t = token();
    if (t) q.set("access_token", t);
    var qs = q.toString(), url = API + "/events" + (qs ? "?" + qs : "");
    var source = null, timer = null, attempt = 0, lost = false, closed = false;
    function open() {
      timer = null;
      source = new EventSource(url);
      ["device", "presence", "telemetry", "command"].forEach(function (type) {
        source.addEventListener(type, function (e) {
          var ev;
          try { ev = JSON.parse(e.data); } catch (err) { return; }
          handler(type, ev);
        });
      });
      source.onopen = function () {
        attempt = 0;
        setConn("live", "live");
        if (lost) { lost = false; if (onBack) onBack(); }  // events were missed while away
      };
      source.onerror = function () {
        source.close();           // we reconnect ourselves, with back-off
        lost = true;
        if (!closed) retry();
      };
    }
    function retry() {
      var delay = Math.min(30000, 1000 * Math.pow(2, attempt)) * (0.75 + Math.random() / 4);
      attempt = Math.min(attempt + 1, 5);
      setConn("lost", "reconnecting in " + Math.ceil(delay / 1000) + " s");
      conn.setAttribute("data-attempts", attempt);
      timer = setTimeout(open, delay);
    }
    function now() {             // the browser is back online: do not wait for the timer
      if (timer && !closed) { clearTimeout(timer); open(); }
    }
    window.addEventListener("online", now);
    open();
    live = { close: function () {
      closed = true;
      if (timer) clearTimeout(timer);
      if (source) source.close();
      window.removeEventListener("online", now);
    } };
    return live;
  }

  // timers and listeners of the view on screen, dropped when another is drawn
  var leaving = [];
  function onLeave(fn) { leaving.push(fn); }
  function every(ms, fn) {
    var id = setInterval(fn, ms);
    onLeave(function () { clearInterval(id); });
  }

  // ------------------------------------------------------------------ SVG plots

  // points: [[t, value], ...] oldest first; opts: {width, height, step, axes}
  function drawPlot(svg, points, opts) {
    var w = opts.width, ht = opts.height, padL = opts.axes ? 44 : 2, padR = 4;
    var padT = 6, padB = opts.axes ? 16 : 3;
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var nums = points.filter(function (p) { return typeof p[1] === "number"; });
    if (!nums.length) {
      if (opts.axes) svg.appendChild(textEl(w / 2, ht / 2, "no data yet", "plot-empty", "middle"));
      return;
    }
    var t0 = nums[0][0], t1 = nums[nums.length - 1][0];
    var lo = Infinity, hi = -Infinity;
    nums.forEach(function (p) { lo = Math.min(lo, p[1]); hi = Math.max(hi, p[1]); });
    if (hi - lo < 1e-9) { lo -= 1; hi += 1; }
    var span = hi - lo; lo -= span * 0.08; hi += span * 0.08;
    var floor = opts.obj ? opts.obj.min : null;   // no axis below what the object can be
    if (typeof floor === "number" && lo < floor) lo = Math.min(floor, hi - 1e-9);
    if (t1 - t0 < 1e-9) { t0 -= 1; t1 += 1; }
    function X(t) { return padL + (w - padL - padR) * (t - t0) / (t1 - t0); }
    function Y(v) { return padT + (ht - padT - padB) * (1 - (v - lo) / (hi - lo)); }
    if (opts.axes) {
      [hi, (hi + lo) / 2, lo].forEach(function (v) {
        svg.appendChild(s("line", { x1: padL, x2: w - padR, y1: Y(v), y2: Y(v), "class": "grid" }));
        svg.appendChild(textEl(padL - 4, Y(v) + 3, fmtNumber(v, opts.obj), "tick", "end"));
      });
      svg.appendChild(textEl(padL, ht - 3, timeOfDay(t0), "tick", "start"));
      svg.appendChild(textEl(w - padR, ht - 3, timeOfDay(t1), "tick", "end"));
    }
    var d = "";
    nums.forEach(function (p, i) {
      var x = X(p[0]).toFixed(1), y = Y(p[1]).toFixed(1);
      if (i === 0) d = "M" + x + " " + y;
      else if (opts.step) d += " H" + x + " V" + y;
      else d += " L" + x + " " + y;
    });
    svg.appendChild(s("path", { d: d, "class": "line" }));
    var last = nums[nums.length - 1];
    svg.appendChild(s("circle", { cx: X(last[0]), cy: Y(last[1]), r: opts.axes ? 3 : 2, "class": "dot" }));
  }

  function textEl(x, y, text, cls, anchor) {
    var t = s("text", { x: x, y: y, "class": cls, "text-anchor": anchor });
    t.textContent = text;
    return t;
  }

  function timeOfDay(t) {
    var d = new Date(t * 1000);
    return pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes());
  }

  function pushPoint(points, t, v, max) {
    if (points.length && points[points.length - 1][0] >= t) {
      if (points[points.length - 1][0] === t) points[points.length - 1][1] = v;
      return;
    }
    points.push([t, v]);
    if (points.length > max) points.splice(0, points.length - max);
  }

  // ------------------------------------------------------------------ login

  var loginShown = false;
  function loginView(message) {
    if (loginShown) return;
    loginShown = true;
    setConn("lost", "token needed");
    var input = h("input", { id: "token", type: "password", autocomplete: "current-password", required: true });
    fill(main,
      h("h1", null, "Sign in"),
      h("form", { "class": "card narrow", onsubmit: function (e) {
        e.preventDefault();
        try { localStorage.setItem(TOKEN_KEY, input.value.trim()); } catch (err) { /* private mode */ }
        location.reload();
      } },
        h("p", null, message || "This bridge needs an API token."),
        h("label", { "for": "token" }, "API token"), input,
        h("button", { type: "submit" }, "Sign in")));
    input.focus();
  }

  function errorView(err) {
    fill(main, h("h1", null, "Something went wrong"),
      h("p", { "class": "notice", role: "alert" }, err && err.message ? err.message : String(err)),
      h("p", null, h("a", { href: "/" }, "Back to the fleet")));
  }

  // ------------------------------------------------------------------ fleet view

  function presenceBadge(p) {
    return h("span", { "class": "presence presence-" + p }, p);
  }

  var PAGE = 50;              // devices per fleet page
  var PROFILE_COLORS = 8;     // series-0 .. series-7 in style.css

  function kilo(w, unit) {
    var a = Math.abs(w);
    if (a >= 1e6) return (w / 1e6).toFixed(2) + " M" + unit;
    if (a >= 1e3) return (w / 1e3).toFixed(1) + " k" + unit;
    return Math.round(w) + " " + unit;
  }

  // the fleet page's filters and page, as the URL's query says (a page is a URL to share)
  function fleetQuery() {
    var q = new URLSearchParams(location.search), out = {};
    ["profile", "group", "presence", "alarm", "after", "limit"].forEach(function (k) {
      if (q.get(k)) out[k] = q.get(k);
    });
    return out;
  }

  function fleetUrl(query) {
    var q = new URLSearchParams();
    Object.keys(query).forEach(function (k) { if (query[k]) q.set(k, query[k]); });
    if (SNAPSHOT) q.set("snapshot", "1");
    var qs = q.toString();
    return "/" + (qs ? "?" + qs : "");
  }

  function fleetView() {
    return loadProfiles().then(drawFleet);
  }

  function drawFleet() {
    document.title = "Fleet · SPOT bridge";
    var query = fleetQuery();
    var rows = {};        // device id -> {tr, device, points, spark, value} of this page
    var pageIds = [];
    var summary = h("p", { id: "summary", "class": "summary", "aria-live": "polite" });
    var powerNow = h("div", { id: "power-now", "class": "legend" });
    var powerSvg = s("svg", { id: "power-chart", "class": "plot wide", viewBox: "0 0 640 160", role: "img",
                              "aria-label": "total active power by profile over time" });
    var flex = h("dl", { id: "flexibility", "class": "figures" });
    var timelineSvg = s("svg", { id: "timeline", "class": "plot wide", viewBox: "0 0 1000 60", role: "img",
                                 "aria-label": "plans in force across the fleet" });
    var timelineBody = h("tbody");
    var profileSel = h("select", { id: "profile-filter", name: "profile" },
      h("option", { value: "" }, "any"),
      Object.keys(profilesByName).filter(function (n) { return profilesByName[n].id >= 16; })
        .map(function (n) { return h("option", { value: n }, n); }));
    var groupIn = h("input", { id: "group-filter", name: "group", type: "search", placeholder: "any",
                               maxlength: 256, size: 12 });
    var presenceSel = h("select", { id: "presence-filter", name: "presence" },
      h("option", { value: "" }, "any"), ["online", "sleeping", "offline"].map(function (p) {
        return h("option", { value: p }, p);
      }));
    var alarmSel = h("select", { id: "alarm-filter", name: "alarm" },
      h("option", { value: "" }, "any"), h("option", { value: "true" }, "active alarm"),
      h("option", { value: "false" }, "no alarm"));
    profileSel.value = query.profile || "";
    groupIn.value = query.group || "";
    presenceSel.value = query.presence || "";
    alarmSel.value = query.alarm || "";
    var tbody = h("tbody");
    var pageInfo = h("span", { id: "page-info", "class": "muted", "aria-live": "polite" });
    var prev = h("button", { type: "button", id: "prev", "class": "small", onclick: function () {
      history.back();
    } }, "‹ Previous");
    var next = h("button", { type: "button", id: "next", "class": "small" }, "Next ›");
    var empty = h("p", { id: "empty", "class": "notice", hidden: true });

    function applyFilters(e) {
      if (e) e.preventDefault();
      var q = { profile: profileSel.value, group: groupIn.value.trim(), presence: presenceSel.value,
                alarm: alarmSel.value, limit: query.limit };
      go(q);
    }
    function go(q) {
      history.pushState(null, "", fleetUrl(q));
      query = fleetQuery();
      loadPage();
    }
    [profileSel, presenceSel, alarmSel].forEach(function (el) { el.addEventListener("change", applyFilters); });

    fill(main,
      h("div", { "class": "title-row" }, h("h1", null, "Fleet"), summary),
      h("div", { "class": "aggregates" },
        h("section", { "class": "card", "aria-labelledby": "power-h" },
          h("h2", { id: "power-h" }, "Active power by profile"), powerNow, powerSvg),
        h("section", { "class": "card", "aria-labelledby": "flex-h" },
          h("h2", { id: "flex-h" }, "Flexibility available now"), flex,
          h("p", { "class": "hint" }, "From the latest values reported in the last 15 min."))),
      h("section", { "class": "card", "aria-labelledby": "timeline-h" },
        h("h2", { id: "timeline-h" }, "Plans and OpenADR events in force"), timelineSvg,
        h("div", { "class": "table-wrap" }, h("table", { id: "fleet-plans", "class": "data compact" },
          h("caption", { "class": "visually-hidden" }, "Plans across the fleet (times UTC)"),
          h("thead", null, h("tr", null, ["Source", "Plan", "Sets", "From", "Until", "Devices"].map(function (c) {
            return h("th", { scope: "col" }, c);
          }))), timelineBody))),
      h("form", { "class": "filters", role: "search", onsubmit: applyFilters },
        h("label", { "for": "profile-filter" }, "Profile"), profileSel,
        h("label", { "for": "group-filter" }, "Group"), groupIn,
        h("label", { "for": "presence-filter" }, "Presence"), presenceSel,
        h("label", { "for": "alarm-filter" }, "Alarm"), alarmSel,
        h("button", { type: "submit", "class": "small", id: "apply" }, "Filter")),
      h("div", { "class": "table-wrap" },
        h("table", { id: "fleet", "class": "data fleet" },
          h("caption", { "class": "visually-hidden" }, "Devices, one page, live"),
          h("thead", null, h("tr", null,
            ["Device", "Profile", "Presence", "Last seen", "Active power", "Groups"].map(function (c) {
              return h("th", { scope: "col" }, c);
            }))),
          tbody)),
      empty,
      h("nav", { "class": "pager", "aria-label": "Pages" }, prev, pageInfo, next));

    // ---- aggregates (the whole fleet, or the devices the actor is paired with)

    function loadSummary() {
      return api("/fleet/summary").then(function (sm) {
        var pr = sm.presence;
        fill(summary,
          h("span", { "class": "count" }, sm.devices + (sm.devices === 1 ? " device" : " devices")),
          ["online", "sleeping", "offline"].map(function (p) {
            return h("span", { "class": "count count-" + p, id: "count-" + p }, pr[p] + " " + p);
          }));
        var colour = {};
        sm.power.forEach(function (x, i) { colour[x.profile] = i % PROFILE_COLORS; });
        fill(powerNow, sm.power.length ? sm.power.map(function (x) {
          return h("span", { "class": "legend-item", "data-profile": x.profile },
            h("span", { "class": "swatch series-" + colour[x.profile], "aria-hidden": "true" }),
            x.profile + " ", h("strong", null, kilo(x.w, "W")),
            h("span", { "class": "muted" }, " · " + x.devices + (x.devices === 1 ? " device" : " devices")));
        }) : h("span", { "class": "muted" }, "No power reported in the last 15 min."));
        drawSeries(powerSvg, sm.series ? sm.series.points : [], colour);
        var f = sm.flexibility;
        fill(flex,
          figure("flex-deferrable", "Deferrable energy", kilo(f.deferrable_energy_wh, "Wh")),
          figure("flex-battery", "Battery headroom", kilo(f.battery_charge_headroom_wh, "Wh") + " to charge · " +
                 kilo(f.battery_discharge_headroom_wh, "Wh") + " to give"),
          figure("flex-load", "Controllable load", kilo(f.controllable_load_w, "W")));
      });
    }

    function figure(id, label, value) {
      return h("div", { "class": "figure" }, h("dt", null, label), h("dd", { id: id }, value));
    }

    // power by profile over time: one line per profile (the fleet sampler's points)
    function drawSeries(svg, points, colour) {
      var w = 640, ht = 160, padL = 56, padR = 6, padT = 8, padB = 18;
      while (svg.firstChild) svg.removeChild(svg.firstChild);
      svg.setAttribute("data-points", points.length);
      if (points.length < 2) {
        svg.appendChild(textEl(w / 2, ht / 2, "collecting — a point a minute", "plot-empty", "middle"));
        return;
      }
      var by = {}, t0 = Infinity, t1 = -Infinity, lo = 0, hi = 0;
      points.forEach(function (p) {
        (by[p.profile] = by[p.profile] || []).push([p.t, p.w]);
        t0 = Math.min(t0, p.t); t1 = Math.max(t1, p.t); lo = Math.min(lo, p.w); hi = Math.max(hi, p.w);
      });
      if (hi - lo < 1) hi = lo + 1;
      if (t1 - t0 < 1) t1 = t0 + 1;
      function X(t) { return padL + (w - padL - padR) * (t - t0) / (t1 - t0); }
      function Y(v) { return padT + (ht - padT - padB) * (1 - (v - lo) / (hi - lo)); }
      [hi, (hi + lo) / 2, lo].forEach(function (v) {
        svg.appendChild(s("line", { x1: padL, x2: w - padR, y1: Y(v), y2: Y(v), "class": "grid" }));
        svg.appendChild(textEl(padL - 4, Y(v) + 3, kilo(v, "W"), "tick", "end"));
      });
      svg.appendChild(textEl(padL, ht - 4, timeOfDay(t0), "tick", "start"));
      svg.appendChild(textEl(w - padR, ht - 4, timeOfDay(t1), "tick", "end"));
      Object.keys(by).forEach(function (name) {
        var d = by[name].map(function (p, i) {
          return (i ? "L" : "M") + X(p[0]).toFixed(1) + " " + Y(p[1]).toFixed(1);
        }).join(" ");
        svg.appendChild(s("path", { d: d, "class": "line series-" + (colour[name] || 0), "data-profile": name }));
      });
    }

    // plans queued or in force across the fleet, as bars on a time axis
    function loadTimeline() {
      return api("/fleet/plans").then(function (tl) {
        var rowH = 22, top = 20, w = 1000, padL = 8, padR = 8;
        var n = tl.plans.length, ht = top + Math.max(1, n) * rowH + 6;
        // the axis: what the API looked at, narrowed to the plans (at least 3 h ahead)
        var end = tl.time + 3 * 3600;
        tl.plans.forEach(function (p) { end = Math.max(end, p.expiry); });
        tl = { time: tl.time, plans: tl.plans, from: tl.from, to: Math.min(tl.to, end + 600) };
        timelineSvg.setAttribute("viewBox", "0 0 " + w + " " + ht);
        timelineSvg.setAttribute("data-plans", n);
        while (timelineSvg.firstChild) timelineSvg.removeChild(timelineSvg.firstChild);
        function X(t) { return padL + (w - padL - padR) * (Math.min(Math.max(t, tl.from), tl.to) - tl.from) / (tl.to - tl.from); }
        for (var k = 0; k <= 6; k++) {
          var t = tl.from + (tl.to - tl.from) * k / 6;
          timelineSvg.appendChild(s("line", { x1: X(t), x2: X(t), y1: top - 4, y2: ht, "class": "grid" }));
          timelineSvg.appendChild(textEl(X(t), 12, shortTime(t), "tick", k === 0 ? "start" : k === 6 ? "end" : "middle"));
        }
        if (!n) timelineSvg.appendChild(textEl(w / 2, top + 14, "No plan queued or in force.", "plot-empty", "middle"));
        tl.plans.forEach(function (p, i) {
          var y = top + i * rowH + 3, x0 = X(p.start), x1 = Math.max(X(p.expiry), x0 + 2);
          var label = p.actor + " · plan " + p.plan_id + " · " + p.devices + (p.devices === 1 ? " device" : " devices");
          var bar = s("rect", { x: x0, y: y, width: x1 - x0, height: rowH - 6, rx: 3,
                                "class": "bar" + (p.accepted ? " bar-accepted" : " bar-queued"),
                                "data-actor": p.actor, "data-plan": p.plan_id });
          var title = s("title", {}); title.textContent = label + ", " + clockText(p.start) + " – " + clockText(p.expiry);
          bar.appendChild(title);
          timelineSvg.appendChild(bar);
          var inside = x1 - x0 > 8 * label.length;
          timelineSvg.appendChild(textEl(inside ? x0 + 6 : Math.min(x1 + 6, w - 4), y + rowH - 10, label,
            "bar-label" + (inside ? " inside" : ""), inside || x1 + 6 < w - 200 ? "start" : "end"));
        });
        var now = X(tl.time);
        timelineSvg.appendChild(s("line", { x1: now, x2: now, y1: top - 6, y2: ht, "class": "now" }));
        fill(timelineBody, n ? tl.plans.map(function (p) {
          return h("tr", { "data-actor": p.actor, "data-plan": p.plan_id },
            h("td", null, p.actor), h("td", { "class": "num" }, String(p.plan_id)),
            h("td", null, planSets(p.entries)),
            h("td", null, h("time", { title: clockText(p.start) }, shortTime(p.start))),
            h("td", null, h("time", { title: clockText(p.expiry) }, shortTime(p.expiry))),
            h("td", { "class": "num" }, p.devices + (p.accepted < p.devices ? " (" + p.accepted + " accepted)" : "")));
        }) : h("tr", null, h("td", { colspan: 6, "class": "muted" }, "No plan queued or in force.")));
      });
    }

    // ---- one page of devices, filtered by the bridge

    var nextAfter = null, loading = null, reloadTimer = null;

    function loadPage() {
      var q = new URLSearchParams(query);
      if (!q.get("limit")) q.set("limit", PAGE);
      var seq = loading = {};
      return apiPage("/devices?" + q.toString()).then(function (res) {
        if (seq !== loading) return;
        fill(tbody);
        rows = {}; pageIds = [];
        res.data.forEach(function (d) { addRow(d, false); });
        nextAfter = res.next ? new URLSearchParams(res.next.split("?")[1] || "").get("after") : null;
        next.disabled = !nextAfter;
        prev.disabled = !query.after;
        var filtered = query.profile || query.group || query.presence || query.alarm;
        pageInfo.textContent = res.data.length ? "devices " + res.data[0].id + " – " +
          res.data[res.data.length - 1].id + (filtered ? " (filtered)" : "") : "";
        empty.hidden = res.data.length > 0;
        empty.textContent = filtered ? "No device matches these filters." :
          "No device has announced itself yet. Devices appear here as soon as they connect.";
      });
    }
    next.addEventListener("click", function () {
      if (!nextAfter) return;
      var q = {}; Object.keys(query).forEach(function (k) { q[k] = query[k]; });
      q.after = nextAfter;
      go(q);
    });

    function schedule(fn, ms) {
      if (reloadTimer) return;
      reloadTimer = setTimeout(function () { reloadTimer = null; fn(); }, ms);
    }

    function addRow(d, fresh) {
      var spark = s("svg", { "class": "spark", viewBox: "0 0 120 28", width: 120, height: 28,
                             role: "img", "aria-label": "active power" });
      var value = h("span", { "class": "key-value" }, "—");
      var tr = h("tr", { "data-id": d.id, "class": fresh ? "fresh" : null },
        h("th", { scope: "row" }, h("a", { href: "/device/" + enc(d.id) + (SNAPSHOT ? "?snapshot=1" : "") }, d.id)),
        h("td", { "class": "profile" }, d.profile || "—"),
        h("td", { "class": "presence-cell" }, presenceBadge(d.presence)),
        h("td", { "class": "seen" }, timeEl(d.last_seen)),
        h("td", { "class": "power" }, spark, value),
        h("td", { "class": "groups" }, d.groups.join(", ")));
      var row = { tr: tr, device: d, points: [], spark: spark, value: value };
      rows[d.id] = row;
      pageIds.push(d.id);
      tbody.appendChild(tr);
      if (d.profile) loadSpark(row);
      return row;
    }

    function loadSpark(row) {
      api("/devices/" + enc(row.device.id) + "/history?service=" + enc(row.device.profile) +
          "&object=p&limit=" + SPARK_POINTS).then(function (hist) {
        var pts = hist.points.map(function (p) { return [p.t, p.value]; });
        row.points = pts.concat(row.points.filter(function (p) { return !pts.length || p[0] > pts[pts.length - 1][0]; }));
        drawSpark(row);
      }).catch(function () { /* no history yet */ });
    }

    function drawSpark(row) {
      drawPlot(row.spark, row.points, { width: 120, height: 28 });
      var last = row.points[row.points.length - 1];
      var obj = objectOf(row.device.profile, "p");
      row.value.textContent = last ? valueText(last[1], obj) : "—";
      row.spark.setAttribute("aria-label", "active power, latest " + row.value.textContent);
    }

    // would this device be on the page shown? (then the page is read again)
    function belongsHere(id) {
      if (query.after && id <= query.after) return false;
      return pageIds.length < (+query.limit || PAGE) || id < pageIds[pageIds.length - 1];
    }

    function onEvent(type, ev) {
      var row = rows[ev.device];
      if (type === "device" || type === "presence") {
        schedule(function () { loadSummary(); }, 1000);
        if (row) {
          row.device.presence = type === "device" ? "online" : ev.presence;
          fill(row.tr.querySelector(".presence-cell"), presenceBadge(row.device.presence));
        } else if (type === "device" && belongsHere(ev.device)) {
          loadPage();
        }
      } else if (type === "telemetry" && row) {
        row.device.last_seen = ev.t;
        fill(row.tr.querySelector(".seen"), timeEl(ev.t));
        if (ev.service_name === row.device.profile && typeof ev.si.p === "number") {
          pushPoint(row.points, ev.t, ev.si.p, SPARK_POINTS);
          drawSpark(row);
        }
      }
    }

    // the list is usable as soon as its page is drawn; the aggregates follow (each card
    // says so with data-ready)
    function refreshAll() {
      var aggregates = document.querySelector(".aggregates"), timeline = timelineSvg;
      var page = loadPage();   // asked first: the store answers in order
      loadSummary().then(function () { aggregates.setAttribute("data-ready", "true"); }, function (err) {
        fill(flex, h("p", { "class": "notice", role: "alert" }, "Fleet figures: " + (err.message || err)));
      });
      loadTimeline().then(function () { timeline.setAttribute("data-ready", "true"); }, function (err) {
        fill(timelineBody, h("tr", null, h("td", { colspan: 6, "class": "notice" }, "Plans: " + (err.message || err))));
      });
      return page;
    }
    onLeave(function () { window.removeEventListener("popstate", onPop); });
    function onPop() { query = fleetQuery(); loadPage(); }
    window.addEventListener("popstate", onPop);

    return refreshAll().then(function () {
      stream(null, onEvent, refreshAll);
      if (!SNAPSHOT) every(15000, function () { loadSummary(); loadTimeline(); });
    });
  }

  // ------------------------------------------------------------------ device view

  function deviceView(id) {
    document.title = id + " · SPOT bridge";
    var state = { device: null, values: {}, charts: {}, commands: {}, plansBody: null };

    return loadProfiles().then(function () {
      return api("/devices/" + enc(id));
    }).then(function (d) {
      state.device = d;
      var profile = profilesByName[d.profile] || null;
      d.values.forEach(function (v) {
        if (!v.service || !v.object) return;
        (state.values[v.service] = state.values[v.service] || {})[v.object] = { value: v.value, t: v.t };
      });

      var header = h("div", { "class": "title-row" },
        h("h1", null, d.id),
        h("span", { "class": "profile-tag" }, d.profile || "unknown profile"),
        h("span", { id: "presence" }, presenceBadge(d.presence)),
        h("span", { "class": "muted" }, "last seen ", h("span", { id: "last-seen" }, timeEl(d.last_seen))));
      var facts = h("p", { "class": "muted facts" },
        "Profiles: " + d.profiles.map(function (p) { return (p.name || p.id) + " " + p.version; }).join(", ") +
        (d.groups.length ? " · groups: " + d.groups.join(", ") : "") +
        (d.sleepy ? " · sleepy (commands wait for it)" : "") +
        " · your role: " + (d.role || "none"));

      var plots = h("section", { "class": "card", "aria-labelledby": "plots-h" },
        h("h2", { id: "plots-h" }, "Live plots"),
        h("div", { "class": "charts", id: "charts" }));
      var values = h("section", { "class": "card", "aria-labelledby": "values-h" },
        h("h2", { id: "values-h" }, "Values"), h("div", { id: "values" }));
      var forms = h("div", { "class": "forms" }, setpointForm(state, profile), planForm(state, profile));
      var commands = h("section", { "class": "card", "aria-labelledby": "commands-h" },
        h("h2", { id: "commands-h" }, "Command log"),
        h("div", { "class": "table-wrap" }, h("table", { id: "commands", "class": "data" },
          h("caption", { "class": "visually-hidden" }, "Commands sent to " + d.id + ", newest first"),
          h("thead", null, h("tr", null, ["#", "Created", "Command", "Actor", "Status", "Detail"].map(function (c) {
            return h("th", { scope: "col" }, c);
          }))),
          h("tbody"))));

      fill(main,
        h("nav", { "class": "crumbs", "aria-label": "Breadcrumb" }, h("a", { href: "/" }, "Fleet"), " / ", d.id),
        header, facts, plots, forms, values, commands);

      renderValues(state);
      buildCharts(state, profile);
      loadCommands(state);
      loadPlans(state);
      stream({ device: d.id }, function (type, ev) { onDeviceEvent(state, type, ev); }, route);
    });
  }

  function renderValues(state) {
    var box = document.getElementById("values");
    var services = Object.keys(state.values).sort(function (a, b) {
      if (a === state.device.profile) return -1;
      if (b === state.device.profile) return 1;
      return a < b ? -1 : 1;
    });
    if (!services.length) {
      fill(box, h("p", { "class": "muted" }, "No telemetry yet."));
      return;
    }
    fill(box, services.map(function (svc) {
      var profile = profilesByName[svc];
      var names = Object.keys(state.values[svc]);
      if (profile) {
        var order = {};
        profile.objects.forEach(function (o, i) { order[o.name] = i; });
        names.sort(function (a, b) { return (order[a] || 0) - (order[b] || 0); });
      }
      return h("details", { open: svc === state.device.profile ? true : null, "class": "service" },
        h("summary", null, svc, h("span", { "class": "muted" }, " · " + names.length + " objects")),
        h("table", { "class": "data values" },
          h("caption", { "class": "visually-hidden" }, "Latest values of " + svc),
          h("thead", null, h("tr", null, ["Object", "Value", "Range", "Updated"].map(function (c) {
            return h("th", { scope: "col" }, c);
          }))),
          h("tbody", null, names.map(function (name) {
            var obj = objectOf(svc, name), v = state.values[svc][name];
            return h("tr", { id: "row-" + svc + "-" + name },
              h("th", { scope: "row", title: obj && obj.meaning ? obj.meaning : null },
                name, obj && obj.writable ? h("span", { "class": "rw", title: "writable" }, " ✎") : null),
              h("td", { "class": "num", id: "value-" + svc + "-" + name }, valueText(v.value, obj)),
              h("td", { "class": "muted" }, rangeText(obj)),
              h("td", { "class": "muted" }, timeEl(v.t)));
          }))));
    }));
  }

  // A range as a person writes it: "20 – 70 °C", "≥ 0 Wh", "0 – 30 kW", "up to 32 characters".
  var PREFIXED = { "W": 1, "Wh": 1, "var": 1, "VA": 1, "varh": 1 };
  function rangeText(obj) {
    if (!obj || (obj.min === null && obj.max === null)) return "";
    if (obj.type === "text") return obj.max === null ? "" : "up to " + obj.max + " characters";
    var u = unitText(obj.unit), big = Math.max(Math.abs(obj.min || 0), Math.abs(obj.max || 0));
    var k = 1, p = "";
    if (PREFIXED[obj.unit] && big >= 1e6) { k = 1e6; p = "M"; }
    else if (PREFIXED[obj.unit] && big >= 1e4) { k = 1e3; p = "k"; }
    function n(v) { return String(+(v / k).toPrecision(6)).replace("-", "−"); }
    var text = obj.min === null ? "≤ " + n(obj.max)
      : obj.max === null ? "≥ " + n(obj.min) : n(obj.min) + " – " + n(obj.max);
    return text + (p + u ? " " + p + u : "");
  }

  function setValue(state, svc, name, value, t) {
    var vals = state.values[svc] = state.values[svc] || {};
    var fresh = !vals[name];
    vals[name] = { value: value, t: t };
    if (fresh) { renderValues(state); return; }
    var cell = document.getElementById("value-" + svc + "-" + name);
    if (!cell) return;
    var text = valueText(value, objectOf(svc, name));
    if (cell.textContent !== text) {
      cell.textContent = text;
      cell.classList.remove("flash");
      void cell.offsetWidth;  // restart the animation
      cell.classList.add("flash");
    }
    var row = cell.parentNode;
    fill(row.lastChild, timeEl(t));
  }

  // one plot per numeric readable object of the main profile
  function buildCharts(state, profile) {
    var box = document.getElementById("charts");
    if (!profile) { fill(box, h("p", { "class": "muted" }, "No known profile to plot.")); return; }
    var objs = profile.objects.filter(function (o) {
      return (o.type === "analog" || o.type === "counter") && o.access.indexOf("R") >= 0;
    });
    objs.forEach(function (o) {
      var svg = s("svg", { "class": "plot", viewBox: "0 0 320 120", role: "img", "aria-labelledby": "chart-" + o.name + "-h" });
      var now = h("span", { "class": "chart-value", id: "chart-value-" + o.name }, "—");
      var card = h("figure", { "class": "chart", id: "chart-" + o.name },
        h("figcaption", null, h("span", { id: "chart-" + o.name + "-h" }, o.name + (o.unit && unitText(o.unit) ? " (" + unitText(o.unit) + ")" : "")), now),
        svg);
      box.appendChild(card);
      var c = state.charts[o.name] = { obj: o, svg: svg, now: now, points: [], loaded: false };
      api("/devices/" + enc(state.device.id) + "/history?service=" + enc(profile.name) + "&object=" + enc(o.name) +
          "&limit=" + CHART_POINTS).then(function (hist) {
        var pts = hist.points.map(function (p) { return [p.t, p.value]; });
        var lastT = pts.length ? pts[pts.length - 1][0] : -Infinity;
        c.points = pts.concat(c.points.filter(function (p) { return p[0] > lastT; }));
        c.loaded = true;
        drawChart(c);
      }).catch(function () { c.loaded = true; drawChart(c); });
    });
  }

  function drawChart(c) {
    drawPlot(c.svg, c.points, { width: 320, height: 120, axes: true, step: c.obj.writable, obj: c.obj });
    var last = c.points[c.points.length - 1];
    c.now.textContent = last ? valueText(last[1], c.obj) : "—";
    c.svg.setAttribute("data-points", c.points.length);
  }

  function onDeviceEvent(state, type, ev) {
    var d = state.device;
    if (ev.device !== d.id) return;
    if (type === "presence" || type === "device") {
      d.presence = type === "device" ? "online" : ev.presence;
      fill(document.getElementById("presence"), presenceBadge(d.presence));
    } else if (type === "telemetry") {
      fill(document.getElementById("last-seen"), timeEl(ev.t));
      var svc = ev.service_name;
      if (!svc) return;
      Object.keys(ev.si || {}).forEach(function (name) {
        setValue(state, svc, name, ev.si[name], ev.t);
        var c = svc === d.profile ? state.charts[name] : null;
        if (c && typeof ev.si[name] === "number") {
          pushPoint(c.points, ev.t, ev.si[name], CHART_POINTS);
          if (c.loaded) drawChart(c);
        }
      });
    } else if (type === "command") {
      var row = state.commands[ev.id];
      if (!row) { api("/commands/" + ev.id).then(function (c) { addCommand(state, c, true); }); return; }
      if (["done", "error", "timeout", "expired", "rejected"].indexOf(ev.status) >= 0) {
        api("/commands/" + ev.id).then(function (c) { updateCommand(state, c); });
        if (row.plan) loadPlans(state);
      } else {
        setStatus(row, ev.status, null);
      }
    }
  }

  // ------------------------------------------------------------------ command log

  function loadCommands(state) {
    return api("/devices/" + enc(state.device.id) + "/commands?limit=50").then(function (list) {
      list.reverse().forEach(function (c) { addCommand(state, c, false); });
    });
  }

  function addCommand(state, c, fresh) {
    if (state.commands[c.id]) { updateCommand(state, c); return; }
    var tbody = document.querySelector("#commands tbody");
    var status = h("td", { "class": "status-cell" });
    var detail = h("td", { "class": "detail" });
    var tr = h("tr", { "data-id": c.id, "class": fresh ? "fresh" : null },
      h("td", { "class": "num" }, String(c.id)), h("td", null, timeEl(c.created_at)),
      h("td", null, c.summary), h("td", null, c.actor), status, detail);
    var row = state.commands[c.id] = { tr: tr, status: status, detail: detail,
                                       plan: c.service === "plans" };
    setStatus(row, c.status, c.error);
    tbody.insertBefore(tr, tbody.firstChild);
  }

  function updateCommand(state, c) {
    var row = state.commands[c.id];
    if (!row) { addCommand(state, c, true); return; }
    setStatus(row, c.status, c.error);
  }

  function setStatus(row, status, error) {
    fill(row.status, h("span", { "class": "status status-" + status }, status));
    if (error !== null && error !== undefined) row.detail.textContent = error;
  }

  // ------------------------------------------------------------------ forms

  function writableObjects(profile) {
    if (!profile) return [];
    return profile.objects.filter(function (o) {
      return o.writable && ["analog", "enum", "binary", "text", "counter"].indexOf(o.type) >= 0;
    });
  }

  function currentValue(state, profile, name) {
    var v = state.values[profile.name] && state.values[profile.name][name];
    return v ? v.value : null;
  }

  // A value input fitting the object: number (range, step), select (enum, binary) or text.
  function valueInput(id, obj) {
    if (obj.type === "enum" && obj.labels) {
      return h("select", { id: id, required: true }, Object.keys(obj.labels).map(function (k) {
        return h("option", { value: k }, k + " · " + obj.labels[k]);
      }));
    }
    if (obj.type === "binary") {
      return h("select", { id: id, required: true },
        h("option", { value: "true" }, "yes (true)"), h("option", { value: "false" }, "no (false)"));
    }
    if (obj.type === "text") {
      return h("input", { id: id, type: "text", maxlength: obj.max, required: true });
    }
    var step = obj.scale === null ? "any" : Math.pow(10, obj.scale);
    return h("input", { id: id, type: "number", min: obj.min, max: obj.max, step: step, required: true,
                        inputmode: "decimal" });
  }

  function parseInput(el, obj) {
    if (obj.type === "binary") return el.value === "true";
    if (obj.type === "text") return el.value;
    return Number(el.value);
  }

  function objectPicker(id, objs, onchange) {
    return h("select", { id: id, onchange: onchange }, objs.map(function (o) {
      return h("option", { value: o.name }, o.name + (o.unit && unitText(o.unit) ? " (" + unitText(o.unit) + ")" : ""));
    }));
  }

  function setpointForm(state, profile) {
    var objs = writableObjects(profile);
    var section = h("section", { "class": "card", "aria-labelledby": "setpoint-h" }, h("h2", { id: "setpoint-h" }, "Write a set-point"));
    if (!objs.length) { section.appendChild(h("p", { "class": "muted" }, "Nothing writable.")); return section; }
    var slot = h("span", { "class": "value-slot" });
    var hint = h("p", { id: "setpoint-hint", "class": "hint" });
    var result = h("p", { id: "setpoint-result", "class": "result", role: "status", "aria-live": "polite" });
    var picker = objectPicker("setpoint-object", objs, refresh);
    var input;
    function refresh() {
      var obj = profile.byName[picker.value];
      input = valueInput("setpoint-value", obj);
      fill(slot, input);
      var cur = currentValue(state, profile, obj.name);
      if (cur !== null && input.tagName === "INPUT" && typeof cur === "number") input.value = cur;
      else if (cur !== null && input.tagName === "SELECT") input.value = String(cur);
      hint.textContent = (obj.meaning ? obj.meaning + ". " : "") +
        (rangeText(obj) ? "Range " + rangeText(obj) + ". " : "") +
        "Now: " + valueText(cur, obj) + ".";
    }
    var form = h("form", { id: "setpoint-form", novalidate: true, onsubmit: function (e) {
      e.preventDefault();
      var obj = profile.byName[picker.value];
      if (!input.checkValidity()) { result.className = "result bad"; result.textContent = input.validationMessage; return; }
      var values = {}; values[obj.name] = parseInput(input, obj);
      result.className = "result"; result.textContent = "Sending…";
      api("/devices/" + enc(state.device.id) + "/commands", "POST",
          { service: profile.name, op: "write", values: values }).then(function (c) {
        result.className = "result good";
        result.textContent = "Queued command #" + c.id + ": " + c.summary;
        addCommand(state, c, true);
      }).catch(function (err) {
        result.className = "result bad";
        result.textContent = err.message || String(err);
      });
    } },
      h("div", { "class": "field" }, h("label", { "for": "setpoint-object" }, "Object"), picker),
      h("div", { "class": "field" }, h("label", { "for": "setpoint-value" }, "Value"), slot),
      hint,
      h("button", { type: "submit", id: "setpoint-submit" }, "Write"),
      result);
    refresh();
    section.appendChild(form);
    return section;
  }

  function planForm(state, profile) {
    var objs = writableObjects(profile);
    var section = h("section", { "class": "card", "aria-labelledby": "plan-h" }, h("h2", { id: "plan-h" }, "Push a plan"));
    if (!objs.length) { section.appendChild(h("p", { "class": "muted" }, "Nothing a plan could set.")); return section; }
    var slot = h("span", { "class": "value-slot" });
    var result = h("p", { id: "plan-result", "class": "result", role: "status", "aria-live": "polite" });
    var picker = objectPicker("plan-object", objs, refresh);
    var start = h("input", { id: "plan-start", type: "number", min: 0, max: 2880, step: 1, value: 0, required: true });
    var duration = h("input", { id: "plan-duration", type: "number", min: 1, max: 2880, step: 1, value: 60, required: true });
    var primacy = h("input", { id: "plan-primacy", type: "number", min: 0, max: 255, step: 1, value: 100, required: true });
    var input;
    function refresh() {
      var obj = profile.byName[picker.value];
      input = valueInput("plan-value", obj);
      fill(slot, input);
      var cur = currentValue(state, profile, obj.name);
      if (cur !== null && input.tagName === "INPUT" && typeof cur === "number") input.value = cur;
    }
    var plansBody = h("tbody");
    state.plansBody = plansBody;
    var form = h("form", { id: "plan-form", novalidate: true, onsubmit: function (e) {
      e.preventDefault();
      var obj = profile.byName[picker.value];
      var bad = [input, start, duration, primacy].filter(function (x) { return !x.checkValidity(); })[0];
      if (bad) { result.className = "result bad"; result.textContent = bad.validationMessage; return; }
      var entries = {}; entries[profile.name] = {}; entries[profile.name][obj.name] = parseInput(input, obj);
      var body = { start: Math.floor(clock.now()) + 60 * Number(start.value),
                   duration: 60 * Number(duration.value), primacy: Number(primacy.value), entries: entries };
      result.className = "result"; result.textContent = "Sending…";
      api("/devices/" + enc(state.device.id) + "/plans", "POST", body).then(function (out) {
        result.className = "result good";
        result.textContent = "Queued plan " + out.plan.id + " (command #" + out.command.id + ")";
        addCommand(state, out.command, true);
        loadPlans(state);
      }).catch(function (err) {
        result.className = "result bad";
        result.textContent = err.message || String(err);
      });
    } },
      h("div", { "class": "field" }, h("label", { "for": "plan-object" }, "Object"), picker),
      h("div", { "class": "field" }, h("label", { "for": "plan-value" }, "Value"), slot),
      h("div", { "class": "field-row" },
        h("div", { "class": "field" }, h("label", { "for": "plan-start" }, "Start in (min)"), start),
        h("div", { "class": "field" }, h("label", { "for": "plan-duration" }, "Duration (min)"), duration),
        h("div", { "class": "field" }, h("label", { "for": "plan-primacy" }, "Primacy"), primacy)),
      h("button", { type: "submit", id: "plan-submit" }, "Push plan"),
      result);
    refresh();
    section.appendChild(form);
    section.appendChild(h("div", { "class": "table-wrap" }, h("table", { id: "plans", "class": "data" },
      h("caption", null, "Plans (times UTC)"),
      h("thead", null, h("tr", null, ["Plan", "Sets", "From", "Until", "Primacy", "Status", ""].map(function (c) {
        return h("th", { scope: "col" }, c || h("span", { "class": "visually-hidden" }, "Actions"));
      }))), plansBody)));
    return section;
  }

  // what a plan sets, as text: "sg_ready = 3, power_limit = 2.0 kW"
  function planSets(entries) {
    var sets = [];
    Object.keys(entries).forEach(function (svc) {
      Object.keys(entries[svc]).forEach(function (name) {
        var v = entries[svc][name];
        var obj = objectOf(svc, name);
        sets.push(name + " = " + (Array.isArray(v) ? "schedule" :
          obj && obj.type === "enum" ? String(v) : valueText(v, obj)));
      });
    });
    return sets.join(", ");
  }

  function loadPlans(state) {
    if (!state.plansBody) return Promise.resolve();
    return api("/devices/" + enc(state.device.id) + "/plans?all=true").then(function (plans) {
      var live = plans.filter(function (p) { return p.expiry > clock.now() || p.status === "queued"; }).slice(-8);
      fill(state.plansBody, live.length ? live.reverse().map(function (p) {
        var cancel = (p.status === "queued" || p.status === "accepted") ?
          h("button", { type: "button", "class": "small", "aria-label": "Cancel plan " + p.id, onclick: function () {
            api("/devices/" + enc(state.device.id) + "/plans/" + p.id, "DELETE").then(function (c) {
              addCommand(state, c, true);
              loadPlans(state);
            });
          } }, "Cancel") : null;
        return h("tr", { "data-id": p.id },
          h("td", { "class": "num" }, String(p.id)), h("td", null, planSets(p.entries)),
          h("td", null, h("time", { title: clockText(p.start) }, shortTime(p.start))),
          h("td", null, h("time", { title: clockText(p.expiry) }, shortTime(p.expiry))),
          h("td", { "class": "num" }, String(p.primacy)),
          h("td", null, h("span", { "class": "status status-plan-" + p.status }, p.status)), h("td", null, cancel));
      }) : h("tr", null, h("td", { colspan: 7, "class": "muted" }, "No plan in force or waiting.")));
    });
  }

  // ------------------------------------------------------------------ routing

  function route() {
    leaving.splice(0).forEach(function (fn) { fn(); });
    var m = location.pathname.match(/^\/device\/(.+)$/);
    if (!m && location.hash.indexOf("#device/") === 0) m = [null, location.hash.slice(8)];
    var view = m ? deviceView(decodeURIComponent(m[1])) : fleetView();
    return view.then(function () { main.setAttribute("data-ready", "true"); }).catch(function (err) {
      if (err && err.status === 401) return;
      errorView(err);
    });
  }

  clock.sync().then(route);
  setInterval(function () { clock.sync(); }, 5000);
  setInterval(refreshTimes, 1000);
})();
