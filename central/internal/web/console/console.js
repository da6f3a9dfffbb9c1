// xl-central console: alert wall, incident detail, order board, fleet,
// site map and the field-unit page. Vanilla JS, no build step; every
// visible string comes from i18n.js.
"use strict";
(function () {
  const TZ = "Asia/Shanghai";
  const state = { lang: localStorage.getItem("xl.lang") || "zh-CN", user: null, csrf: "", es: null, view: "", timer: 0 };
  const $ = (sel) => document.querySelector(sel);
  const t = (key) => (window.XL_I18N[state.lang] || {})[key] || (window.XL_I18N["zh-CN"] || {})[key] || key;
  const tOr = (key, raw) => { const v = t(key); return v === key ? raw : v; };

  // h builds an element; strings become text nodes (never HTML).
  function h(tag, attrs, ...kids) {
    const el = tag.startsWith("svg:") ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4)) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : v);
    }
    for (const kid of kids.flat()) if (kid !== null && kid !== undefined) el.append(kid instanceof Node ? kid : String(kid));
    return el;
  }

  const fmtTime = (s) => s ? new Intl.DateTimeFormat(state.lang, { timeZone: TZ, month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false }).format(new Date(s)) : "";
  const fmtDur = (ms) => { const s = Math.max(0, Math.round(Math.abs(ms) / 1000)); const m = Math.floor(s / 60); return (m >= 60 ? Math.floor(m / 60) + ":" + String(m % 60).padStart(2, "0") : m) + ":" + String(s % 60).padStart(2, "0"); };

  function applyI18n() {
    document.documentElement.lang = state.lang;
    document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
    document.title = t("app.title");
  }

  async function api(method, path, body) {
    const opt = { method, headers: {}, credentials: "same-origin" };
    if (method !== "GET") opt.headers["X-CSRF-Token"] = state.csrf;
    if (body instanceof FormData) opt.body = body;
    else if (body !== undefined) { opt.headers["Content-Type"] = "application/json"; opt.body = JSON.stringify(body); }
    const r = await fetch(path, opt);
    if (r.status === 401 && path !== "/api/v1/session") { showLogin(); throw new Error("unauthenticated"); }
    const data = r.status === 204 ? {} : await r.json().catch(() => ({}));
    if (!r.ok) { const e = new Error((data.error && data.error.message) || r.statusText); e.status = r.status; e.code = data.error && data.error.code; throw e; }
    return data;
  }

  // ---- session ----
  function showLogin() {
    state.user = null;
    $("#login").hidden = false; $("#main").hidden = true; $("#logout").hidden = true; $("#who").textContent = "";
    if (state.es) { state.es.close(); state.es = null; }
  }
  async function start() {
    try {
      const s = await api("GET", "/api/v1/session");
      signedIn(s);
    } catch (e) { showLogin(); }
  }
  function signedIn(s) {
    state.user = s.user; state.csrf = s.csrf_token || "";
    $("#login").hidden = true; $("#main").hidden = false; $("#logout").hidden = false;
    $("#who").textContent = s.user.display_name || s.user.username;
    const agency = s.user.role === "agency";
    document.querySelectorAll("[data-staff]").forEach((a) => { a.hidden = agency; });
    connectEvents();
    if (agency && !location.hash.startsWith("#/field")) location.hash = "#/field";
    else route();
  }
  $("#login").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    try {
      signedIn(await api("POST", "/api/v1/session", { username: f.get("username"), password: f.get("password") }));
      ev.target.reset(); $("#login-error").textContent = "";
    } catch (e) { $("#login-error").textContent = t(e.status === 429 ? "auth.limited" : "auth.failed"); }
  });
  $("#logout").addEventListener("click", async () => { try { await api("DELETE", "/api/v1/session"); } catch (e) { /* signed out anyway */ } showLogin(); });
  $("#lang").addEventListener("click", () => { state.lang = state.lang === "zh-CN" ? "en" : "zh-CN"; localStorage.setItem("xl.lang", state.lang); applyI18n(); route(); });

  // ---- live updates ----
  let refreshTimer = 0;
  function connectEvents() {
    if (state.es) return;
    const es = new EventSource("/api/v1/events");
    state.es = es;
    es.onopen = () => { $("#live").className = "live on"; $("#live").textContent = t("live.on"); };
    es.onerror = () => { $("#live").className = "live off"; $("#live").textContent = t("live.off"); };
    es.addEventListener("alert", (m) => { if (state.view === "wall") prependAlert(JSON.parse(m.data), true); });
    const soon = () => { clearTimeout(refreshTimer); refreshTimer = setTimeout(() => route(true), 250); };
    es.addEventListener("incident", () => { if (state.view !== "fleet" && state.view !== "map") soon(); });
    es.addEventListener("order", soon);
    es.addEventListener("reset", soon);
  }

  // ---- views ----
  const main = () => $("#main");
  const sevBadge = (s) => h("span", { class: "sev sev" + s }, tOr("sev." + s, String(s)));
  const typeName = (ty) => tOr("type." + ty, ty);
  const stateName = (s) => tOr("state." + s, s);
  function snapshot(url, cls) {
    if (!url) return h("div", { class: "noimg " + (cls || "") });
    const img = h("img", { src: url, loading: "lazy", class: cls || "", alt: "" });
    img.addEventListener("error", () => {
      if (!img.dataset.retried) { img.dataset.retried = "1"; setTimeout(() => { img.src = url + "?r=1"; }, 2000); }
      else img.replaceWith(h("div", { class: "noimg " + (cls || "") }));
    });
    return img;
  }
  function alertCard(a, live) {
    const url = a.snapshot_url || "/api/v1/alerts/" + encodeURIComponent(a.alert_id) + "/snapshot.jpg";
    return h("article", { class: "alert" + (live ? " new" : ""), "data-alert": a.alert_id },
      snapshot(url, "thumb"),
      h("div", { class: "meta" }, sevBadge(a.severity), " ", h("b", null, typeName(a.type)), " ", h("span", { class: "phase" }, tOr("phase." + a.phase, a.phase)),
        h("div", { class: "place" }, a.site || a.camera_id, " · ", a.zone || ""),
        h("time", null, fmtTime(a.detected_at))));
  }
  function prependAlert(a, live) {
    const list = $("#alerts");
    if (!list) return;
    const empty = list.querySelector(".empty"); if (empty) empty.remove();
    list.prepend(alertCard(a, live));
    while (list.children.length > 120) list.lastChild.remove();
  }

  async function viewWall() {
    const [al, inc] = await Promise.all([api("GET", "/api/v1/alerts?limit=60"), api("GET", "/api/v1/incidents?limit=40")]);
    const alerts = h("section", { id: "alerts", class: "wall" }, al.alerts.length ? al.alerts.map((a) => alertCard(a)) : h("p", { class: "empty" }, t("wall.empty")));
    const incs = h("section", { id: "incidents" }, h("h2", null, t("wall.incidents")),
      inc.incidents.map((i) => h("a", { class: "incident st-" + i.state, href: "#/incident/" + encodeURIComponent(i.id), "data-incident": i.id },
        sevBadge(i.severity), " ", h("b", null, typeName(i.type)), " ", i.camera_id, " · ", i.zone,
        h("span", { class: "state" }, stateName(i.state)), h("time", null, fmtTime(i.last_alert_at)), h("span", { class: "count" }, "×" + i.alert_count))));
    return h("div", { class: "cols" }, h("div", { class: "col-main" }, h("h2", null, t("wall.alerts")), alerts), incs);
  }

  function orderActions(o, actions, onDone) {
    const reason = h("input", { class: "reason", placeholder: t("act.reason") });
    const btns = actions.filter((a) => o.allowed.includes(a)).map((a) => h("button", {
      type: "button", class: "act act-" + a, "data-action": a, "data-order": o.id,
      onclick: async () => {
        try {
          await api("POST", "/api/v1/orders/" + encodeURIComponent(o.id) + "/transitions",
            { action: a, expected_version: o.version, command_id: a + "-" + o.id + "-" + o.version, reason: reason.value || (a === "cancel" || a === "reject" ? t("act." + a) : "") });
          onDone();
        } catch (e) { alert(t("act.failed") + ": " + e.message); }
      },
    }, t("act." + a)));
    return btns.length ? h("div", { class: "actions" }, btns, btns.some((b) => ["cancel", "reject"].includes(b.dataset.action)) ? reason : null) : null;
  }

  async function viewIncident(id) {
    const d = await api("GET", "/api/v1/incidents/" + encodeURIComponent(id));
    const i = d.incident;
    const first = d.alerts.find((a) => a.snapshot_url) || d.alerts[0] || {};
    const clip = d.alerts.find((a) => a.clip_url);
    const again = () => route(true);
    return h("div", { class: "incident-detail" },
      h("a", { href: "#/wall", class: "back" }, "← " + t("inc.back")),
      h("h2", null, t("inc.title"), " ", sevBadge(i.severity), " ", typeName(i.type), " ", h("span", { class: "state", id: "incident-state" }, stateName(i.state))),
      h("dl", null, h("dt", null, t("inc.camera")), h("dd", null, i.camera_id), h("dt", null, t("inc.zone")), h("dd", null, i.zone),
        h("dt", null, t("inc.grid")), h("dd", null, i.grid), h("dt", null, t("inc.alerts")), h("dd", null, String(i.alert_count))),
      h("div", { class: "media" }, snapshot(first.snapshot_url, "big"),
        clip ? h("video", { src: clip.clip_url, controls: true, preload: "metadata", class: "big" }) : h("p", { class: "empty" }, t("inc.noclip"))),
      h("h3", null, t("inc.orders")),
      h("div", { class: "orders" }, d.orders.map((o) => h("div", { class: "order card-" + o.card, "data-order": o.id, "data-state": o.state },
        h("b", null, tOr("role." + o.role, o.role)), " ", o.agency_id, " ", h("span", { class: "state" }, stateName(o.state)),
        orderActions(o, ["dispatch", "close", "escalate", "false_alarm", "cancel"], again)))),
      h("h3", null, t("inc.timeline")),
      h("ol", { class: "timeline" }, d.alerts.map((a) => h("li", null, h("time", null, fmtTime(a.detected_at)), " ", tOr("phase." + a.phase, a.phase), " ", typeName(a.type)))));
  }

  function countdown(o) {
    if (!o.next_timer_at) return h("span", { class: "due" });
    return h("span", { class: "due", "data-due": o.next_timer_at });
  }
  function tickCountdowns() {
    const now = Date.now();
    document.querySelectorAll("[data-due]").forEach((el) => {
      const ms = new Date(el.dataset.due).getTime() - now;
      el.textContent = (ms >= 0 ? t("orders.due") + " " : t("orders.overdue") + " ") + fmtDur(ms);
      el.classList.toggle("late", ms < 0);
    });
    const c = $("#clock"); if (c) c.textContent = fmtTime(new Date().toISOString());
  }

  async function viewOrders() {
    const d = await api("GET", "/api/v1/orders?limit=500");
    const open = d.orders.filter((o) => !["closed", "cancelled", "false_alarm"].includes(o.state));
    const cols = ["red", "yellow", "blue", "none"].map((c) => h("section", { class: "board-col card-" + c, "data-card": c },
      h("h2", null, t("card." + c), " ", h("span", { class: "count" }, String(open.filter((o) => (o.card || "none") === c).length))),
      open.filter((o) => (o.card || "none") === c).map((o) => h("a", { class: "order", href: "#/incident/" + encodeURIComponent(o.incident_id), "data-order": o.id, "data-state": o.state },
        h("b", null, o.agency_id), " ", h("span", { class: "state" }, stateName(o.state)), " ", countdown(o)))));
    const closed = d.orders.filter((o) => !open.includes(o)).slice(0, 30);
    return h("div", null, h("div", { class: "board" }, cols),
      h("section", { class: "closed" }, closed.map((o) => h("a", { class: "order done", href: "#/incident/" + encodeURIComponent(o.incident_id), "data-order": o.id, "data-state": o.state },
        o.agency_id, " ", h("span", { class: "state" }, stateName(o.state)), " ", h("time", null, fmtTime(o.updated_at))))));
  }

  async function viewFleet() {
    const [ag, cams] = await Promise.all([api("GET", "/api/v1/agents"), api("GET", "/api/v1/cameras")]);
    const row = (...cells) => h("tr", null, cells.map((c) => h("td", null, c)));
    return h("div", { class: "fleet" },
      h("h2", null, t("fleet.agents")),
      h("table", null, h("tr", null, [t("fleet.agents"), t("inc.state"), t("fleet.version"), t("fleet.last_seen")].map((c) => h("th", null, c))),
        ag.agents.map((a) => row(a.agent_id, h("span", { class: "dot " + a.state }, t("fleet." + a.state)), a.version || "", fmtTime(a.last_seen)))),
      h("h2", null, t("fleet.cameras")),
      h("table", null, h("tr", null, [t("fleet.cameras"), t("inc.grid"), t("fleet.agents"), t("fleet.stream"), t("fleet.fps"), t("fleet.last_seen")].map((c) => h("th", null, c))),
        cams.cameras.map((c) => row(c.camera_id, c.grid || "", c.agent_id || "", h("span", { class: "dot " + c.stream_state }, tOr("stream." + c.stream_state, c.stream_state)),
          c.fps ? c.fps.toFixed(1) : "", fmtTime(c.last_seen)))));
  }

  async function viewMap() {
    const cams = (await api("GET", "/api/v1/cameras")).cameras;
    const placed = cams.filter((c) => c.geo), unplaced = cams.filter((c) => !c.geo);
    const W = 800, H = 500, pad = 60;
    const lats = placed.map((c) => c.geo.lat), lons = placed.map((c) => c.geo.lon);
    const minLat = Math.min(...lats), maxLat = Math.max(...lats), minLon = Math.min(...lons), maxLon = Math.max(...lons);
    const span = Math.max(maxLat - minLat, (maxLon - minLon) * Math.cos(minLat * Math.PI / 180), 0.002);
    const x = (c) => pad + ((c.geo.lon - minLon) * Math.cos(minLat * Math.PI / 180) / span) * (W - 2 * pad);
    const y = (c) => H - pad - ((c.geo.lat - minLat) / span) * (H - 2 * pad);
    const svg = h("svg:svg", { viewBox: "0 0 " + W + " " + H, class: "map", role: "img" },
      h("svg:rect", { x: 0, y: 0, width: W, height: H, class: "bg" }),
      placed.map((c) => h("svg:g", { class: "cam " + c.stream_state, "data-camera": c.camera_id },
        h("svg:circle", { cx: x(c), cy: y(c), r: 9 }),
        h("svg:text", { x: x(c) + 14, y: y(c) + 5 }, (state.lang === "en" ? c.name_en : c.name_zh) || c.camera_id))));
    return h("div", null, h("h2", null, t("map.title")), svg,
      unplaced.length ? h("p", null, t("map.nogeo"), ": ", unplaced.map((c) => c.camera_id).join(", ")) : null);
  }

  async function viewField() {
    const d = await api("GET", "/api/v1/orders?limit=100");
    const mine = d.orders.filter((o) => ["dispatched", "accepted", "en_route", "on_scene"].includes(o.state));
    const again = () => route(false);
    const card = (o) => {
      const note = h("textarea", { class: "note", rows: 2, placeholder: t("act.note") });
      const file = h("input", { type: "file", accept: "image/*", capture: "environment", class: "photo" });
      const acts = ["accept", "depart", "arrive", "resolve", "reject"].filter((a) => o.allowed.includes(a)).map((a) => h("button", {
        type: "button", class: "act act-" + a, "data-action": a, "data-order": o.id,
        onclick: async () => {
          try {
            if (file.files.length) {
              const fd = new FormData(); fd.append("photo", file.files[0]); fd.append("note", note.value);
              await api("POST", "/api/v1/orders/" + encodeURIComponent(o.id) + "/photos", fd);
            }
            await api("POST", "/api/v1/orders/" + encodeURIComponent(o.id) + "/transitions",
              { action: a, expected_version: o.version, command_id: a + "-" + o.id + "-" + o.version, note: note.value || (a === "resolve" ? t("act.resolve") : ""), reason: a === "reject" ? (note.value || t("act.reject")) : "" });
            again();
          } catch (e) { alert(t("act.failed") + ": " + e.message); }
        },
      }, t("act." + a)));
      return h("article", { class: "field-order card-" + o.card, "data-order": o.id, "data-state": o.state },
        h("img", { src: "/api/v1/orders/" + encodeURIComponent(o.id) + "/snapshot.jpg", class: "thumb", alt: "", loading: "lazy" }),
        h("div", null, h("b", null, stateName(o.state)), " ", countdown(o), h("div", null, tOr("role." + o.role, o.role), " · ", fmtTime(o.created_at))),
        note, h("label", { class: "photo-label" }, t("act.photo"), file), h("div", { class: "actions" }, acts));
    };
    return h("div", { class: "field" }, h("h2", null, t("field.title")), mine.length ? mine.map(card) : h("p", { class: "empty" }, t("field.empty")));
  }

  async function route(refresh) {
    if (!state.user) return;
    if (location.pathname === "/field" && !location.hash) location.hash = "#/field";
    const hash = location.hash || (state.user.role === "agency" ? "#/field" : "#/wall");
    const [, name, arg] = hash.split("/");
    const views = { wall: viewWall, incident: () => viewIncident(decodeURIComponent(arg || "")), orders: viewOrders, fleet: viewFleet, map: viewMap, field: viewField };
    const fn = views[name] || viewWall;
    state.view = views[name] ? name : "wall";
    if (refresh && (state.view === "fleet" || state.view === "map")) return;
    // A live refresh must not wipe what a field unit is typing or attaching.
    if (refresh && [...document.querySelectorAll(".field-order textarea, .field-order input[type=file]")].some((el) => el.value)) return;
    document.body.dataset.view = state.view;
    document.querySelectorAll("#nav a").forEach((a) => a.classList.toggle("on", a.getAttribute("href") === "#/" + state.view));
    try {
      const el = await fn();
      main().replaceChildren(el);
      tickCountdowns();
      if (!document.body.dataset.rendered) { document.body.dataset.rendered = "1"; performance.mark("xl-rendered"); }
    } catch (e) {
      if (e.message !== "unauthenticated") main().replaceChildren(h("p", { class: "error" }, t("err.load") + ": " + e.message));
    }
  }

  window.addEventListener("hashchange", () => route());
  setInterval(tickCountdowns, 1000);
  applyI18n();
  start();
})();
