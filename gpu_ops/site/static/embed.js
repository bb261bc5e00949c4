// Embeddable card: the rows of one model (?model=<id>), best first by the headline metric; links open the full site.
(function () {
  const data = JSON.parse(document.getElementById("lem-embed").textContent);
  const model = new URLSearchParams(location.search).get("model") || "";
  const card = document.getElementById("card");
  const esc = s => String(s).replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  const num = (v, scale = 1, unit = "") => v === null || v === undefined ? "<span class='unmeasured'>unmeasured</span>"
    : Number((v * scale).toPrecision(3)).toLocaleString("en-US", { maximumSignificantDigits: 3 }) + unit;
  const rows = data.rows.filter(r => r.model === model).sort((a, b) => (b[data.headline] ?? -Infinity) - (a[data.headline] ?? -Infinity));
  if (!rows.length) {
    const models = [...new Set(data.rows.map(r => r.model))].sort();
    card.innerHTML = `<h1>No rows for model “${esc(model)}”</h1><div class="note">Pass ?model= one of: ${models.map(esc).join(", ") || "(no models measured yet)"}</div>`;
    return;
  }
  const lead = data.headline === "tokens_per_j_mean" ? "tokens/J" : "tokens/s";
  const rate = lead !== "tokens/s";  // the throughput column, unless throughput already leads
  const name = rows[0].model_url ? `<a href="${esc(rows[0].model_url)}" target="_blank" rel="noopener">${esc(model)}</a>` : esc(model);
  card.innerHTML = `<h1>${name}</h1><div class="note">${lead} (higher is better)${rate ? ", J/token and throughput" : " and J/token"} per sweep point;
    <a href="index.html" target="_blank">full leaderboard</a></div>
    <table><thead><tr><th>hardware · parallelism</th><th>${lead}</th><th>J/token</th>${rate ? "<th>tokens/s</th>" : ""}<th>CV</th></tr></thead><tbody>` +
    rows.map(r => `<tr data-id="${esc(r.id)}"><td><a href="detail/${esc(r.id)}.html" target="_blank">${esc(r.hardware)} · ${esc(r.parallelism)}</a>
      <span class="note">${esc(r.backend)}, ${esc(r.sweep_point)}</span></td><td class="lead">${num(r[data.headline])}</td><td>${num(r.j_per_token_mean)}</td>
      ${rate ? `<td>${num(r.tokens_per_s_mean)}</td>` : ""}<td>${r.cv === null ? "n/a" : num(r.cv, 100, " %")}${r.unstable ? " <span class='badge'>unstable</span>" : ""}</td></tr>`).join("") +
    "</tbody></table>";
})();
