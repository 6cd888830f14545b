// Uploads: pick a feature file, watch the job's progress, read counts and rejected rows, roll back.
import { ApiError, authHeaders, get, inWords, post } from "./api.js";
import { badge, field, fmtDate, fmtInt, h, say, table } from "./dom.js";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** POST the file as multipart with upload progress (fetch has no upload progress events). */
function send(form, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/v1/uploads");
    for (const [k, v] of Object.entries(authHeaders())) xhr.setRequestHeader(k, v);
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded, e.total);
    xhr.onload = () => {
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new ApiError(xhr.status, body.error || { message: `HTTP ${xhr.status}` }));
    };
    xhr.onerror = () => reject(new ApiError(0, { code: "network", message: "no answer" }));
    xhr.send(form);
  });
}

export async function render(root, session) {
  const isAdmin = session.me.role === "admin";
  const file = h("input", { type: "file", accept: ".csv,.parquet,.jsonl,.json,.ndjson" });
  const mode = h("select", {}, ["replace", "upsert", "segment"].map((m) => h("option", { value: m }, m)));
  const segment = h("input", { type: "text" });
  const progress = h("progress", { max: "100", value: "0", "aria-label": "Upload progress" });
  const status = h("p", { role: "status", "aria-live": "polite" }, isAdmin ? "Pick a feature file (CSV, Parquet or JSONL with a user_id column)." : "Only admin keys may upload; you can read past uploads.");
  const alert = h("div", { role: "alert" });
  const result = h("div");
  const jobs = h("div");
  const snaps = h("div");

  async function watch(id) {
    for (;;) {
      const job = await get(`/v1/uploads/${id}`);
      const total = job.report?.total_rows;
      if (job.status === "succeeded" || job.status === "failed") {
        progress.value = 100;
        return job;
      }
      if (total) progress.value = Math.min(99, Math.round((100 * job.rows_read) / total));
      else progress.removeAttribute("value"); // indeterminate: the reader does not know the total
      say(status, `Job ${id.slice(0, 8)} ${job.status}${job.report?.stage ? ` (${job.report.stage})` : ""}: ${fmtInt(job.rows_read)} rows read${total ? ` of ${fmtInt(total)}` : ""}.`);
      await sleep(400);
    }
  }

  async function showJob(job) {
    const rows = [
      ["Status", badge(job.status)], ["Mode", job.mode + (job.segment ? ` (segment ${job.segment})` : "")],
      ["Rows read", fmtInt(job.rows_read)], ["Rows accepted", fmtInt(job.rows_accepted)], ["Rows rejected", fmtInt(job.rows_rejected)],
      ["Snapshot published", job.snapshot ?? "none"], ["Previous snapshot", job.previous_snapshot ?? "none"],
    ];
    if (job.error) rows.push(["Error", job.error]);
    const parts = [h("h2", { id: "h-result" }, `Upload ${job.id.slice(0, 8)}`),
      h("table", { "aria-labelledby": "h-result" }, h("tbody", {}, rows.map(([k, v]) => h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, v)))))];
    if (job.rows_rejected) {
      const rej = await get(`/v1/uploads/${job.id}/rejected?limit=100`).catch(() => null);
      if (rej) parts.push(h("h3", {}, `Rejected rows (${fmtInt(rej.total)}${rej.rows.length < rej.total ? `, first ${rej.rows.length}` : ""})`),
        table(["Line", "Field", "Reason"], rej.rows.map((r) => h("tr", {}, h("td", { class: "num" }, r.line), h("td", {}, r.field ?? "—"), h("td", {}, r.reason))), { numeric: [0] }));
    }
    if (isAdmin && job.status === "succeeded" && job.previous_snapshot && job.snapshot) {
      parts.push(h("p", {}, h("button", { type: "button", class: "secondary", onclick: () => rollback(job.previous_snapshot) },
        `Roll back to ${job.previous_snapshot}`)));
    }
    result.replaceChildren(...parts);
  }

  async function rollback(version) {
    alert.replaceChildren();
    try {
      const r = await post("/v1/snapshots/rollback", { version });
      say(status, `Rolled back: audiences are now sized and served from ${r.current}.`);
    } catch (err) { alert.textContent = inWords(err); }
    await refresh();
  }

  async function refresh() {
    const [list, sn] = await Promise.all([
      get("/v1/uploads?limit=15").catch(() => ({ uploads: [] })),
      get("/v1/snapshots").catch(() => ({ snapshots: [], current: null })),
    ]);
    jobs.replaceChildren(h("h2", {}, "Recent uploads"), table(["Started", "File", "Status", "Read", "Accepted", "Rejected", "Snapshot", ""],
      list.uploads.map((j) => h("tr", {},
        h("td", {}, `${fmtDate(j.created_at)} ${String(j.created_at || "").slice(11, 19)}`),
        h("td", {}, String(j.source_path || "").split("/").pop().replace(/^[0-9a-f]{12}-/, "")),
        h("td", {}, badge(j.status)), h("td", { class: "num" }, fmtInt(j.rows_read)),
        h("td", { class: "num" }, fmtInt(j.rows_accepted)), h("td", { class: "num" }, fmtInt(j.rows_rejected)),
        h("td", {}, j.snapshot ?? "—"),
        h("td", {}, h("button", { type: "button", class: "small secondary", onclick: () => showJob(j) }, "Details")))),
      { numeric: [3, 4, 5] }));
    snaps.replaceChildren(h("h2", {}, "Snapshots"), table(["Version", "Created", "Users", ""],
      sn.snapshots.map((s) => h("tr", { class: s.version === sn.current ? "selected" : null },
        h("td", {}, s.version, s.version === sn.current ? " (serving)" : ""),
        h("td", {}, `${fmtDate(s.created_at)} ${String(s.created_at || "").slice(11, 19)}`),
        h("td", { class: "num" }, fmtInt(s.num_users)),
        h("td", {}, isAdmin && s.version !== sn.current
          ? h("button", { type: "button", class: "small secondary", onclick: () => rollback(s.version) }, `Roll back to ${s.version}`) : ""))),
      { numeric: [2] }));
  }

  const form = h("form", { class: "panel" },
    h("div", { class: "row" }, field("Feature file", file)[0], field("Mode", mode)[0], field("Segment name", segment, { hint: "for mode segment" })[0],
      h("div", {}, h("button", { type: "submit", disabled: !isAdmin }, "Upload"))),
    h("div", { style: "margin-top:10px" }, progress), status, alert);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    alert.replaceChildren();
    result.replaceChildren();
    if (!file.files.length) { alert.textContent = "Pick a file first."; file.focus(); return; }
    const body = new FormData();
    body.append("file", file.files[0]);
    body.append("mode", mode.value);
    if (segment.value.trim()) body.append("segment", segment.value.trim());
    progress.value = 0;
    try {
      const queued = await send(body, (done, total) => {
        progress.value = Math.round((30 * done) / total);
        say(status, `Sending ${file.files[0].name}: ${fmtInt(done)} of ${fmtInt(total)} bytes.`);
      });
      const job = await watch(queued.id);
      say(status, job.status === "succeeded"
        ? `Upload finished: ${fmtInt(job.rows_accepted)} rows accepted, ${fmtInt(job.rows_rejected)} rejected; snapshot ${job.snapshot ?? "unchanged"}.`
        : `Upload failed: ${job.error}`);
      await showJob(job);
    } catch (err) { alert.textContent = inWords(err); }
    await refresh();
  });

  root.append(h("h1", { tabindex: "-1" }, "Uploads"), form, result, h("div", { class: "grid" }, jobs, snaps));
  await refresh();
}
