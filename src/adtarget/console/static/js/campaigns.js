// Campaigns: advertisers -> campaigns -> line items -> creatives; create, edit, pause/activate,
// attach creatives; Undo/Redo and the signed-in user's own command history.
import { api, get, inWords, patch, post } from "./api.js";
import { badge, field, fmtDate, fmtInt, fmtMoney, h, say, table } from "./dom.js";

const NEXT = { draft: ["Activate"], active: ["Pause"], paused: ["Activate", "Archive"] };
const TO = { Activate: "active", Pause: "paused", Archive: "archived" };
const today = () => new Date().toISOString().slice(0, 10);
const plusDays = (n) => new Date(Date.now() + n * 864e5).toISOString().slice(0, 10);
const iso = (d, end) => (d.length === 10 ? `${d}T${end ? "23:59:59" : "00:00:00"}Z` : d);

export async function render(root, session) {
  const canWrite = ["admin", "advertiser"].includes(session.me.role);
  const st = { advertiser: null, campaign: null };
  const alert = h("div", { role: "alert" });
  const note = h("div", { class: "note", "aria-live": "polite" });
  const history = h("ol", { class: "history", "aria-label": "Your recent changes" });
  const lists = h("div");

  async function run(what, fn) {
    alert.replaceChildren();
    try {
      const out = await fn();
      if (what) say(note, what(out));
    } catch (err) {
      alert.textContent = inWords(err);
    }
    await refresh();
  }

  const undo = h("button", { type: "button", disabled: !canWrite, onclick: () => run(
    (r) => `Undone: ${r.description}.${r.note ? ` ${r.note}` : ""}`, () => post("/v1/commands/undo")) }, "Undo");
  const redo = h("button", { type: "button", class: "secondary", disabled: !canWrite, onclick: () => run(
    (r) => `Redone: ${r.description}.`, () => post("/v1/commands/redo")) }, "Redo");

  function statusButtons(kind, obj) {
    if (!canWrite) return [];
    return (NEXT[obj.status] || []).map((label) => h("button", {
      type: "button", class: "small secondary",
      onclick: () => run((o) => `${obj.name} is now ${o.status}.`,
        () => patch(`/v1/${kind}/${obj.id}`, { status: TO[label], version: obj.version })),
    }, label));
  }

  function editButton(kind, obj, fields) {
    if (!canWrite) return null;
    return h("button", { type: "button", class: "small secondary", onclick: () => openEditor(kind, obj, fields) }, "Edit");
  }

  function openEditor(kind, obj, fields) {
    const controls = {};
    const errBox = h("div", { role: "alert" });
    const dlg = h("dialog", { "aria-label": `Edit ${obj.name}` });
    const form = h("form", { method: "dialog" }, h("h2", {}, `Edit ${obj.name}`),
      fields.map(([name, label, type]) => {
        const value = type === "date" ? fmtDate(obj[name]) : obj[name] ?? "";
        const [wrap, c] = field(label, h("input", { type, value: String(value), step: type === "number" ? "any" : null }));
        controls[name] = [c, type];
        return wrap;
      }),
      errBox,
      h("div", { class: "toolbar" },
        h("button", { type: "submit" }, "Save changes"),
        h("button", { type: "button", class: "secondary", onclick: () => dlg.close() }, "Cancel")));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const changes = { version: obj.version };
      for (const [name, [c, type]] of Object.entries(controls)) {
        const before = type === "date" ? fmtDate(obj[name]) : String(obj[name] ?? "");
        if (c.value === before) continue;
        changes[name] = type === "number" ? Number(c.value) : type === "date" ? iso(c.value, name === "end") : c.value;
      }
      try {
        const out = await patch(`/v1/${kind}/${obj.id}`, changes);
        dlg.close();
        say(note, `Saved ${out.name} (version ${out.version}).`);
        await refresh();
      } catch (err) {
        errBox.textContent = inWords(err);
        if (err.status === 409) await refresh();
      }
    });
    dlg.append(form);
    dlg.addEventListener("close", () => dlg.remove());
    document.body.append(dlg);
    dlg.showModal();
  }

  function createForm(title, fields, submit) {
    const controls = {};
    const form = h("form", { class: "row", "aria-label": title },
      fields.map(([name, label, type, value, extra]) => {
        const c = type === "select"
          ? h("select", {}, (value || []).map(([v, t]) => h("option", { value: v }, t)))
          : type === "textarea" ? h("textarea", { rows: 1, spellcheck: "false" }, value ?? "")
          : h("input", { type, value: value ?? "", step: type === "number" ? "any" : null, ...(extra || {}) });
        controls[name] = c;
        return field(label, c)[0];
      }),
      h("div", {}, h("button", { type: "submit" }, title)));
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const values = Object.fromEntries(Object.entries(controls).map(([k, c]) => [k, c.value]));
      run((o) => `Created ${o.name ?? "it"}${o.id ? ` (id ${o.id})` : ""}.`, () => submit(values)).then(() => {
        if (!alert.textContent) form.reset();
      });
    });
    return form;
  }

  const selectable = (selected, onOpen, name) =>
    h("button", { type: "button", class: "link", "aria-pressed": selected ? "true" : "false", onclick: onOpen }, name);

  async function spendByCampaign() {
    try {
      const r = await get(`/v1/reports?from=2000-01-01&to=${plusDays(1)}&group_by=campaign&metrics=spend,impressions`);
      return new Map(r.rows.map((row) => [String(row.campaign_id), row]));
    } catch { return new Map(); }
  }

  async function refresh() {
    const [advs, hist] = await Promise.all([
      get("/v1/advertisers?limit=1000"),
      get("/v1/commands?limit=12").catch(() => ({ commands: [] })),
    ]);
    history.replaceChildren(...hist.commands.map((c) => h("li", {},
      h("span", { class: `state ${c.state}` }, `${c.state} · `), c.description || c.kind,
      h("span", { class: "muted" }, ` · ${String(c.created_at).slice(11, 19)}`))));
    if (!hist.commands.length) history.replaceChildren(h("li", { class: "muted" }, "No changes by you yet."));
    const advertisers = advs.advertisers;
    if (!st.advertiser && advertisers.length) st.advertiser = advertisers[0].id;
    const sections = [
      h("section", { "aria-labelledby": "h-adv" }, h("h2", { id: "h-adv" }, "Advertisers"),
        table(["Name", "Status", "Category"], advertisers.map((a) => h("tr", { class: a.id === st.advertiser ? "selected" : null },
          h("td", {}, selectable(a.id === st.advertiser, () => { st.advertiser = a.id; st.campaign = null; refresh(); }, a.name)),
          h("td", {}, badge(a.status)), h("td", {}, a.category ?? "—")))),
        session.me.is_admin !== false && session.me.role === "admin"
          ? createForm("Create advertiser", [["name", "Advertiser name", "text"]], (v) => post("/v1/advertisers", v))
          : null),
    ];
    if (st.advertiser) {
      const [camps, creatives, spend] = await Promise.all([
        get(`/v1/campaigns?advertiser_id=${st.advertiser}&limit=1000`),
        get(`/v1/creatives?advertiser_id=${st.advertiser}&limit=1000`),
        spendByCampaign(),
      ]);
      const campaigns = camps.campaigns.filter((c) => c.status !== "archived");
      if (st.campaign && !campaigns.some((c) => c.id === st.campaign)) st.campaign = null;
      if (!st.campaign && campaigns.length) st.campaign = campaigns[0].id;
      sections.push(h("section", { "aria-labelledby": "h-camp" }, h("h2", { id: "h-camp" }, "Campaigns"),
        table(["Name", "Status", "Flight", "Budget", "Spend", "Impressions", "Actions"], campaigns.map((c) => h("tr", { class: c.id === st.campaign ? "selected" : null },
          h("td", {}, selectable(c.id === st.campaign, () => { st.campaign = c.id; refresh(); }, c.name)),
          h("td", {}, badge(c.status)),
          h("td", {}, `${fmtDate(c.start)} → ${fmtDate(c.end)}`),
          h("td", { class: "num" }, `${fmtMoney(c.budget_total)} ${c.currency}`),
          h("td", { class: "num" }, fmtMoney(spend.get(String(c.id))?.spend ?? 0)),
          h("td", { class: "num" }, fmtInt(spend.get(String(c.id))?.impressions ?? 0)),
          h("td", {}, statusButtons("campaigns", c), " ", editButton("campaigns", c,
            [["name", "Name", "text"], ["budget_total", "Budget", "number"], ["start", "Start", "date"], ["end", "End", "date"]])))),
          { numeric: [3, 4, 5] }),
        canWrite ? createForm("Create campaign", [
          ["name", "Campaign name", "text"], ["budget_total", "Budget", "number", "1000"],
          ["start", "Start", "date", today()], ["end", "End", "date", plusDays(30)],
        ], (v) => post("/v1/campaigns", {
          advertiser_id: st.advertiser, name: v.name, budget_total: Number(v.budget_total),
          start: iso(v.start, false), end: iso(v.end, true),
        })) : null));
      if (st.campaign) {
        const items = (await get(`/v1/line-items?campaign_id=${st.campaign}&limit=1000`)).line_items;
        const links = await Promise.all(items.map((li) => get(`/v1/line-items/${li.id}/creatives`).then(
          (r) => r.creatives || r.creative_ids || [], () => null)));
        sections.push(h("section", { "aria-labelledby": "h-li" }, h("h2", { id: "h-li" }, "Line items"),
          table(["Name", "Status", "Priority", "Bid CPM", "Targeting", "Flight", "Creatives", "Actions"], items.map((li, i) => h("tr", {},
            h("td", {}, li.name), h("td", {}, badge(li.status)), h("td", { class: "num" }, li.priority),
            h("td", { class: "num" }, fmtMoney(li.bid_cpm)), h("td", {}, h("code", {}, li.targeting || "everyone")),
            h("td", {}, li.start ? `${fmtDate(li.start)} → ${fmtDate(li.end)}` : "campaign's"),
            h("td", {}, links[i] === null ? "—" : links[i].map((c) => (typeof c === "object" ? c.name ?? c.id : c)).join(", ") || "none"),
            h("td", {}, statusButtons("line-items", li), " ", editButton("line-items", li,
              [["name", "Name", "text"], ["targeting", "Targeting", "text"], ["priority", "Priority", "number"], ["bid_cpm", "Bid CPM", "number"]])))),
            { numeric: [2, 3] }),
          canWrite ? createForm("Create line item", [
            ["name", "Line item name", "text"], ["targeting", "Targeting", "text", "", { class: "wide", size: 40 }],
            ["priority", "Priority", "number", "5"], ["bid_cpm", "Bid CPM", "number", "10"],
          ], (v) => post("/v1/line-items", {
            campaign_id: st.campaign, name: v.name, targeting: v.targeting, priority: Number(v.priority), bid_cpm: Number(v.bid_cpm),
          })) : null,
          canWrite && items.length && creatives.creatives.length ? createForm("Attach creative", [
            ["line_item", "Line item", "select", items.map((li) => [li.id, li.name])],
            ["creative", "Creative", "select", creatives.creatives.map((c) => [c.id, `${c.name} (${c.format})`])],
          ], (v) => post(`/v1/line-items/${v.line_item}/creatives`, { creative_id: Number(v.creative) })
            .then((r) => ({ name: `link of creative ${r.creative_id} to line item ${r.line_item_id}` }))) : null));
      }
      const formats = canWrite ? (await get("/v1/ad-formats").catch(() => ({ ad_formats: [] }))).ad_formats : [];
      sections.push(h("section", { "aria-labelledby": "h-cr" }, h("h2", { id: "h-cr" }, "Creatives"),
        table(["Name", "Format", "Status", "Approval"], creatives.creatives.map((c) => h("tr", {},
          h("td", {}, c.name), h("td", {}, c.format), h("td", {}, badge(c.status)), h("td", {}, c.approval_status ?? "—")))),
        canWrite ? createForm("Create creative", [
          ["name", "Creative name", "text"],
          ["format", "Format", "select", formats.map((f) => [f.name, f.name])],
          ["attributes", "Attributes (JSON)", "textarea", "{}"],
        ], (v) => {
          let attributes;
          try { attributes = JSON.parse(v.attributes || "{}"); } catch (e) { throw new Error(`Attributes must be JSON: ${e.message}`); }
          return post("/v1/creatives", { advertiser_id: st.advertiser, name: v.name, format: v.format, attributes });
        }) : null));
    }
    lists.replaceChildren(...sections);
  }

  root.append(
    h("h1", { tabindex: "-1" }, "Campaigns"),
    h("div", { class: "grid", style: "grid-template-columns: 3fr 1fr" },
      h("div", {}, alert, note, lists),
      h("aside", { class: "panel", "aria-labelledby": "h-hist" },
        h("div", { class: "toolbar" }, undo, redo),
        h("h2", { id: "h-hist" }, "Your changes"),
        canWrite ? null : h("p", { class: "muted" }, "Your key may read only: nothing here can be changed with it."),
        history)),
  );
  await refresh();
}
