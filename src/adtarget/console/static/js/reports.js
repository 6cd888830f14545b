// Reports: delivery over time as charts (impressions, spend, reach) and a table, CSV download.
import { api, download, get, inWords } from "./api.js";
import { field, fmtInt, h, table } from "./dom.js";

const TIME = [["day", "Day"], ["hour", "Hour"], ["", "No time axis"]];
const SPLIT = [["", "Nothing"], ["campaign", "Campaign"], ["line_item", "Line item"], ["advertiser", "Advertiser"],
  ["creative", "Creative"], ["country", "Country"], ["device", "Device"]];
const METRICS = ["impressions", "clicks", "completes", "spend", "reach", "ctr", "completion_rate", "ecpm"];
const CHARTED = ["impressions", "spend", "reach"];
const COLORS = ["#0b5cad", "#d1242f", "#1a7f37", "#8250df", "#bf8700", "#0a7ea4", "#cf222e", "#57606a"];
const day = (n) => new Date(Date.now() + n * 864e5).toISOString().slice(0, 10);
const title = (m) => m.charAt(0).toUpperCase() + m.slice(1).replace("_", " ");

function timeSeries(rows, timeKey, splitKey, metric) {
  const xs = [...new Set(rows.map((r) => r[timeKey]))].sort();
  const keys = splitKey ? [...new Set(rows.map((r) => String(r[splitKey])))].slice(0, 8) : ["all"];
  const index = new Map(xs.map((x, i) => [x, i]));
  const series = keys.map(() => xs.map(() => 0));
  for (const r of rows) {
    const k = splitKey ? keys.indexOf(String(r[splitKey])) : 0;
    if (k >= 0) series[k][index.get(r[timeKey])] = Number(r[metric] ?? 0);
  }
  const seconds = xs.map((x) => Date.parse(x.length === 10 ? `${x}T00:00:00Z` : x) / 1000);
  return { seconds, keys, series };
}

function chart(metric, rows, timeKey, splitKey, width) {
  const caption = `${title(metric)} by ${timeKey || splitKey || "total"}${timeKey && splitKey ? ` and ${splitKey}` : ""}`;
  const fig = h("figure", { class: "chart", role: "img", "aria-label": caption }, h("figcaption", {}, caption));
  if (timeKey && window.uPlot) {
    const { seconds, keys, series } = timeSeries(rows, timeKey, splitKey, metric);
    const opts = {
      width, height: 220,
      scales: { x: { time: true } },
      series: [{}, ...keys.map((k, i) => ({ label: splitKey ? `${splitKey} ${k}` : title(metric), stroke: COLORS[i % COLORS.length], width: 2, points: { show: true } }))],
      axes: [{}, { size: 60 }],
    };
    const holder = h("div");
    fig.append(holder);
    queueMicrotask(() => new window.uPlot(opts, [seconds, ...series], holder));
  } else {
    // no time axis: horizontal bars, one per group
    const max = Math.max(1e-9, ...rows.map((r) => Number(r[metric] ?? 0)));
    const key = splitKey;
    fig.append(h("div", { class: "bars" }, rows.slice(0, 20).map((r) => h("div", { style: "display:flex;gap:8px;align-items:center;margin:2px 0" },
      h("span", { style: "width:120px" }, key ? `${key} ${r[key]}` : "total"),
      h("div", { class: "bar", style: `width:${(300 * Number(r[metric] ?? 0)) / max}px` }),
      h("span", { class: "muted" }, fmtInt(r[metric]))))));
  }
  return fig;
}

export async function render(root) {
  const from = h("input", { type: "date", value: day(-7) });
  const to = h("input", { type: "date", value: day(0) });
  const time = h("select", {}, TIME.map(([v, t]) => h("option", { value: v }, t)));
  const split = h("select", {}, SPLIT.map(([v, t]) => h("option", { value: v }, t)));
  const boxes = METRICS.map((m) => h("input", { type: "checkbox", value: m, checked: ["impressions", "clicks", "spend", "reach"].includes(m) }));
  const alert = h("div", { role: "alert" });
  const out = h("div", { "aria-live": "polite" });

  const query = (format) => {
    const group = [time.value, split.value].filter(Boolean).join(",");
    const metrics = boxes.filter((b) => b.checked).map((b) => b.value).join(",");
    const q = new URLSearchParams({ from: from.value, to: to.value, group_by: group, metrics });
    if (format) q.set("format", format);
    return `/v1/reports?${q}`;
  };

  async function show() {
    alert.replaceChildren();
    try {
      const { rows } = await get(query());
      const metrics = boxes.filter((b) => b.checked).map((b) => b.value);
      const timeKey = time.value, splitKey = split.value ? ({ campaign: "campaign_id", line_item: "line_item_id", advertiser: "advertiser_id", creative: "creative_id" }[split.value] || split.value) : "";
      const cols = rows.length ? Object.keys(rows[0]) : [timeKey, splitKey, ...metrics].filter(Boolean);
      const charted = CHARTED.filter((m) => metrics.includes(m));
      const width = Math.max(320, Math.floor((root.clientWidth - 40) / Math.max(1, Math.min(3, charted.length))) - 24);
      out.replaceChildren(
        h("h2", {}, `Delivery ${from.value} to ${to.value}`),
        rows.length ? h("div", { class: "grid3" }, charted.map((m) => chart(m, rows, timeKey, splitKey, width))) : h("p", { class: "muted" }, "No delivery in this range."),
        h("h2", {}, "Table"),
        table(cols, rows.map((r) => h("tr", {}, cols.map((c) => h("td", { class: typeof r[c] === "number" ? "num" : null },
          typeof r[c] === "number" && !Number.isInteger(r[c]) ? r[c].toFixed(4) : r[c] ?? "—")))),
          { numeric: cols.map((c, i) => (rows.length && typeof rows[0][c] === "number" ? i : -1)) }));
    } catch (err) { alert.textContent = inWords(err); }
  }

  const csv = h("button", { type: "button", class: "secondary", onclick: async () => {
    try { await download(await api("GET", query("csv"), undefined, { raw: true }), `report-${from.value}-${to.value}.csv`); }
    catch (err) { alert.textContent = inWords(err); }
  } }, "Download CSV");
  const form = h("form", { class: "panel" },
    h("div", { class: "row" }, field("From", from)[0], field("To", to)[0], field("Time axis", time)[0], field("Split by", split)[0],
      h("div", {}, h("button", { type: "submit" }, "Show report")), h("div", {}, csv)),
    h("fieldset", { style: "border:none;padding:0;margin:8px 0 0" }, h("legend", { style: "font-weight:600" }, "Metrics"),
      METRICS.map((m, i) => h("label", { class: "inline" }, boxes[i], title(m)))),
    alert);
  form.addEventListener("submit", (ev) => { ev.preventDefault(); show(); });
  root.append(h("h1", { tabindex: "-1" }, "Reports"), form, out);
  await show();
}
