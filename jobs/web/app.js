// vidx web page: plain JS over the JSON API (/openapi.json describes it). No assets from a CDN.
"use strict";
const $ = (id) => document.getElementById(id);
const state = { offset: 0, limit: 24, last: null };

function showError(msg) {
  const e = $("error");
  e.textContent = msg || "";
  e.hidden = !msg;
}

async function api(path, options = {}) {
  const r = await fetch(path, options);
  const body = r.headers.get("content-type")?.includes("json") ? await r.json() : null;
  if (!r.ok) {
    const d = body && body.detail;
    throw new Error(typeof d === "string" ? d : JSON.stringify(d || r.statusText));
  }
  return body;
}

const fmt = (s) => (s == null ? "" : s.toFixed(1) + " s");
function el(tag, attrs = {}, ...kids) {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") n.className = v; else if (k.startsWith("on")) n.addEventListener(k.slice(2), v); else n.setAttribute(k, v);
  }
  for (const k of kids) n.append(k);
  return n;
}

async function loadLists() {
  const [h, p, v] = await Promise.all([api("/api/health"), api("/api/people?limit=1000"), api("/api/videos")]);
  const n = (k, one, many) => `${k} ${k === 1 ? one : many}`;
  $("stats").textContent = `${n(h.videos, "video", "videos")}, ${n(h.tracks, "appearance", "appearances")}, ${n(h.people, "person", "people")}`;
  const ps = $("person");
  ps.replaceChildren(el("option", { value: "" }, "(anyone)"));
  for (const x of p.items) ps.append(el("option", { value: x.person_id }, x.name ? `${x.name} (${x.person_id})` : x.person_id));
  // the action box completes the labels this index holds, and says when it holds none
  $("action-labels").replaceChildren(...h.labels.map((x) => el("option", { value: x })));
  const ab = $("actions");
  ab.disabled = !h.labels.length;
  ab.placeholder = h.labels.length ? `e.g. ${h.labels.slice(0, 2).join(", ")}` : "no actions in this index";
  ab.title = h.labels.length ? `${h.labels.length} action labels in this index` : "indexed without actions (--no-actions)";
  const vs = $("video");
  vs.replaceChildren(el("option", { value: "" }, "(all videos)"));
  for (const x of v.items) vs.append(el("option", { value: x.video_id }, x.name));
  state.weak = p.weak;  // people seen only in weak appearances (the gallery's toggle)
  return p.items;
}

function card(r) {
  const acts = r.actions.map((a) => el("span", { class: "chip", title: `score ${a.score}` }, `${a.label} ${a.overlap_s.toFixed(1)} s`));
  const c = el("div", { class: "card", "data-person": r.person, onclick: () => play(r.video_id, r.start_s, r.path) },
    el("img", { src: `/api/thumbnails/${encodeURIComponent(r.track_id)}`, alt: r.person }),
    el("div", { class: "who" }, r.person),
    el("div", {}, (r.path || r.video_id).split("/").pop()),
    el("div", { class: "muted" }, `${fmt(r.start_s)} – ${fmt(r.end_s)}` + (r.distance != null ? `, distance ${r.distance.toFixed(3)}` : "")),
    ...(r.ruled_out ? [el("div", { class: "ruled-out" }, `ruled out: ${r.ruled_out}`)] : []),
    el("div", { class: "chips" }, ...acts));
  if (r.ruled_out) c.classList.add("is-ruled-out");
  return c;
}

