// Rule completion: dimension names, operators and values from GET /v1/audiences/vocabulary.
const KEYWORDS = ["and", "or", "not"];
const OPS = {
  category: ["= ", "!= ", "in (", "not in (", "is missing", "is not missing"],
  set: ["has any (", "has all (", "is missing", "is not missing"],
  number: ["between ", ">= ", "<= ", "> ", "< ", "= ", "is missing"],
  bool: ["= true", "= false", "is missing"],
};
const quote = (v) => `"${String(v).replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;

/**
 * Suggestions for the text before the cursor: {from, items: [{text, label, kind}]}.
 * `from` is where the partial word starts (it is replaced by the chosen text).
 */
export function suggest(before, vocab) {
  const dims = new Map((vocab?.dimensions || []).map((d) => [d.name, d]));
  const inString = ((before.match(/"/g) || []).length % 2) === 1;
  const partial = inString ? before.match(/"[^"]*$/) : before.match(/[A-Za-z_][\w.\-]*$/);
  const word = partial ? partial[0] : "";
  const from = before.length - word.length;
  const head = before.slice(0, from);
  const lower = word.replace(/^"/, "").toLowerCase();
  const starts = (s) => String(s).toLowerCase().startsWith(lower);

  // inside segment("...
  if (/segment\s*\(\s*$/i.test(head)) {
    const items = (vocab?.segments || []).filter(starts).map((s) => ({ text: `${quote(s)})`, label: s, kind: "segment" }));
    return { from, items };
  }
  // a value: after `dim =`, `dim !=`, `dim in (`, `dim has any (`, or after a comma in such a list
  const valueCtx = head.match(/([A-Za-z_][\w.]*)\s*(?:!?=|\s(?:not\s+)?in\s*\(|\shas\s+(?:any|all)\s*\()\s*(?:(?:"[^"]*"|[\w.\-]+)\s*,\s*)*$/i);
  if (valueCtx && dims.has(valueCtx[1])) {
    const dim = dims.get(valueCtx[1]);
    const values = dim.values || [];
    const items = values.filter(starts).slice(0, 50).map((v) => ({
      text: typeof v === "boolean" ? String(v) : quote(v), label: String(v), kind: dim.name,
    }));
    return { from, items };
  }
  // an operator: right after a known dimension name
  const opCtx = head.match(/([A-Za-z_][\w.]*)\s+$/);
  if (opCtx && dims.has(opCtx[1]) && !KEYWORDS.includes(opCtx[1].toLowerCase())) {
    const ops = OPS[dims.get(opCtx[1]).type] || OPS.category;
    return { from, items: ops.filter(starts).map((o) => ({ text: o, label: o.trim(), kind: "operator" })) };
  }
  if (!word || word.startsWith('"')) return { from, items: [] };
  // a dimension, keyword or segment reference
  const items = [
    ...[...dims.values()].filter((d) => starts(d.name)).map((d) => ({ text: `${d.name} `, label: d.name, kind: d.type })),
    ...KEYWORDS.filter(starts).map((k) => ({ text: `${k} `, label: k, kind: "keyword" })),
    ...(starts("segment") ? [{ text: "segment(", label: "segment(\"…\")", kind: "saved audience" }] : []),
  ];
  return { from, items: items.slice(0, 50) };
}
