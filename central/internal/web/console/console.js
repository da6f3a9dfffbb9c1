"use strict";
// The message catalogue: every user-facing string of the page, zh-CN first.
const MESSAGES = {
  "zh-CN": {
    title: "雪亮工程 · 视频智能分析告警", loading: "正在加载…", empty: "暂无告警",
    error: "无法连接指挥中心服务", switchTo: "English", agentsOnline: "在线终端 {n}/{m}",
    updated: "更新于 {t}", severity: "{n}级", camera: "摄像机 {c}", zone: "区域 {z}",
    phase: { start: "开始", update: "持续", end: "结束" },
    types: { illegal_fishing: "疑似非法捕捞", intrusion: "区域入侵", loitering: "徘徊逗留",
      boat_in_restricted_water: "船只闯入禁航水域", crowd: "人员聚集", camera_tamper: "摄像机遮挡/移位",
      stream_lost: "视频流中断", stream_restored: "视频流恢复" },
  },
  en: {
    title: "Xueliang · Video analytics alerts", loading: "Loading…", empty: "No alerts yet",
    error: "Cannot reach the command centre service", switchTo: "中文", agentsOnline: "Agents online {n}/{m}",
    updated: "Updated {t}", severity: "Severity {n}", camera: "Camera {c}", zone: "Zone {z}",
    phase: { start: "start", update: "ongoing", end: "end" },
    types: { illegal_fishing: "Suspected illegal fishing", intrusion: "Intrusion", loitering: "Loitering",
      boat_in_restricted_water: "Boat in restricted water", crowd: "Crowd", camera_tamper: "Camera tampering",
      stream_lost: "Stream lost", stream_restored: "Stream restored" },
  },
};
let lang = localStorage.getItem("xl.lang") || "zh-CN";
const T = () => MESSAGES[lang];
const fmt = (s, vars) => s.replace(/\{(\w+)\}/g, (_, k) => vars[k]);
const timeFmt = () => new Intl.DateTimeFormat(lang, { timeZone: "Asia/Shanghai", dateStyle: "short", timeStyle: "medium", hour12: false });

function applyStatic() {
  document.documentElement.lang = lang;
  document.title = T().title;
  document.querySelectorAll("[data-i18n]").forEach(el => { el.textContent = T()[el.dataset.i18n]; });
  document.getElementById("lang").textContent = T().switchTo;
}

let last = { alerts: [], agents: [] };
function render() {
  const wall = document.getElementById("wall");
  const tpl = document.getElementById("card");
  wall.replaceChildren();
  for (const a of last.alerts) {
    const card = tpl.content.firstElementChild.cloneNode(true);
    card.classList.add("sev" + a.severity);
    card.dataset.alertId = a.alert_id;
    const img = card.querySelector("img");
    if (a.snapshot_url) { img.src = a.snapshot_url; img.alt = T().types[a.type] || a.type; } else { card.querySelector(".snap").remove(); }
    card.querySelector(".type").textContent = T().types[a.type] || a.type;
    card.querySelector(".sev").textContent = fmt(T().severity, { n: a.severity });
    card.querySelector(".phase").textContent = T().phase[a.phase] || a.phase;
    const where = [a.site, fmt(T().camera, { c: a.camera_id })];
    if (a.zone) where.push(fmt(T().zone, { z: a.zone }));
    card.querySelector(".where").textContent = where.filter(Boolean).join(" · ");
    card.querySelector(".when").textContent = timeFmt().format(new Date(a.detected_at));
    wall.appendChild(card);
  }
  const online = last.agents.filter(g => g.state === "online").length;
  document.getElementById("agents").textContent = fmt(T().agentsOnline, { n: online, m: last.agents.length });
  document.getElementById("status").textContent = last.alerts.length ? fmt(T().updated, { t: timeFmt().format(new Date()) }) : T().empty;
}

async function poll() {
  try {
    const [al, ag] = await Promise.all([fetch("/api/v1/alerts?limit=60"), fetch("/api/v1/agents")]);
    if (!al.ok || !ag.ok) throw new Error("HTTP " + al.status + "/" + ag.status);
    last = { alerts: (await al.json()).alerts, agents: (await ag.json()).agents };
    render();
  } catch (e) {
    document.getElementById("status").textContent = T().error + " (" + e.message + ")";
  }
}

document.getElementById("lang").addEventListener("click", () => {
  lang = lang === "zh-CN" ? "en" : "zh-CN";
  localStorage.setItem("xl.lang", lang);
  applyStatic(); render();
});
applyStatic();
poll();
setInterval(poll, 2000);
