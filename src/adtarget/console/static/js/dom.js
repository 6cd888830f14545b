// Tiny DOM helpers: build elements without innerHTML on user data (no injection).
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

let ids = 0;
export const uid = (p = "f") => `${p}-${++ids}`;

/** A labelled control: returns [wrapper, control]. */
export function field(labelText, control, { hint } = {}) {
  control.id ||= uid();
  const label = h("label", { for: control.id }, labelText);
  const wrap = h("div", {}, label, control);
  if (hint) {
    const hid = uid("hint");
    control.setAttribute("aria-describedby", hid);
    wrap.append(h("small", { id: hid, class: "muted" }, hint));
  }
  return [wrap, control];
}

export function table(headers, rows, { caption, numeric = [] } = {}) {
  return h(
    "table", {},
    caption ? h("caption", { class: "muted", style: "text-align:left" }, caption) : null,
    h("thead", {}, h("tr", {}, headers.map((t, i) =>
      h("th", { scope: "col", class: numeric.includes(i) ? "num" : null }, t)))),
    h("tbody", {}, rows),
  );
}

export const badge = (status) => h("span", { class: `badge ${status}` }, status);
export const fmtInt = (n) => (n === null || n === undefined ? "—" : Number(n).toLocaleString("en-US"));
export const fmtMoney = (n) =>
  n === null || n === undefined ? "—" : Number(n).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
export const fmtDate = (s) => (s ? String(s).slice(0, 10) : "—");

export function debounce(fn, ms) {
  let t;
  return (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms); };
}

/** Set the text of a live region (announced by screen readers). */
export function say(el, text) { el.textContent = text; }