async function search(offset = 0) {
  showError("");
  state.offset = offset;
  const photo = $("photo").files[0];
  const actions = $("actions").value.split(",").map((s) => s.trim()).filter(Boolean);
  let res;
  try {
    if (photo) {
      const f = new FormData();
      f.append("photo", photo);
      for (const a of actions) f.append("action", a);
      if ($("video").value) f.append("video", $("video").value);
      f.append("limit", state.limit);
      f.append("offset", offset);
      res = await api("/api/search/face", { method: "POST", body: f });
    } else {
      const q = new URLSearchParams({ limit: state.limit, offset });
      if ($("person").value) q.append("person_id", $("person").value);
      for (const a of actions) q.append("action", a);
      if ($("video").value) q.append("video", $("video").value);
      res = await api("/api/search?" + q);
    }
  } catch (e) {
    showError(e.message);
    $("results").replaceChildren();
    $("summary").textContent = "";
    return;
  }
  $("results").replaceChildren(...res.items.map(card));
  $("summary").textContent = res.items.length ? `results ${offset + 1}–${offset + res.items.length}` : "no match";
  if (res.near_misses && res.near_misses.length) {  // a face that matched no one: the nearest people, as enrol names them
    $("summary").textContent = `no match: no appearance is within ${res.rule} of this face. The nearest people:`;
    $("results").replaceChildren(...res.near_misses.map((x) => el("div", { class: "card near-miss", "data-person-id": x.person_id },
      el("a", { href: `#person/${encodeURIComponent(x.person_id)}`, title: "see this person's appearances" },
        el("img", { src: thumb(x.thumbnail_track), alt: x.person_id })),
      el("div", { class: "who" }, x.name || x.person_id),
      el("div", { class: "muted" }, `distance ${x.distance.toFixed(3)}` + (x.over > 0 ? `, ${x.over.toFixed(3)} over the rule` : ", within the rule")),
      el("div", { class: "muted" }, `${plural(x.tracks, "appearance", "appearances")} in ${plural(x.videos, "video", "videos")}`))));
  }
  $("prev").hidden = offset === 0;
  $("next").hidden = !res.more;
}

// One clock: vidx's times count from the video's first frame; the player's media time is the
// file's own presentation time, which starts at the stream's first frame time (not always 0).
// Every seek is vidx's time + that offset; the timeline and its playhead are drawn on vidx's clock.
let offset = 0;
const seekTo = (t) => { const v = $("player"); v.currentTime = t + offset; v.play().catch(() => {}); };

async function play(videoId, start, path) {
  const box = $("player-box");
  box.hidden = false;
  const v = $("player");
  $("player-title").textContent = (path || videoId).split("/").pop() + ` from ${fmt(start)}`;
  await timeline(videoId);  // the video's offset first: the seek needs it
  const src = `/api/videos/${encodeURIComponent(videoId)}/stream`;
  if (!v.src.endsWith(src)) v.src = src;
  const seek = () => seekTo(start || 0);
  if (v.readyState >= 1) seek(); else v.addEventListener("loadedmetadata", seek, { once: true });
  v.onerror = () => showError("this video cannot be played here (moved, inside an archive, or a format the browser lacks)");
}

