// Energy at a latency target (gpu_ops/slo.py decides the same way): per model x hardware, the lowest-J/token row whose
// pooled percentiles' 95 % intervals are all at or under the deadlines; a straddling interval is "uncertain".
// The deadlines live in the URL hash (ttft_p99=2000ms&itl_p99=50ms), so a link reproduces the view.
(function () {
  const data = JSON.parse(document.getElementById("lem-slo").textContent);
  const rows = data.rows, metrics = Object.keys(data.sliders);
  const esc = s => String(s).replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  const num = v => (v === null || v === undefined || (typeof v === "number" && isNaN(v)) ? null : v);
  const state = {};  // metric -> {q, ms} for each deadline set

  function parse(text) {
    const out = {};
    new URLSearchParams(text).forEach((v, k) => {
      const m = /^([a-z]+)_p(\d+)$/.exec(k), d = /^(\d+(?:\.\d+)?)(ms|s)$/.exec(v);
      if (m && d && metrics.includes(m[1]) && data.quantiles.includes(+m[2]))
        out[m[1]] = { q: +m[2], ms: +d[1] * (d[2] === "s" ? 1000 : 1) };
    });
    return out;
  }
  function write() {
    const p = new URLSearchParams();
    metrics.forEach(m => state[m] && p.set(`${m}_p${state[m].q}`, `${+state[m].ms.toPrecision(3)}ms`));
    history.replaceState(null, "", "#" + p.toString());
  }
  function verdict(r, m, d) {
    const col = `${m}_p${d.q}_pooled`, mid = num(r[col + "_s"]);
    if (mid === null) return "unknown";
    const lo = num(r[col + "_lo_s"]) ?? mid, hi = num(r[col + "_hi_s"]) ?? mid, s = d.ms / 1000;
    return hi <= s ? "meets" : lo > s ? "fails" : "uncertain";
  }
  function overall(r) {
    const v = metrics.filter(m => state[m]).map(m => verdict(r, m, state[m]));
    return v.includes("fails") ? "fails" : v.includes("unknown") ? "unknown" : v.includes("uncertain") ? "uncertain" : "meets";
  }
  function pct(r) {
    return metrics.filter(m => state[m]).map(m => {
      const c = `${m}_p${state[m].q}_pooled`, f = v => (num(v) === null ? "?" : (v * 1000).toPrecision(3));
      return `${m.toUpperCase()} p${state[m].q} ${f(r[c + "_s"])} ms [${f(r[c + "_lo_s"])}, ${f(r[c + "_hi_s"])}]`;
    }).join("; ");
  }
  function pick() {
    const groups = {};
    rows.forEach(r => (groups[`${r.model}\u0000${r.hardware}`] ||= []).push(r));
    const out = [];
    Object.keys(groups).sort().forEach(k => {
      const mine = groups[k].filter(r => num(r.j_per_token_mean) !== null).map(r => ({ r, v: overall(r) }))
        .sort((a, b) => a.r.j_per_token_mean - b.r.j_per_token_mean);
      const best = mine.find(x => x.v === "meets");
      const cut = best ? best.r.j_per_token_mean : Infinity;
      mine.filter(x => x.v === "uncertain" && x.r.j_per_token_mean < cut).forEach(x => out.push(x));
      if (best) out.push(best);
      else if (!mine.some(x => x.v === "uncertain")) out.push({ r: groups[k][0], v: "none" });
    });
    return out;
  }
  function render() {
    write();
    metrics.forEach(m => {
      const on = !!state[m];
      document.getElementById("on-" + m).checked = on;
      document.getElementById("r-" + m).disabled = !on;
      document.getElementById("q-" + m).disabled = !on;
      if (on) {
        document.getElementById("q-" + m).value = state[m].q;
        document.getElementById("r-" + m).value = Math.log10(state[m].ms);
      }
      document.getElementById("v-" + m).textContent = on ? `${+state[m].ms.toPrecision(3)} ms` : "not set";
    });
    document.getElementById("slo-body").innerHTML = pick().map(({ r, v }) => v === "none"
      ? `<tr class="none"><td>${esc(r.model)}</td><td>${esc(r.hardware)}</td><td>none</td><td colspan="4">no measured row meets these deadlines</td></tr>`
      : `<tr class="${v}" data-id="${esc(r.id)}"><td>${esc(r.model)}</td><td>${esc(r.hardware)}</td><td>${v}</td><td>${esc(r.backend)}</td>` +
        `<td><a href="detail/${esc(r.id)}.html">${esc(r.sweep_point)}</a>` +
        `${r.ranked === false ? ` <span class="note" title="${esc(r.not_ranked_reason || "")}">not ranked</span>` : ""}</td>` +
        `<td>${r.j_per_token_mean.toPrecision(4)} ± ${num(r.j_per_token_ci95) === null ? "n/a" : r.j_per_token_ci95.toPrecision(2)}</td><td>${esc(pct(r))}</td></tr>`).join("");
  }
  function goodRanking() {
    const ranked = rows.filter(r => num(r.j_per_good_token_mean) !== null).sort((a, b) => a.j_per_good_token_mean - b.j_per_good_token_mean);
    document.getElementById("good-body").innerHTML = ranked.map(r =>
      `<tr data-id="${esc(r.id)}"><td>${r.rank_j_per_good_token ?? ""}</td><td>${esc(r.model)}</td><td>${esc(r.backend)}</td><td>${esc(r.hardware)}</td>` +
      `<td><a href="detail/${esc(r.id)}.html">${esc(r.sweep_point)}</a></td><td>${r.j_per_good_token_mean.toPrecision(4)} ± ` +
      `${num(r.j_per_good_token_ci95) === null ? "n/a" : r.j_per_good_token_ci95.toPrecision(2)}</td>` +
      `<td>${num(r.goodput_req_per_s_mean) === null ? "–" : r.goodput_req_per_s_mean.toPrecision(4)}</td></tr>`).join("") ||
      `<tr><td colspan="7">No row has a J per good token: set an <code>slo:</code> in the experiment file.</td></tr>`;
    if (typeof Plotly === "undefined" || !ranked.length) return;
    const traces = [];
    [...new Set(ranked.map(r => r.model))].sort().forEach(model => {
      const mine = ranked.filter(r => r.model === model && num(r.goodput_req_per_s_mean) !== null)
        .sort((a, b) => b.goodput_req_per_s_mean - a.goodput_req_per_s_mean);
      let best = Infinity;
      const front = mine.filter(r => (r.j_per_good_token_mean < best ? ((best = r.j_per_good_token_mean), true) : false));
      traces.push({ type: "scatter", mode: "markers", name: model, x: mine.map(r => r.goodput_req_per_s_mean),
        y: mine.map(r => r.j_per_good_token_mean), text: mine.map(r => `${r.backend} ${r.sweep_point} (${r.hardware})`) });
      traces.push({ type: "scatter", mode: "lines", name: `${model} Pareto`, x: front.map(r => r.goodput_req_per_s_mean),
        y: front.map(r => r.j_per_good_token_mean), line: { shape: "hv" } });
    });
    Plotly.newPlot("chart-good-pareto", traces, { title: { text: "J per good token vs goodput, per model (Pareto: lower-right is better)" },
      xaxis: { title: { text: "goodput (requests/s)" } }, yaxis: { title: { text: "J per good token" } }, template: "plotly_white" }, { responsive: true });
  }
  metrics.forEach(m => {
    const [lo, hi] = data.sliders[m], r = document.getElementById("r-" + m);
    r.min = Math.log10(lo); r.max = Math.log10(hi);
    document.getElementById("on-" + m).onchange = e => {
      state[m] = e.target.checked ? { q: 99, ms: Math.sqrt(lo * hi) } : undefined; render();
    };
    document.getElementById("q-" + m).onchange = e => { state[m].q = +e.target.value; render(); };
    r.oninput = e => { state[m].ms = Math.pow(10, +e.target.value); render(); };
  });
  Object.assign(state, parse(location.hash.slice(1) || data.initial));
  window.addEventListener("hashchange", () => { metrics.forEach(m => delete state[m]); Object.assign(state, parse(location.hash.slice(1))); render(); });
  render();
  goodRanking();
})();
