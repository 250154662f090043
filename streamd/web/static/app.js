// streamd's page: a grid of cameras, a camera's live view with overlay toggles, and an editor
// that turns clicks on the picture into the TOML block of a zone, a line or a mask.
"use strict";

const api = (path) => fetch(path, { cache: "no-store" }).then((r) => {
  if (!r.ok) throw new Error(`${path}: ${r.status}`);
  return r.json();
});
const $ = (id) => document.getElementById(id);
const points = [];
let timer = null;

function show(section) {
  for (const id of ["grid", "camera", "events"]) $(id).hidden = id !== section;
}

async function events() {
  show("events");
  const form = $("event-filters");
  const cameras = form.elements.source;
  if (cameras.options.length === 1) {
    for (const s of await api("api/sources")) cameras.add(new Option(s.name, s.name));
  }
  const query = new URLSearchParams();
  for (const key of ["source", "label", "zone"]) if (form.elements[key].value) query.set(key, form.elements[key].value);
  const day = form.elements.day.value;
  if (day) {
    const start = new Date(`${day}T00:00:00`);
    query.set("after", start.toISOString());
    query.set("before", new Date(start.getTime() + 86400000).toISOString());
  }
  query.set("limit", "100");
  const rows = await api(`api/events?${query}`);
  const items = rows.map((row) => {
    const item = document.createElement("li");
    item.dataset.event = row.id;
    const thumb = row.snapshot ? document.createElement("img") : document.createElement("span");
    if (row.snapshot) {
      thumb.src = `api/events/${encodeURIComponent(row.id)}/snapshot.jpg`;
      thumb.alt = row.label;
    } else {
      thumb.className = "none";
      thumb.textContent = "no snapshot";
    }
    const text = document.createElement("span");
    const when = new Date(row.start).toLocaleString();
    const seconds = row.end ? ` · ${((new Date(row.end) - new Date(row.start)) / 1000).toFixed(1)} s` : " · ongoing";
    const zones = row.zones.length ? ` · ${row.zones.join(", ")}` : "";
    text.textContent = `${row.source} · ${row.label} ${row.top_score.toFixed(2)} · ${when}${seconds}${zones}`;
    item.append(thumb, text);
    if (row.clip) {
      const play = document.createElement("button");
      play.type = "button";
      play.textContent = "Play clip";
      play.addEventListener("click", () => {
        $("player").hidden = false;
        $("clip").src = `api/events/${encodeURIComponent(row.id)}/clip.mp4`;
      });
      item.append(play);
    }
    return item;
  });
  $("event-list").replaceChildren(...items);
  $("status").textContent = `${rows.length} event(s)`;
}

async function grid() {
  show("grid");
  const sources = await api("api/sources");
  const cards = sources.map((s) => {
    const card = document.createElement("a");
    card.className = "card";
    card.href = `#/source/${encodeURIComponent(s.name)}`;
    card.dataset.source = s.name;
    const img = document.createElement("img");
    img.alt = s.name;
    img.src = `api/sources/${encodeURIComponent(s.name)}/latest.jpg?h=240&bbox=1&t=${Date.now()}`;
    const meta = document.createElement("div");
    meta.className = "meta";
    const name = document.createElement("span");
    name.textContent = s.name;
    const state = document.createElement("span");
    state.className = `state-${s.state}`;
    state.textContent = `${s.state} · ${s.fps.toFixed(1)} fps`;
    meta.append(name, state);
    card.append(img, meta);
    return card;
  });
  $("grid").replaceChildren(...cards);
  $("status").textContent = `${sources.length} camera(s)`;
}

function overlayQuery() {
  const flags = [...document.querySelectorAll("#overlays input")].map((i) => `${i.name}=${i.checked ? 1 : 0}`);
  return flags.join("&");
}

function refreshLive(name) {
  $("live").src = `api/sources/${encodeURIComponent(name)}/live.mjpeg?fps=5&${overlayQuery()}`;
}