async function timeline(videoId) {
  let t;
  try { t = await api(`/api/videos/${encodeURIComponent(videoId)}/timeline`); } catch (e) { showError(e.message); return; }
  offset = t.stream_start_s || 0;
  const dur = t.duration_s || Math.max(1, ...t.people.flatMap((p) => p.tracks.map((x) => x.end_s)));
  const bar = (s, e, cls, title) => el("div", {
    class: "bar " + cls, title, style: `left:${(100 * s) / dur}%;width:${Math.max(0.5, (100 * (e - s)) / dur)}%`,
    onclick: () => seekTo(s),
  });
  const lanes = t.people.flatMap((p) => [el("div", { class: "lane", "data-person": p.person },
    el("div", { class: "label" }, p.person),
    el("div", { class: "track" }, ...p.tracks.map((x) => bar(x.start_s, x.end_s, "", `${p.person} ${fmt(x.start_s)}–${fmt(x.end_s)}`)))),
    // what this person does: their own actions (under their face's lane), when the index has them
    ...(p.actions.length ? [el("div", { class: "lane person-actions", "data-person-actions": p.person },
      el("div", { class: "label" }, `${p.person}: doing`),
      el("div", { class: "track" }, ...p.actions.map((a) => bar(a.start_s, a.end_s, "action",
        `${p.person}: ${a.label} (${a.score.toFixed(2)}, ${a.source === "crop" ? "their own part of the frame" : "alone on screen"})`))))] : [])]);
  // the shots between cuts (found on every decoded frame): no face track crosses one
  const cuts = (t.cuts || []).map((c) => c.t);
  const edges = [0, ...cuts, dur];
  lanes.unshift(el("div", { class: "lane shots" }, el("div", { class: "label" }, `shots (${cuts.length} cut${cuts.length === 1 ? "" : "s"})`),
    el("div", { class: "track" }, ...edges.slice(0, -1).map((s, i) => bar(s, edges[i + 1], `shot ${i % 2 ? "odd" : "even"}`,
      `shot ${i + 1}: ${fmt(s)}–${fmt(edges[i + 1])}`)),
      ...(t.cuts || []).map((c) => el("div", { class: "cut", title: `cut at ${fmt(c.t)} (score ${c.score})`,
        style: `left:${(100 * c.t) / dur}%` })))));
  lanes.push(el("div", { class: "lane" }, el("div", { class: "label" }, "scene actions"),
    el("div", { class: "track" }, ...t.actions.map((a) => bar(a.start_s, a.end_s, "action", `${a.label} (${a.score.toFixed(2)})`)))));
  const head = el("div", { id: "playhead", class: "playhead" });
  $("timeline").replaceChildren(el("div", { class: "muted" }, `timeline of ${t.name}: ${fmt(dur)} (times from its first frame)`),
    el("div", { class: "lane" }, el("div", { class: "label" }, el("span", { id: "playhead-time" }, fmt(0))),
      el("div", { class: "track" }, head)), ...lanes);
  $("player").ontimeupdate = () => {  // the playhead on vidx's clock
    const now = Math.max(0, $("player").currentTime - offset);
    head.style.left = `${Math.min(100, (100 * now) / dur)}%`;
    $("playhead-time").textContent = fmt(now);
  };
}

