// Audience builder: type a rule, see its exact size live, errors marked, overlap, save, export.
import { api, ApiError, download, get, inWords, post } from "./api.js";
import { suggest } from "./complete.js";
import { debounce, field, fmtInt, h, say, uid } from "./dom.js";

const EXAMPLE = 'country in ("US", "CA") and genres has any ("scifi")';

/** The rule with the token at (line, column) wrapped in <mark>. */
export function markToken(rule, line, column) {
  const lines = rule.split("\n");
  let offset = 0;
  for (let i = 0; i < Math.min(line - 1, lines.length); i++) offset += lines[i].length + 1;
  const start = Math.min(offset + Math.max(column - 1, 0), rule.length);
  let end = start;
  if (rule[start] === '"') {
    end = rule.indexOf('"', start + 1);
    end = end < 0 ? rule.length : end + 1;
  } else {
    while (end < rule.length && /[\w.\-]/.test(rule[end])) end++;
    if (end === start && start < rule.length) end = start + 1;
  }
  const token = rule.slice(start, end);
  return h("pre", {}, rule.slice(0, start),
    h("mark", { class: "bad", title: "offending token" }, token || "\u2038 (end of rule)"), rule.slice(end));
}

export async function render(root, session) {
  let vocab = null;
  const rule = h("textarea", {
    rows: 3, spellcheck: "false", autocomplete: "off", "aria-autocomplete": "list",
    "aria-expanded": "false", placeholder: EXAMPLE,
  });
  const [ruleWrap] = field("Rule", rule, {
    hint: "Dimensions, values and saved audiences complete as you type (arrow keys, then Enter or Tab).",
  });
  const listId = uid("suggest");
  const list = h("ul", { class: "suggest", role: "listbox", id: listId, "aria-label": "Suggestions", hidden: true });
  rule.setAttribute("aria-controls", listId);
  const size = h("output", { role: "status", class: "size", "aria-live": "polite" }, "Type a rule to see its size.");
  const meta = h("p", { class: "muted", id: uid("meta") });
  const alert = h("div", { role: "alert" });
  const note = h("div", { class: "note", "aria-live": "polite" });

  // --- completion -------------------------------------------------------------------------
  let items = [], active = -1, from = 0;
  const close = () => { list.hidden = true; rule.setAttribute("aria-expanded", "false"); rule.removeAttribute("aria-activedescendant"); items = []; };
  const paint = () => {
    list.replaceChildren(...items.map((it, i) => h("li", {
      role: "option", id: `${listId}-${i}`, "aria-selected": i === active ? "true" : "false",
      onmousedown: (e) => { e.preventDefault(); accept(i); },
    }, it.label, h("span", { class: "kind" }, it.kind))));
    list.hidden = items.length === 0;
    rule.setAttribute("aria-expanded", String(!list.hidden));
    if (active >= 0) rule.setAttribute("aria-activedescendant", `${listId}-${active}`);
    else rule.removeAttribute("aria-activedescendant");
    list.children[active]?.scrollIntoView?.({ block: "nearest" });
  };
  const refreshSuggestions = () => {
    const before = rule.value.slice(0, rule.selectionStart);
    const s = suggest(before, vocab);
    from = s.from; items = s.items; active = items.length ? 0 : -1;
    paint();
  };
  const accept = (i) => {
    const it = items[i];
    if (!it) return;
    const pos = rule.selectionStart;
    rule.value = rule.value.slice(0, from) + it.text + rule.value.slice(pos);
    const caret = from + it.text.length;
    rule.setSelectionRange(caret, caret);
    close();
    rule.focus();
    sizeSoon();
    refreshSuggestions();
  };
  rule.addEventListener("keydown", (e) => {
    if (list.hidden) {
      if (e.key === " " && e.ctrlKey) { e.preventDefault(); refreshSuggestions(); }
      return;
    }
    if (e.key === "ArrowDown") { e.preventDefault(); active = (active + 1) % items.length; paint(); }
    else if (e.key === "ArrowUp") { e.preventDefault(); active = (active - 1 + items.length) % items.length; paint(); }
    else if ((e.key === "Enter" || e.key === "Tab") && active >= 0) { e.preventDefault(); accept(active); }
    else if (e.key === "Escape") { e.preventDefault(); close(); }
  });
  rule.addEventListener("blur", () => setTimeout(close, 100));

  // --- live size ----------------------------------------------------------------------------
  let seq = 0;
  async function sizeNow() {
    const text = rule.value.trim();
    const mine = ++seq;
    if (!text) {
      size.className = "size pending";
      say(size, "Type a rule to see its size.");
      alert.replaceChildren();
      meta.textContent = "";
      return;
    }
    const t0 = performance.now();
    try {
      const res = await post("/v1/audiences/size", { rule: text });
      if (mine !== seq) return; // an older answer arriving late
      alert.replaceChildren();
      const ms = Math.round(performance.now() - t0);
      if (res.below_threshold) {
        size.className = "size below";
        size.replaceChildren(`Below the minimum audience size (${fmtInt(res.min_size ?? session.me?.min_audience_size)} users): too small to show or target.`);
      } else {
        size.className = "size";
        size.replaceChildren(h("span", { class: "count" }, String(res.count)), " users");
      }
      meta.textContent = `exact count on snapshot ${res.snapshot} · answered in ${ms} ms`;
    } catch (err) {
      if (mine !== seq) return;
      size.className = "size pending";
      say(size, "No size: the rule has an error.");
      meta.textContent = "";
      const children = [h("p", { style: "margin:0" }, inWords(err))];
      if (err.error?.line) children.push(markToken(rule.value, err.error.line, err.error.column));
      alert.replaceChildren(...children);
    }
  }
  const sizeSoon = debounce(sizeNow, 200);
  rule.addEventListener("input", () => { sizeSoon(); refreshSuggestions(); });

  // --- save / export --------------------------------------------------------------------------
  const segName = h("input", { type: "text", pattern: "[A-Za-z_][A-Za-z0-9_.\\-]*" });
  const [segWrap] = field("Segment name", segName);
  const saveBtn = h("button", { type: "button", onclick: async () => {
    try {
      const seg = await post("/v1/segments", { name: segName.value.trim(), kind: "rule", rule: rule.value.trim() });
      say(note, `Saved as segment "${seg.name}" (id ${seg.id}); use it in other rules as segment("${seg.name}").`);
      vocab = await get("/v1/audiences/vocabulary").catch(() => vocab);
    } catch (err) { say(note, `Not saved: ${inWords(err)}`); }
  } }, "Save as segment");
  const exportBtn = h("button", { type: "button", class: "secondary", onclick: async () => {
    try {
      const res = await api("POST", "/v1/audiences/export", { rule: rule.value.trim(), format: "csv" }, { raw: true });
      await download(res, "audience.csv");
      say(note, `Exported ${fmtInt(res.headers.get("X-Adtarget-Count"))} user ids (snapshot ${res.headers.get("X-Adtarget-Snapshot")}).`);
    } catch (err) { say(note, `Not exported: ${inWords(err)}`); }
  } }, "Export CSV");

  // --- forecast beside the size -------------------------------------------------------------
  const day = (d) => new Date(Date.now() + d * 86400000).toISOString().slice(0, 10);
  const fStart = h("input", { type: "date", value: day(1), required: true });
  const fEnd = h("input", { type: "date", value: day(8), required: true });
  const fPriority = h("input", { type: "number", min: 1, max: 16, value: 5 });
  const fBid = h("input", { type: "number", min: 0, step: "0.01", value: 4 });
  const fCap = h("input", { type: "number", min: 1, placeholder: "none" });
  const [fStartWrap] = field("Flight start", fStart);
  const [fEndWrap] = field("Flight end", fEnd);
  const [fPriorityWrap] = field("Priority", fPriority);
  const [fBidWrap] = field("Bid CPM", fBid);
  const [fCapWrap] = field("Cap per user per day", fCap);
  // the campaign the proposal would be booked in: its flight, budget and category apply, and an
  // advertiser key may forecast only inside its own campaigns (the API lists only those to it)
  const scoped = session.me?.role === "advertiser";
  const fCampaign = h("select", {});
  const [fCampaignWrap] = field("Campaign", fCampaign, {
    hint: scoped ? "One of your campaigns." : "Optional: forecast inside a campaign (its flight and budget apply).",
  });
  const forecastOut = h("div", { class: "forecast", "aria-live": "polite" },
    h("p", { class: "muted" }, "Impressions this rule could get, replaying sampled requests through the decision engine."));
  const forecastBar = h("progress", { max: 1, value: 0, "aria-label": "Forecast progress", hidden: true });
  async function loadCampaigns() {
    let camps = [];
    try {
      camps = (await get("/v1/campaigns?limit=1000")).campaigns.filter((c) => c.status !== "archived");
    } catch { /* no campaigns to offer: the forecast still runs without one (not for advertiser keys) */ }
    fCampaign.replaceChildren(
      ...(scoped ? [] : [h("option", { value: "" }, "No campaign")]),
      ...camps.map((c) => h("option", { value: String(c.id) }, `${c.name} (#${c.id})`)));
    if (scoped && !camps.length) {
      fCampaign.append(h("option", { value: "", disabled: true, selected: true }, "You have no campaigns yet"));
      forecastBtn.disabled = true;
    }
  }
  /** The forecast as a job (POST {"async": true}), its progress drawn until it is done. */
  async function forecastJob(body) {
    let job = await post("/v1/forecast", { ...body, async: true });
    forecastBar.hidden = false;
    forecastBar.value = 0;
    while (job.status !== "done" && job.status !== "failed") {
      await new Promise((resolve) => setTimeout(resolve, 250));
      job = await get(job.status_url);
      const p = job.progress || {};
      forecastBar.value = p.fraction || 0;
      if (p.stage && job.status === "running") say(forecastOut, `Forecasting… ${p.stage}`);
    }
    forecastBar.hidden = true;
    if (job.status === "failed") throw new ApiError(422, job.error || {});
    return job.result;
  }
  const forecastBtn = h("button", { type: "button", onclick: async () => {
    const body = {
      targeting: rule.value.trim(),
      start: `${fStart.value}T00:00:00Z`, end: `${fEnd.value}T00:00:00Z`,
      priority: Number(fPriority.value), bid_cpm: Number(fBid.value),
    };
    if (fCap.value) body.frequency_cap = { count: Number(fCap.value), window_seconds: 86400 };
    if (fCampaign.value) body.campaign_id = Number(fCampaign.value);
    say(forecastOut, "Forecasting…");
    try {
      const res = await forecastJob(body);
      if (res.no_history) {
        forecastOut.replaceChildren(h("p", {}, `No forecast: ${res.message}`));
        return;
      }
      forecastOut.replaceChildren(
        h("p", {}, h("span", { class: "count", "data-forecast": res.forecast_impressions }, fmtInt(res.forecast_impressions)),
          ` impressions to ${fmtInt(res.unique_users)} users`),
        h("p", { class: "muted" },
          `95%: ${fmtInt(res.confidence.low)}–${fmtInt(res.confidence.high)} · ${fmtInt(res.matched_requests)} matching requests, ` +
          `${fmtInt(res.available_impressions)} not taken by higher-ranked line items · sample rate ${res.sample_rate}`));
    } catch (err) {
      forecastBar.hidden = true;
      forecastOut.replaceChildren(h("p", { class: "note" }, `No forecast: ${inWords(err)}`));
    }
  } }, "Forecast");

  // --- overlap --------------------------------------------------------------------------------
  const rules = h("textarea", { rows: 4, spellcheck: "false" });
  const [rulesWrap] = field("Audiences to compare, one per line", rules);
  const heat = h("div", { "aria-live": "polite" });
  const addBtn = h("button", { type: "button", class: "secondary", onclick: () => {
    const text = rule.value.trim();
    if (text) rules.value = (rules.value.trim() ? `${rules.value.trim()}\n` : "") + text;
  } }, "Add current rule");
  const overlapBtn = h("button", { type: "button", onclick: async () => {
    const list = rules.value.split("\n").map((s) => s.trim()).filter(Boolean);
    if (list.length < 2) { heat.replaceChildren(h("p", { class: "muted" }, "Give at least two rules, one per line.")); return; }
    try {
      heat.replaceChildren(heatMap(list, await post("/v1/audiences/overlap", { rules: list })));
    } catch (err) { heat.replaceChildren(h("div", { role: "alert" }, inWords(err))); }
  } }, "Show overlap");

  root.append(
    h("h1", { tabindex: "-1" }, "Audience builder"),
    h("div", { class: "grid" },
      h("section", { "aria-labelledby": "aud-size" },
        h("h2", { id: "aud-size" }, "Size as you type"),
        h("div", { class: "combo" }, ruleWrap, list),
        size, meta, alert,
        h("div", { class: "row" }, segWrap, h("div", {}, saveBtn), h("div", {}, exportBtn)),
        note,
        h("section", { "aria-labelledby": "aud-forecast" },
          h("h2", { id: "aud-forecast" }, "Forecast"),
          h("div", { class: "row" }, fCampaignWrap, fStartWrap, fEndWrap, fPriorityWrap, fBidWrap, fCapWrap),
          h("div", { class: "toolbar" }, forecastBtn, forecastBar),
          forecastOut)),
      h("section", { "aria-labelledby": "aud-overlap" },
        h("h2", { id: "aud-overlap" }, "Overlap"),
        rulesWrap,
        h("div", { class: "toolbar" }, addBtn, overlapBtn),
        heat)),
  );
  loadCampaigns();
  vocab = await get("/v1/audiences/vocabulary").catch(() => null);
  if (document.activeElement === rule && rule.value) refreshSuggestions(); // typed before it came
  if (!vocab?.snapshot) meta.textContent = "No audience snapshot yet: upload a feature file on the Uploads page.";
  const initial = new URLSearchParams(location.hash.split("?")[1] || "").get("rule");
  if (initial) { rule.value = initial; sizeNow(); }
  rules.value = (vocab?.segments || []).slice(0, 3).map((s) => `segment("${s}")`).join("\n");
  rule.focus();
}

