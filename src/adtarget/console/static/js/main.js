// The console shell: sign-in, who is signed in, hash routing between the pages.
import { api, ApiError, getKey, inWords, setKey } from "./api.js";
import { h, field } from "./dom.js";

const PAGES = {
  audience: () => import("./audience.js"),
  campaigns: () => import("./campaigns.js"),
  uploads: () => import("./uploads.js"),
  reports: () => import("./reports.js"),
  why: () => import("./why.js"),
};
const main = document.getElementById("main");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
const signout = document.getElementById("signout");
export const session = { me: null };

async function whoami() {
  try {
    return await api("GET", "/v1/me");
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return null;
    throw err;
  }
}

function signInPage(message) {
  nav.hidden = true;
  signout.hidden = true;
  who.textContent = "";
  const [keyWrap, keyInput] = field(
    "API key",
    h("input", { type: "text", class: "key", autocomplete: "off", spellcheck: "false", required: true }),
    { hint: "Made with `adtarget keys create --role admin|advertiser|reader`; kept only in this tab." },
  );
  const alert = h("div", { role: "alert" }, message || "");
  const form = h("form", { class: "panel", style: "max-width:560px" },
    h("h1", {}, "Sign in"),
    h("p", { class: "muted" }, "The console uses the same keys as the API: what your key may do here is what it may do there."),
    keyWrap, alert,
    h("p", {}, h("button", { type: "submit" }, "Sign in")),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    setKey(keyInput.value.trim());
    const me = await whoami().catch(() => null);
    if (!me) {
      setKey("");
      alert.textContent = "That key was not accepted: check it, or make one with `adtarget keys create`.";
      keyInput.focus();
      return;
    }
    start(me);
  });
  main.replaceChildren(form);
  keyInput.focus();
}

function describe(me) {
  if (me.open) return "open mode (no keys exist; loopback only)";
  const scope = me.advertiser_id ? ` of advertiser ${me.advertiser_id}` : "";
  return `signed in as ${me.role}${scope} (${me.actor})`;
}

async function route() {
  if (!session.me) return;
  const name = (location.hash.match(/^#\/(\w+)/) || [])[1] || "audience";
  const load = PAGES[name] || PAGES.audience;
  for (const a of nav.querySelectorAll("a")) {
    if (a.getAttribute("href") === `#/${name}`) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const mod = await load();
  const root = h("div", { class: `page page-${name}` });
  main.replaceChildren(root);
  try {
    await mod.render(root, session);
  } catch (err) {
    root.append(h("div", { role: "alert" }, inWords(err)));
  }
  document.title = `${root.querySelector("h1")?.textContent || "console"} · adtarget`;
}

function start(me) {
  session.me = me;
  nav.hidden = false;
  who.textContent = describe(me);
  signout.hidden = me.open;
  if (!location.hash) location.hash = "#/audience";
  else route();
}

signout.addEventListener("click", () => {
  setKey("");
  session.me = null;
  signInPage("Signed out.");
});
window.addEventListener("hashchange", () => {
  route().then(() => main.querySelector("h1")?.focus?.());
});

(async () => {
  try {
    const me = await whoami();
    if (me) start(me);
    else signInPage(getKey() ? "Your saved key is no longer accepted; sign in again." : "");
  } catch (err) {
    main.replaceChildren(h("div", { role: "alert" }, inWords(err)));
  }
})();
