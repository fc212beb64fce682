// airmix live view: renders the snapshot pushed by /ws (see orchestrator/live/server.py).
"use strict";

const LAYOUT = { margin: { l: 55, r: 20, t: 10, b: 45 }, legend: { orientation: "h", y: -0.25 } };
const CONFIG = { displayModeBar: false, responsive: true };
let updates = 0;

function panel(id) { return document.getElementById(id); }

function plot(id, traces, layout) {
  const div = panel(id).querySelector(".plot");
  Plotly.react(div, traces, Object.assign({}, LAYOUT, layout), CONFIG);
  panel(id).dataset.rendered = "true";
}

function column(rows, key) { return rows.map((r) => (r[key] === undefined ? null : r[key])); }

function fmt(value, digits) {
  return value === null || value === undefined ? "-" : Number(value).toFixed(digits);
}

function sparkline(values) {
  const points = values.map((v, i) => [i, v]).filter((p) => p[1] !== null && p[1] !== undefined);
  const width = 120, height = 24;
  if (points.length < 2) return `<svg class="spark" width="${width}" height="${height}"></svg>`;
  const ys = points.map((p) => p[1]);
  const lo = Math.min(...ys), hi = Math.max(...ys), span = hi - lo || 1;
  const last = values.length - 1 || 1;
  const path = points
    .map((p) => `${(p[0] / last * (width - 2) + 1).toFixed(1)},${(height - 2 - (p[1] - lo) / span * (height - 4)).toFixed(1)}`)
    .join(" ");
  return `<svg class="spark" width="${width}" height="${height}"><polyline fill="none" stroke="#2b6cb0" stroke-width="1.5" points="${path}"/></svg>`;
}

function renderHeader(s) {
  const last = s.rounds.length ? s.rounds[s.rounds.length - 1].round : null;
  panel("round").textContent = last === null ? "-" : String(last);
  panel("rounds-planned").textContent = s.run.rounds_planned ?? "-";
  panel("radio").textContent = s.run.radio ?? "-";
  panel("method").textContent = s.run.method ?? "-";
  panel("run-status").textContent = s.run.status;
}

function renderTraining(s) {
  const rounds = column(s.rounds, "round");
  plot("panel-accuracy", [
    { x: rounds, y: column(s.rounds, "accuracy"), name: "test accuracy", mode: "lines+markers" },
    { x: rounds, y: column(s.rounds, "loss"), name: "training loss", yaxis: "y2", mode: "lines" },
  ], {
    xaxis: { title: { text: "round" } },
    yaxis: { title: { text: "accuracy" }, range: [0, 1] },
    yaxis2: { title: { text: "loss" }, overlaying: "y", side: "right" },
    margin: { l: 55, r: 60, t: 10, b: 45 },
  });
  const payload = column(s.rounds, "channel_uses");
  const pilots = column(s.rounds, "pilot_channel_uses");
  plot("panel-accuracy-uses", [
    { x: payload, y: column(s.rounds, "accuracy"), name: "payload channel uses", mode: "lines+markers" },
    { x: payload.map((p, i) => (p ?? 0) + (pilots[i] ?? 0)), y: column(s.rounds, "accuracy"),
      name: "payload + acquisition", mode: "lines" },
  ], { xaxis: { title: { text: "cumulative channel uses" } }, yaxis: { title: { text: "accuracy" }, range: [0, 1] } });
  plot("panel-uses", [
    { x: rounds, y: column(s.rounds, "round_channel_uses"), name: "payload", type: "bar" },
    { x: rounds, y: column(s.rounds, "round_pilot_channel_uses"), name: "acquisition", type: "bar" },
  ], { barmode: "stack", xaxis: { title: { text: "round" } }, yaxis: { title: { text: "channel uses" } } });
}

function renderLinks(s) {
  const table = panel("panel-links");
  const body = table.querySelector("tbody");
  const state = s.link_state;
  body.innerHTML = state.users.map((user) => {
    const row = state.latest[user] || {};
    const hist = state.history[user];
    return `<tr><td>${user}</td><td>${fmt(row.timing_samples, 2)}</td><td>${fmt(row.cfo_hz, 1)}</td>` +
      `<td>${fmt(row.gain, 3)}</td><td>${fmt(row.snr_db, 1)}</td><td>${row.underflows ?? "-"}</td>` +
      `<td>${row.reacquisitions ?? "-"}</td><td>${sparkline(hist.snr_db)}</td><td>${sparkline(hist.cfo_hz)}</td></tr>`;
  }).join("");
  table.querySelector(".empty").style.display = state.users.length ? "none" : "block";
  if (state.users.length) table.dataset.rendered = "true";
}

function renderSlot(s) {
  const slot = s.last_slot;
  if (!slot) return;
  const title = `round ${slot.round}, slot ${slot.slot}, users ${slot.group.join(", ")}`;
  plot("panel-spectrum", [{ x: slot.spectrum.freq_hz.map((f) => f / 1e3), y: slot.spectrum.psd_db, mode: "lines", name: title }],
    { xaxis: { title: { text: "offset from carrier (kHz)" } }, yaxis: { title: { text: "PSD (dB/Hz)" } }, showlegend: true });
  const points = slot.constellation || { i: [], q: [] };
  plot("panel-constellation", [{ x: points.i, y: points.q, mode: "markers", marker: { size: 3 }, name: slot.constellation ? title : "frame missed" }],
    { xaxis: { title: { text: "in-phase" } }, yaxis: { title: { text: "quadrature" }, scaleanchor: "x" }, showlegend: true });
}

function renderGroups(s) {
  const list = panel("panel-groups").querySelector("ol");
  list.innerHTML = s.groups.map((g) => `<li>${g.join(", ")}</li>`).join("") || "<li>-</li>";
  panel("panel-groups").dataset.rendered = "true";
}

function renderPrivacy(s) {
  const section = panel("panel-privacy");
  section.querySelector(".empty").style.display = s.privacy.length ? "none" : "block";
  if (!s.privacy.length) { section.dataset.rendered = "waiting"; return; }
  const labels = s.privacy.map((r) => `${r.view}: ${r.attack} ${r.figure}`);
  plot("panel-privacy", [
    { x: labels, y: s.privacy.map((r) => r.value), name: "attack success", type: "bar" },
    { x: labels, y: s.privacy.map((r) => r.chance), name: "chance", type: "bar" },
  ], { barmode: "group", yaxis: { title: { text: "success" }, range: [0, 1] }, margin: { l: 55, r: 20, t: 10, b: 140 } });
}

function render(snapshot) {
  renderHeader(snapshot);
  renderTraining(snapshot);
  renderLinks(snapshot);
  renderSlot(snapshot);
  renderGroups(snapshot);
  renderPrivacy(snapshot);
  updates += 1;
  const counter = panel("updates");
  counter.textContent = String(updates);
  counter.dataset.count = String(updates);
  window.airmixSnapshot = snapshot;
}

function connect(delay) {
  const socket = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  socket.onopen = () => { panel("connection").textContent = "live"; delay = 500; };
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "snapshot") render(message.data);
  };
  socket.onclose = () => {
    panel("connection").textContent = "disconnected (retrying)";
    setTimeout(() => connect(Math.min(delay * 2, 10000)), delay);
  };
}

connect(500);