async function camera(name) {
  show("camera");
  $("camera-name").textContent = name;
  const sources = await api("api/sources");
  const source = sources.find((s) => s.name === name);
  $("camera-info").textContent = source
    ? `${source.state} · ${source.width}×${source.height} · ${source.fps.toFixed(1)} fps inferred of ` +
      `${source.captured_fps.toFixed(1)} captured · ${source.features.join(", ") || "detection only"}`
    : "no such camera";
  points.length = 0;
  draw();
  refreshLive(name);
  $("recent").hidden = true;
  if (source && source.features.includes("tracking")) recent(name).catch(fail);
}

async function recent(name) {
  // The source's last events, where the history is on (404 otherwise: the section stays hidden).
  const response = await fetch(`api/events?source=${encodeURIComponent(name)}&limit=10`, { cache: "no-store" });
  $("recent").hidden = !response.ok;
  if (!response.ok) return;
  const rows = await response.json();
  $("recent-list").replaceChildren(...rows.map((row) => {
    const item = document.createElement("li");
    const zones = row.zones.length ? ` in ${row.zones.join(", ")}` : "";
    item.textContent = `${new Date(row.start).toLocaleTimeString()} ${row.label} ${row.top_score.toFixed(2)}${zones}`;
    return item;
  }));
}

function round(value) {
  return Math.round(value * 10000) / 10000;
}

function pairs(list) {
  return "[" + list.map(([x, y]) => `[${x}, ${y}]`).join(", ") + "]";
}

function toml() {
  const shape = $("shape").value;
  const name = $("shape-name").value || "zone1";
  if (!points.length) return "";
  if (shape === "zone") return `[[sources.zones]]\nname = "${name}"\npolygon = ${pairs(points)}\n`;
  if (shape === "line") return `[[sources.lines]]\nname = "${name}"\npoints = ${pairs(points.slice(0, 2))}\n`;
  if (shape === "object_mask") return `object_masks = [${pairs(points)}]\n`;
  return `[sources.motion]\nmasks = [${pairs(points)}]\n`;
}

function draw() {
  const svg = $("drawing");
  const shape = points.length > 2 && $("shape").value !== "line" ? "polygon" : "polyline";
  const outline = document.createElementNS("http://www.w3.org/2000/svg", shape);
  outline.setAttribute("points", points.map(([x, y]) => `${x},${y}`).join(" "));
  const dots = points.map(([x, y]) => {
    const dot = document.createElementNS("http://www.w3.org/2000/svg", "circle");
    dot.setAttribute("cx", x);
    dot.setAttribute("cy", y);
    dot.setAttribute("r", 0.006);
    return dot;
  });
  svg.replaceChildren(outline, ...dots);
  $("toml").textContent = toml();
}

function click(event) {
  const box = $("live").getBoundingClientRect();
  if ($("shape").value === "line" && points.length >= 2) points.length = 0;
  points.push([round((event.clientX - box.left) / box.width), round((event.clientY - box.top) / box.height)]);
  draw();
}

function route() {
  clearInterval(timer);
  $("live").removeAttribute("src"); // a hidden stream is closed, not kept running
  $("clip").removeAttribute("src");
  const match = location.hash.match(/^#\/source\/(.+)$/);
  if (location.hash === "#/events") {
    events().catch(fail);
  } else if (match) {
    camera(decodeURIComponent(match[1])).catch(fail);
  } else {
    grid().catch(fail);
    timer = setInterval(() => grid().catch(fail), 2000);
  }
}

function fail(error) {
  $("status").textContent = String(error.message || error);
}

document.addEventListener("DOMContentLoaded", () => {
  $("stage").addEventListener("click", click);
  $("overlays").addEventListener("change", () => refreshLive($("camera-name").textContent));
  $("shape").addEventListener("change", () => { points.length = 0; draw(); });
  $("shape-name").addEventListener("input", draw);
  $("undo").addEventListener("click", () => { points.pop(); draw(); });
  $("clear").addEventListener("click", () => { points.length = 0; draw(); });
  $("event-filters").addEventListener("submit", (event) => { event.preventDefault(); events().catch(fail); });
  window.addEventListener("hashchange", route);
  route();
});
