// Leaderboard page: sort, filter, search and row selection, all kept in the URL hash so a link reproduces the view;
// the columns shown are a per-browser choice kept in localStorage.
(function () {
  const data = JSON.parse(document.getElementById("lem-data").textContent);
  const rows = data.rows, columns = data.columns;
  const FILTERS = data.filters;
  const HIDDEN_KEY = "lem-hidden-columns";
  const bestFirst = key => ((columns.find(c => c.key === key) || {}).better === "higher" ? "desc" : "asc");
  const state = { sort: data.default_sort, dir: bestFirst(data.default_sort), q: "", sel: [] };
  FILTERS.forEach(f => (state[f] = ""));
  let hidden = data.hidden;  // until this browser makes its own choice
  try { hidden = JSON.parse(localStorage.getItem(HIDDEN_KEY)) || data.hidden; } catch (e) { /* storage off */ }
  const esc = s => String(s).replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

  function readHash() {
    const p = new URLSearchParams(location.hash.slice(1));
    if (p.get("sort") && columns.some(c => c.key === p.get("sort"))) state.sort = p.get("sort");
    state.dir = p.get("dir") === "desc" || p.get("dir") === "asc" ? p.get("dir") : bestFirst(state.sort);
    state.q = p.get("q") || "";
    FILTERS.forEach(f => (state[f] = p.get(f) || ""));
    state.sel = (p.get("sel") || "").split(",").filter(Boolean);
  }
  function writeHash() {
    const p = new URLSearchParams();
    p.set("sort", state.sort); p.set("dir", state.dir);
    if (state.q) p.set("q", state.q);
    FILTERS.forEach(f => state[f] && p.set(f, state[f]));
    if (state.sel.length) p.set("sel", state.sel.join(","));
    history.replaceState(null, "", "#" + p.toString());
  }
  function fmt(v, c) {
    if (v === null || v === undefined || (typeof v === "number" && isNaN(v))) return null;
    if (c.type !== "number") return String(v);
    const x = v * (c.scale || 1);  // grouped thousands, never scientific notation (gpu_ops/readable.py in Python)
    return Math.abs(x) >= 1000 ? Math.round(x).toLocaleString("en-US")
      : Number(x.toPrecision(c.digits || 4)).toLocaleString("en-US", { maximumSignificantDigits: c.digits || 4 });
  }
  function visible() {
    const q = state.q.toLowerCase();
    let out = rows.filter(r => FILTERS.every(f => !state[f] || String(r[f]) === state[f]) &&
      (!q || [r.model, r.backend, r.hardware, r.parallelism, r.sweep_point, r.experiment_key, r.precision].join(" ").toLowerCase().includes(q)));
    const c = columns.find(c => c.key === state.sort) || columns[0];
    const sign = state.dir === "asc" ? 1 : -1;
    out.sort((a, b) => {
      const x = a[c.key], y = b[c.key];
      const xn = x === null || x === undefined || (typeof x === "number" && isNaN(x));
      const yn = y === null || y === undefined || (typeof y === "number" && isNaN(y));
      // unmeasured always last, in the leaderboard's order (unranked rows: those without energy by their fallback)
      if (xn || yn) return xn && yn ? 0 : xn ? 1 : -1;
      return (c.type === "number" ? x - y : String(x).localeCompare(String(y))) * sign;
    });
    return out;
  }
  function cell(r, c) {
    const cls = (c.type === "number" ? "" : "text") + (c.headline ? " headline" : "");
    if (c.key === "model") {
      const hub = r.model_url ? ` <a class="hub" href="${esc(r.model_url)}" title="${esc(r.model_note)}">hub ↗</a>`
        : ` <span class="note" title="${esc(r.model_note)}">${esc(r.model_kind)}</span>`;
      return `<td class="text first"><input type="checkbox" class="sel" title="compare" ${state.sel.includes(r.id) ? "checked" : ""}> <a class="detail" href="detail/${r.id}.html" title="${esc(r.model_note)}">${esc(r.model)}</a>${hub}` +
        `${r.flag ? ` <span class="flag">${esc(r.flag)}</span>` : ""}</td>`;
    }
    if (c.rank) {  // the band as ranked ('=3': shared), or why the row is not ranked (and its throughput fallback)
      if (r.rank_label) return `<td class="${cls} rank">${esc(r.rank_label)}</td>`;
      const fallback = r.throughput_fallback_label
        ? ` <span class="fallback" title="${esc(data.fallback_note)}">${esc(r.throughput_fallback_label)}</span>` : "";
      return `<td class="${cls} rank note" title="${esc(r.not_ranked_reason || "")}">not ranked${fallback}</td>`;
    }
    let v = fmt(r[c.key], c);
    if (v === null && c.key === "cv") return `<td class="${cls}" title="one cycle: no spread">${data.ci_missing}</td>`;
    // a converted figure (carbon, cost) shows the inputs it was converted with beside it, or why it is unknown
    const note = c.note && r[c.note] ? ` <span class="note inputs">${esc(r[c.note])}</span>` : "";
    if (v === null && c.note) return `<td class="${cls}">unknown${note}</td>`;
    if (v === null) return `<td class="unmeasured ${cls}" title="${esc(r.unmeasured_reason || "")}">${c.energy ? "unmeasured" : "–"}</td>`;
    v = esc(v);
    // a missing CI (one cycle) reads "± n/a", never "± 0"
    const ci = c.ci && (fmt(r[c.ci], { type: "number", scale: c.scale, digits: 2 }) ?? data.ci_missing);
    if (ci) v += ` <span class="ci">± ${ci}</span>`;
    if (c.key === "cv" && r.unstable) v += ` <span class="badge">unstable</span>`;
    v += note;
    return `<td class="${cls}">${v}</td>`;
  }
  function links(r) {
    const a = [r.run_url && `<a class="run" href="${esc(r.run_url)}">run</a>`, r.raw_url && `<a class="raw" href="${esc(r.raw_url)}">raw</a>`];
    const local = r.links_local && (r.run_url || r.raw_url)
      ? ` <span class="note local" title="these links point at a Dagster UI on the machine that built this site">local</span>` : "";
    return `<td class="text">${a.filter(Boolean).join(" · ") || "–"}${local}</td>`;
  }
  function render() {
    writeHash();
    FILTERS.forEach(f => (document.getElementById("f-" + f).value = state[f]));
    document.getElementById("q").value = state.q;
    const shown = visible();
    const cols = columns.filter(c => c.key === "model" || !hidden.includes(c.key));
    const head = document.getElementById("head"), body = document.getElementById("body");
    head.innerHTML = cols.map(c =>
      `<th data-key="${c.key}" title="${c.better ? c.better + " is better" : ""}" class="${c.type === "number" ? "" : "text"} ${c.key === "model" ? "first" : ""} ${c.headline ? "headline" : ""} ${state.sort === c.key ? "sorted-" + state.dir : ""}">${c.label}<span class="unit">${c.unit || ""}</span></th>`).join("") +
      "<th class='text' data-col='links'>Dagster</th>";
    body.innerHTML = shown.map(r => `<tr data-id="${r.id}" class="${r.unstable ? "unstable" : ""}">` +
      cols.map(c => cell(r, c)).join("") + links(r) + "</tr>").join("");
    document.getElementById("count").textContent = `${shown.length} of ${rows.length} rows`;
    document.getElementById("empty").style.display = rows.length && !shown.length ? "block" : "none";
    head.querySelectorAll("th[data-key]").forEach(th => th.onclick = () => {
      const key = th.dataset.key;
      state.dir = state.sort === key ? (state.dir === "asc" ? "desc" : "asc") : bestFirst(key);
      state.sort = key; render();
    });
    body.querySelectorAll("input.sel").forEach(cb => cb.onchange = () => {
      const id = cb.closest("tr").dataset.id;
      state.sel = cb.checked ? [...new Set([...state.sel, id])] : state.sel.filter(x => x !== id);
      render();
    });
    compareBars(rows.filter(r => state.sel.includes(r.id)));
  }
  function chooser() {
    const list = document.getElementById("chooser-list");
    list.innerHTML = columns.filter(c => c.key !== "model").map(c =>
      `<label><input type="checkbox" data-key="${c.key}" ${hidden.includes(c.key) ? "" : "checked"}> ${c.label}</label>`).join("");
    list.querySelectorAll("input").forEach(cb => cb.onchange = () => {
      hidden = cb.checked ? hidden.filter(k => k !== cb.dataset.key) : [...new Set([...hidden, cb.dataset.key])];
      try { localStorage.setItem(HIDDEN_KEY, JSON.stringify(hidden)); } catch (e) { /* storage off: this page only */ }
      render();
    });
  }
  function compareBars(sel) {
    const el = document.getElementById("chart-compare");
    document.getElementById("compare").hidden = !sel.length;
    document.getElementById("compare-hint").hidden = !!sel.length || !rows.length;
    if (!el || typeof Plotly === "undefined" || !sel.length) return;
    const label = r => `${r.model} ${r.backend} ${r.sweep_point}<br>(${r.hardware}, ${r.parallelism})`;
    const traces = [
      { type: "bar", name: "J/token", x: sel.map(label), y: sel.map(r => r.j_per_token_mean),
        error_y: { type: "data", array: sel.map(r => r.j_per_token_ci95 ?? null) }, yaxis: "y", offsetgroup: "energy" },
      { type: "bar", name: "tokens/s", x: sel.map(label), y: sel.map(r => r.tokens_per_s_mean), yaxis: "y2", offsetgroup: "throughput" }];
    Plotly.react(el, traces, { title: { text: "J/token (left) and tokens/s (right)" },
      barmode: "group", yaxis: { title: { text: "J/token" } }, yaxis2: { title: { text: "tokens/s" }, overlaying: "y", side: "right" },
      margin: { b: 120 }, template: "plotly_white" }, { responsive: true });
  }
  readHash();
  FILTERS.forEach(f => {
    const s = document.getElementById("f-" + f);
    [...new Set(rows.map(r => String(r[f])))].sort().forEach(v => s.add(new Option(v, v)));
    s.onchange = () => { state[f] = s.value; render(); };
  });
  document.getElementById("q").oninput = e => { state.q = e.target.value; render(); };
  window.addEventListener("hashchange", () => { readHash(); render(); });
  chooser();
  render();
  if (typeof Plotly !== "undefined") data.figures.forEach(f => Plotly.newPlot(f.id, f.figure.data, f.figure.layout, { responsive: true }));
})();
