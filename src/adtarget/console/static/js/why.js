// Why not served: a user id and context in, each line item's reason out (the `explain` answer).
import { get, inWords, post } from "./api.js";
import { field, fmtMoney, h, table } from "./dom.js";

const REASONS = {
  targeting: "The user does not match the targeting rule",
  frequency_cap: "The frequency cap is reached for this user",
  format: "No creative in a requested format",
  budget: "The budget is spent",
  pacing: "Pacing holds it back for now",
  flight: "Outside its flight dates",
  daypart: "Outside its dayparting hours",
  status: "Not active (it or its campaign)",
  no_creative: "No creative attached",
};

function parseContext(text) {
  const ctx = {};
  for (const line of text.split("\n").map((s) => s.trim()).filter(Boolean)) {
    const eq = line.indexOf("=");
    if (eq < 0) throw new Error(`context line "${line}" needs the form dimension=value`);
    const key = line.slice(0, eq).trim();
    const raw = line.slice(eq + 1).trim();
    ctx[key] = /^-?\d+(\.\d+)?$/.test(raw) ? Number(raw) : raw === "true" ? true : raw === "false" ? false : raw.includes(",") ? raw.split(",").map((s) => s.trim()) : raw;
  }
  return ctx;
}

export async function render(root) {
  const user = h("input", { type: "text", value: "u0000010" });
  const context = h("textarea", { rows: 3, spellcheck: "false", placeholder: "device=tv\ncountry=US" });
  const formats = h("input", { type: "text", placeholder: "e.g. video_30s, display_banner" });
  const alert = h("div", { role: "alert" });
  const out = h("div", { "aria-live": "polite" });
  const names = new Map();

  async function explain() {
    alert.replaceChildren();
    try {
      const body = { user_id: user.value.trim(), context: parseContext(context.value), limit: 10, explain: true };
      const fmts = formats.value.split(",").map((s) => s.trim()).filter(Boolean);
      if (fmts.length) body.formats = fmts;
      const res = await post("/v1/decisions", body);
      if (!names.size) {
        const items = await get("/v1/line-items?limit=1000").catch(() => ({ line_items: [] }));
        for (const li of items.line_items) names.set(li.id, li.name);
      }
      const label = (id) => `${names.get(id) ?? "line item"} (${id})`;
      const notServed = res.explain?.not_served || [];
      out.replaceChildren(
        h("h2", {}, `Served to ${body.user_id} (${res.decisions.length})`),
        res.decisions.length ? table(["Line item", "Campaign", "Creative", "Priority", "Bid CPM"], res.decisions.map((d) => h("tr", {},
          h("td", {}, label(d.line_item_id)), h("td", {}, d.campaign_id), h("td", {}, d.creative_id), h("td", { class: "num" }, d.priority),
          h("td", { class: "num" }, fmtMoney(d.bid_cpm)))), { numeric: [3, 4] }) : h("p", {}, "Nothing would be served to this user now."),
        h("h2", {}, `Not served (${notServed.length})`),
        notServed.length ? table(["Line item", "Why not", "Detail"], notServed.map((n) => h("tr", {},
          h("td", {}, label(n.line_item_id)), h("td", {}, REASONS[n.reason] || n.reason), h("td", {}, h("code", {}, n.detail ?? ""))))) : h("p", { class: "muted" }, "Every live line item was served or ranked."),
        h("p", { class: "muted" }, `snapshot ${res.snapshot}${res.degraded ? " · degraded: a store did not answer, some checks were skipped" : ""}${res.explain?.truncated ? " · list truncated" : ""}`));
    } catch (err) { alert.textContent = inWords(err); }
  }

  const form = h("form", { class: "panel" },
    h("div", { class: "row" }, field("User id", user)[0], field("Context (one dimension=value per line)", context)[0], field("Formats", formats)[0],
      h("div", {}, h("button", { type: "submit" }, "Explain"))), alert);
  form.addEventListener("submit", (ev) => { ev.preventDefault(); explain(); });
  root.append(h("h1", { tabindex: "-1" }, "Why not served"),
    h("p", { class: "muted" }, "Asks the decision engine what it would serve this user now, and why each other live line item is not served. Nothing is recorded."),
    form, out);
}