const post = (path, body) => api(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;
const thumb = (track) => `/api/thumbnails/${encodeURIComponent(track)}`;

async function peopleView() {
  let items;
  try { items = await loadLists(); } catch (e) { showError(e.message); return; }
  const weak = state.weak;
  const showWeak = $("show-weak").checked;
  $("weak-label").textContent = `show ${plural(weak, "person", "people")} seen only in weak appearances (small, dark, blurred or turned)`;
  $("people").replaceChildren(...items.filter((p) => showWeak || !p.weak || p.name).map((p) => {
    const name = el("input", { value: p.name || "", placeholder: "name", size: 14 });
    return el("div", { class: "card" + (p.weak ? " weak" : ""), "data-person-id": p.person_id },
      el("a", { href: `#person/${encodeURIComponent(p.person_id)}`, title: "review this person's appearances" },
        el("img", { src: thumb(p.thumbnail_track), alt: p.name || p.person_id })),
      el("div", { class: "who" }, p.name || p.person_id),
      el("div", { class: "muted" }, (p.name ? `${p.person_id}: ` : "") +
        `${plural(p.tracks, "appearance", "appearances")} in ${plural(p.videos, "video", "videos")}`),
      el("label", {}, el("input", { type: "checkbox", class: "merge", value: p.person_id }), " merge"),
      el("div", {}, name, el("button", { onclick: async () => {
        try { await post(`/api/people/${encodeURIComponent(p.person_id)}/rename`, { name: name.value }); peopleView(); } catch (e) { showError(e.message); }
      } }, "Rename")));
  }));
}

// Enrol from a photo: a photo with several faces asks which one; a name that the rule gives to no
// one shows the nearest people, to confirm one ("this is NAME", a rename kept across re-indexing).
async function enrollStart(ev) {
  ev.preventDefault();
  const name = $("enroll-name").value.trim(), file = $("enroll-photo").files[0];
  if (!name || !file) { showError("give a name and a photo of them"); return; }
  showError("");
  const fd = new FormData();
  fd.append("photo", file);
  let faces;
  try { faces = (await api("/api/faces", { method: "POST", body: fd })).faces; } catch (e) { showError(e.message); return; }
  if (!faces.length) { showError("no face found in this photo"); return; }
  if (faces.length === 1) { enrollFace(name, file, 0); return; }
  const img = await createImageBitmap(file);
  $("enroll-picker").replaceChildren(el("div", { class: "muted" }, `${faces.length} faces in this photo: which one is ${name}?`),
    ...faces.map((f) => {
      const [l, t, r, b] = f.box, w = r - l + 1, h = b - t + 1, c = document.createElement("canvas");
      c.width = 96; c.height = Math.round((96 * h) / w);
      c.getContext("2d").drawImage(img, l, t, w, h, 0, 0, c.width, c.height);
      return el("button", { class: "face-pick", "data-face": String(f.face), onclick: () => enrollFace(name, file, f.face) }, c, ` face ${f.face}`);
    }));
}

async function enrollFace(name, file, face) {
  const fd = new FormData();
  fd.append("name", name); fd.append("photo", file); fd.append("face", String(face));
  let r;
  try { r = await api("/api/enroll", { method: "POST", body: fd }); } catch (e) { showError(e.message); return; }
  $("enroll-picker").replaceChildren();
  const res = $("enroll-result");
  if (r.people.length) {
    res.replaceChildren(el("div", {}, `enrolled ${name}: ${plural(r.people.length, "person", "people")} named by the photo`));
  } else if (!r.suggestions.length) {
    res.replaceChildren(el("div", {}, `enrolled ${name}; no indexed person is near the photo yet`));
  } else {
    res.replaceChildren(el("div", {}, `enrolled ${name}, but no indexed person is close enough to name. The nearest:`),
      el("div", { class: "cards" }, ...r.suggestions.map((x) => el("div", { class: "card suggestion", "data-person-id": x.person_id },
        el("img", { src: thumb(x.thumbnail_track), alt: x.person_id }),
        el("div", { class: "who" }, x.name || x.person_id),
        el("div", { class: "muted" }, `distance ${x.distance.toFixed(3)}` + (x.over > 0 ? `, ${x.over.toFixed(3)} over the rule` : ", within the rule")),
        el("div", { class: "muted" }, `${plural(x.tracks, "appearance", "appearances")} in ${plural(x.videos, "video", "videos")}`),
        el("button", { class: "confirm", onclick: async () => {
          try { await post(`/api/people/${encodeURIComponent(x.person_id)}/rename`, { name }); } catch (e) { showError(e.message); return; }
          res.replaceChildren(el("div", {}, `${x.person_id} is now ${name}`)); peopleView();
        } }, `This is ${name}`),
        el("button", { class: "not", onclick: async (ev) => {
          try { await post(`/api/people/${encodeURIComponent(x.person_id)}/not`, { name }); } catch (e) { showError(e.message); return; }
          ev.target.closest(".suggestion").remove();  // kept: never suggested or named so again
        } }, `Not ${name}`)))));
  }
  for (const w of r.warnings || []) res.append(el("div", { class: "muted" }, `warning: ${w}`));
  peopleView();
}

// Redaction jobs of these videos: a progress bar each, the download link when done, the reason
// when failed; polled while any is queued or running, and found again after a reload.
let jobsTimer = null;
async function exportJobs(videoIds) {
  clearTimeout(jobsTimer);
  let r;
  try { r = await api("/api/redactions"); } catch (e) { showError(e.message); return; }
  const mine = r.items.filter((j) => videoIds.includes(j.video_id));
  const what = (j) => (j.keep ? "only this person visible" : "this person blurred");
  $("export-jobs").replaceChildren(...mine.map((j) => el("div", { class: `export-job ${j.state}`, "data-job": j.id },
    el("span", {}, `${j.file}: `),
    j.state === "done" ? el("span", {}, el("a", { href: j.url, download: j.file, class: "export-link" }, "download"),
      ` (${what(j)}; ${j.result.frames} frames, faces blurred on ${j.result.redacted_frames}; ${j.result.wall_s.toFixed(1)} s)`)
      : j.state === "failed" ? el("span", { class: "error-text" }, `failed: ${j.error}`)
        : j.state === "queued" ? el("span", { class: "muted" }, `queued (${plural(j.ahead, "job", "jobs")} ahead)`)
          : el("span", {}, el("progress", { max: 100, value: j.percent || 0 }),
            el("span", { class: "muted" }, ` ${j.phase === "write" ? "blurring and writing" : "finding faces"}: ` +
              `${j.percent == null ? j.done + " frames" : j.percent.toFixed(0) + "%"}` +
              (j.rate ? `, ${j.rate.toFixed(0)} frames/s` : "") + (j.eta_s != null ? `, about ${Math.ceil(j.eta_s)} s left` : ""))))));
  if (mine.some((j) => j.state === "queued" || j.state === "running")) jobsTimer = setTimeout(() => exportJobs(videoIds), 1000);
}

// One person's tracks, farthest from the person's centre first (the likeliest mistakes): tick
// tracks, then move them out to a new person or into another person.
async function personView(pid) {
  let p, everyone;
  try { [p, everyone] = await Promise.all([api(`/api/people/${encodeURIComponent(pid)}/tracks`), loadLists()]); }
  catch (e) { showError(e.message); return; }
  const title = p.name ? `${p.name} (${p.person_id})` : p.person_id;
  const named = p.name ? (p.name_source === "manual" ? "named by hand" : `named by the photos, distance ${p.name_distance.toFixed(3)}`) : "not named";
  $("person-title").textContent = `${title}: ${plural(p.tracks, "appearance", "appearances")} in ${plural(p.videos, "video", "videos")}, ${named}`;
  const target = $("move-target");
  target.replaceChildren(...everyone.filter((x) => x.person_id !== p.person_id)
    .map((x) => el("option", { value: x.person_id }, x.name ? `${x.name} (${x.person_id})` : x.person_id)));
  $("person-tracks").replaceChildren(...p.items.map((t) => el("div", { class: "card", "data-track": t.track_id },
    el("img", { src: `/api/thumbnails/${encodeURIComponent(t.track_id)}`, alt: t.track_id,
      onclick: () => play(t.video_id, t.start_s, t.path) }),
    el("div", {}, t.name),
    el("div", { class: "muted" }, `${fmt(t.start_s)} – ${fmt(t.end_s)}`),
    el("div", { class: "muted" }, `quality ${t.quality.toFixed(2)}, distance ${t.distance.toFixed(3)}, ${t.role}`),
    el("label", {}, el("input", { type: "checkbox", class: "pick", value: t.track_id }), " select"))));
  // a redacted copy of one of their videos: this person blurred, or everyone else blurred
  const vids = [...new Map(p.items.map((t) => [t.video_id, t.name])).entries()];
  $("export-video").replaceChildren(...vids.map(([id, name]) => el("option", { value: id }, name)));
  const exportAs = async (body) => {
    try {
      await post(`/api/videos/${encodeURIComponent($("export-video").value)}/redact`, body);
      $("export-result").replaceChildren("");
      exportJobs(vids.map(([id]) => id));
    } catch (e) { showError(e.message); }
  };
  $("export-only").onclick = () => exportAs({ only: [pid] });
  $("export-keep").onclick = () => exportAs({ keep: [pid] });
  exportJobs(vids.map(([id]) => id));
  api(`/api/people/${encodeURIComponent(pid)}/similar`).then((r) => $("similar").replaceChildren(...r.items.map((x) =>
    el("div", { class: "card similar", "data-person-id": x.person_id },
      el("a", { href: `#person/${encodeURIComponent(x.person_id)}` }, el("img", { src: thumb(x.thumbnail_track), alt: x.person_id })),
      el("div", { class: "who" }, x.name || x.person_id),
      el("div", { class: "muted" }, `distance ${x.distance.toFixed(3)}, ${plural(x.tracks, "appearance", "appearances")}`),
      x.refused ? el("div", { class: "muted" }, `cannot merge: ${x.refused}`)
        : el("button", { class: "merge-similar", onclick: async () => {
          try { await post("/api/people/merge", { people: [pid, x.person_id] }); showError(""); personView(pid); } catch (e) { showError(e.message); }
        } }, "Same person: merge"))))).catch((e) => showError(e.message));
  $("forget-btn").onclick = async () => {
    if (!confirm(`Forget ${p.name || p.person_id}? Every trace of them (${plural(p.tracks, "appearance", "appearances")}, their photos) leaves the index; this cannot be undone.`)) return;
    try { await api(`/api/people/${encodeURIComponent(pid)}`, { method: "DELETE" }); location.hash = "#people"; } catch (e) { showError(e.message); }
  };
  const picked = () => [...document.querySelectorAll(".pick:checked")].map((x) => x.value);
  $("not-btn").onclick = async () => {
    const tracks = picked();
    if (!tracks.length) { showError("select the appearances that are not this person"); return; }
    try { await post(`/api/people/${encodeURIComponent(pid)}/not`, { tracks }); showError(""); personView(pid); } catch (e) { showError(e.message); }
  };
  $("split-btn").onclick = async () => {
    const tracks = picked();
    if (!tracks.length) { showError("select the appearances to move out"); return; }
    try { await post(`/api/people/${encodeURIComponent(pid)}/split`, { tracks }); showError(""); personView(pid); } catch (e) { showError(e.message); }
  };
  $("move-btn").onclick = async () => {
    const tracks = picked();
    if (!tracks.length || !target.value) { showError("select appearances and the person to move them to"); return; }
    const url = `/api/people/${encodeURIComponent(target.value)}/move`;
    try {
      const no = (await post(url, { tracks, check: true })).refused;  // asked first: a refusal is an answer, not a failed request
      if (no) { showError(no); return; }
      await post(url, { tracks }); showError(""); personView(pid);
    } catch (e) { showError(e.message); }
  };
}

// The review queue: one appearance at a time on its frame (face boxed), keyboard first.
const review = { items: [], at: 0, all: false };
const num = (x) => (Math.abs(x) < 0.0005 ? 0 : x).toFixed(3);  // never "-0.000"

async function reviewView() {
  let r;
  try { [r] = await Promise.all([api("/api/review?limit=100" + (review.all ? "&all=true" : "")), loadLists()]); } catch (e) { showError(e.message); return; }
  review.items = r.items;
  $("review-summary").replaceChildren(
    review.all ? `${plural(r.total, "open appearance", "open appearances")}, the least certain first ` :
      `${plural(r.total, "appearance", "appearances")} to review (margin under ${r.bound})` +
      (r.rest ? `; ${r.rest} other open ${r.rest === 1 ? "one is" : "ones are"} clearly their person's ` : ""),
    (r.rest || review.all) ? el("button", { id: "review-all", onclick: () => { review.all = !review.all; review.at = 0; reviewView(); } },
      review.all ? "show only the uncertain" : "show them too") : "");
  $("review-list").replaceChildren(...r.items.map((x, i) => el("div", { class: "card review", "data-track": x.track_id },
    el("img", { src: thumb(x.track_id), alt: x.track_id, onclick: () => reviewAt(i) }),
    el("div", { class: "who" }, x.name || x.person_id),
    el("div", { class: "muted" }, `${x.name_of_video} ${fmt(x.start_s)} – ${fmt(x.end_s)}`),
    el("div", { class: "muted" }, `margin ${num(x.margin)}: ${num(x.distance)} to them, ${num(x.other_distance)} to ${x.other_name || x.other_person}`),
    el("label", {}, el("input", { type: "checkbox", class: "rsel", value: x.track_id }), " select"))));
  reviewAt(review.at);
}

function reviewAt(i) {
  review.at = Math.max(0, Math.min(i, review.items.length - 1));
  document.querySelectorAll("#review-list .card").forEach((c, k) => c.classList.toggle("current", k === review.at));
  const x = review.items[review.at];
  if (!x) { $("review-current").replaceChildren(el("div", {}, "nothing left to review")); return; }
  $("review-current").replaceChildren(
    el("img", { id: "review-frame", src: `/api/tracks/${encodeURIComponent(x.track_id)}/frame`, alt: "the frame, the face boxed" }),
    el("div", { id: "review-what" }, `${x.name || x.person_id} in ${x.name_of_video} at ${fmt(x.thumbnail_t)} (from its first frame); ` +
      `margin ${num(x.margin)}, the runner-up: ${x.other_name || x.other_person}, quality ${x.quality.toFixed(2)}`));
  document.querySelector("#review-list .card.current")?.scrollIntoView({ block: "nearest" });
}

async function reviewAct(kind) {
  const sel = [...document.querySelectorAll(".rsel:checked")].map((c) => c.value);
  const targets = sel.length ? review.items.filter((x) => sel.includes(x.track_id)) : [review.items[review.at]].filter(Boolean);
  const by = new Map();
  for (const x of targets) by.set(x.person_id, [...(by.get(x.person_id) || []), x.track_id]);
  try {
    for (const [pid, tracks] of by) await post(`/api/people/${encodeURIComponent(pid)}/${kind}`, { tracks });
    showError("");
  } catch (e) { showError(e.message); }
  await reviewView();
}

document.addEventListener("keydown", (ev) => {
  if (location.hash !== "#review" || ev.target.closest("input:not([type=checkbox]), select, textarea")) return;
  const k = ev.key;
  if (k === "j" || k === "ArrowRight") reviewAt(review.at + 1);
  else if (k === "k" || k === "ArrowLeft") reviewAt(review.at - 1);
  else if (k === "a") reviewAct("accept");
  else if (k === "n") reviewAct("not");
  else if (k === "x") { const c = document.querySelectorAll("#review-list .rsel")[review.at]; if (c) c.checked = !c.checked; }
  else return;
  ev.preventDefault();
});

function route() {
  // the landing page is the people gallery; #search and #person/ID are the other views
  const h = location.hash;
  $("player-box").hidden = true;  // the player belongs to the view that opened it
  $("player").pause();
  showError("");
  const view = h === "#search" ? "search" : h === "#review" ? "review" : h.startsWith("#person/") ? "person" : "people";
  $("view-search").hidden = view !== "search";
  $("view-review").hidden = view !== "review";
  $("view-people").hidden = view !== "people";
  $("view-person").hidden = view !== "person";
  if (view === "search") loadLists().catch((e) => showError(e.message));
  if (view === "people") peopleView();
  if (view === "review") reviewView();
  if (view === "person") personView(decodeURIComponent(h.slice("#person/".length)));
}

$("search-form").addEventListener("submit", (ev) => { ev.preventDefault(); search(0); });
$("clear-btn").addEventListener("click", () => { $("photo").value = ""; $("person").value = ""; $("actions").value = ""; $("video").value = ""; });
$("prev").addEventListener("click", () => search(Math.max(0, state.offset - state.limit)));
$("next").addEventListener("click", () => search(state.offset + state.limit));
$("enroll-form").addEventListener("submit", enrollStart);
$("review-accept").addEventListener("click", () => reviewAct("accept"));
$("review-not").addEventListener("click", () => reviewAct("not"));
$("review-next").addEventListener("click", () => reviewAt(review.at + 1));
$("show-weak").addEventListener("change", () => peopleView());
$("merge-btn").addEventListener("click", async () => {
  const ids = [...document.querySelectorAll(".merge:checked")].map((x) => x.value);
  if (ids.length < 2) { showError("tick two or more people to merge"); return; }
  try {
    const no = (await post("/api/people/merge", { people: ids, check: true })).refused;  // asked first: no failed request
    if (no) { showError(no); return; }
    await post("/api/people/merge", { people: ids }); showError(""); peopleView();
  } catch (e) { showError(e.message); }
});
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); $("photo").files = e.dataTransfer.files; search(0); });
window.addEventListener("hashchange", route);
route();