function heatMap(list, res) {
  const m = res.matrix;
  const letters = list.map((_, i) => String.fromCharCode(65 + i));
  const cell = (i, j) => {
    const v = m[i][j];
    if (v === null || v === undefined) return h("td", { class: "cell muted" }, "below min");
    const base = m[i][i] || 0;
    const share = base ? v / base : 0;
    const bg = `rgba(11, 92, 173, ${(0.08 + 0.85 * share).toFixed(2)})`;
    return h("td", { class: "cell", style: `background:${bg};color:${share > 0.5 ? "#fff" : "inherit"}`,
      title: `${letters[i]} and ${letters[j]}` }, fmtInt(v), h("br"), h("small", {}, `${Math.round(share * 100)}% of ${letters[i]}`));
  };
  return h("div", {},
    h("table", { class: "heat" },
      h("caption", { style: "text-align:left" }, `Users in both audiences (snapshot ${res.snapshot})`),
      h("thead", {}, h("tr", {}, h("td"), letters.map((l) => h("th", { scope: "col" }, l)))),
      h("tbody", {}, list.map((_, i) => h("tr", {}, h("th", { scope: "row" }, letters[i]), list.map((__, j) => cell(i, j)))))),
    h("ol", { type: "A", class: "muted" }, list.map((r) => h("li", {}, h("code", {}, r)))));
}
