// Leaderboard page: sort, filter, search and row selection, all kept in the URL hash so a link reproduces the view.
(function () {
  const data = JSON.parse(document.getElementById("lem-data").textContent);
  const rows = data.rows, columns = data.columns;
  const FILTERS = data.filters;
  const state = { sort: data.default_sort, dir: "asc", q: "", sel: [] };
  FILTERS.forEach(f => (state[f] = ""));

  function readHash() {
    const p = new URLSearchParams(location.hash.slice(1));
    if (p.get("sort") && columns.some(c => c.key === p.get("sort"))) state.sort = p.get("sort");
    if (p.get("dir") === "desc" || p.get("dir") === "asc") state.dir = p.get("dir");
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
    const x = v * (c.scale || 1);
    return Math.abs(x) >= 1000 ? x.toFixed(0) : Number(x.toPrecision(c.digits || 4)).toString();
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
      if (xn || yn) return xn && yn ? 0 : xn ? 1 : -1;  // unmeasured always last
      return (c.type === "number" ? x - y : String(x).localeCompare(String(y))) * sign;
    });
    return out;
  }
  function render() {
    writeHash();
    FILTERS.forEach(f => (document.getElementById("f-" + f).value = state[f]));
    document.getElementById("q").value = state.q;
    const shown = visible();
    const head = document.getElementById("head"), body = document.getElementById("body");
    head.innerHTML = "<th class='text'>compare</th>" + columns.map(c =>
      `<th data-key="${c.key}" class="${c.type === "number" ? "" : "text"} ${state.sort === c.key ? "sorted-" + state.dir : ""}">${c.label}<span class="unit">${c.unit || ""}</span></th>`).join("");
    body.innerHTML = shown.map(r => "<tr data-id='" + r.id + "'><td class='text'><input type='checkbox' class='sel' " +
      (state.sel.includes(r.id) ? "checked" : "") + "></td>" + columns.map(c => {
        let v = fmt(r[c.key], c);
        if (c.key === "model") return `<td class="text"><a href="detail/${r.id}.html">${r.model}</a>${r.flag ? ` <span class="flag">${r.flag}</span>` : ""}</td>`;
        if (v === null) return `<td class="unmeasured" title="${r.unmeasured_reason || ""}">${c.energy ? "unmeasured" : "–"}</td>`;
        // a missing CI (one cycle) reads "± n/a", never "± 0"
        const ci = c.ci && (fmt(r[c.ci], { type: "number", scale: c.scale, digits: 2 }) ?? data.ci_missing);
        if (ci) v += ` <span class="ci">± ${ci}</span>`;
        return `<td class="${c.type === "number" ? "" : "text"}">${v}</td>`;
      }).join("") + "</tr>").join("");
    document.getElementById("count").textContent = `${shown.length} of ${rows.length} rows`;
    document.getElementById("empty").style.display = rows.length && !shown.length ? "block" : "none";
    head.querySelectorAll("th[data-key]").forEach(th => th.onclick = () => {
      state.dir = state.sort === th.dataset.key && state.dir === "asc" ? "desc" : "asc";
      state.sort = th.dataset.key; render();
    });
    body.querySelectorAll("input.sel").forEach(cb => cb.onchange = () => {
      const id = cb.closest("tr").dataset.id;
      state.sel = cb.checked ? [...new Set([...state.sel, id])] : state.sel.filter(x => x !== id);
      render();
    });
    compareBars(rows.filter(r => state.sel.includes(r.id)));
  }
  function compareBars(sel) {
    const el = document.getElementById("chart-compare");
    if (!el || typeof Plotly === "undefined") return;
    const label = r => `${r.model} ${r.backend} ${r.sweep_point} (${r.hardware}, ${r.parallelism})`;
    const traces = [
      { type: "bar", name: "J/token", x: sel.map(label), y: sel.map(r => r.j_per_token_mean),
        error_y: { type: "data", array: sel.map(r => r.j_per_token_ci95 ?? null) }, yaxis: "y", offsetgroup: "energy" },
      { type: "bar", name: "tokens/s", x: sel.map(label), y: sel.map(r => r.tokens_per_s_mean), yaxis: "y2", offsetgroup: "throughput" }];
    Plotly.react(el, traces, { title: sel.length ? "Selected rows side by side" : "Tick rows in the table to compare them",
      barmode: "group", yaxis: { title: "J/token" }, yaxis2: { title: "tokens/s", overlaying: "y", side: "right" },
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
  render();
  if (typeof Plotly !== "undefined") data.figures.forEach(f => Plotly.newPlot(f.id, f.figure.data, f.figure.layout, { responsive: true }));
})();
