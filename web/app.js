// The shell: sign-in, navigation (hash routes) and the pages.

import { ApiError, me, setApiKey, apiKey, short } from "./api.js";
import { h, fill, errorBox, loading } from "./dom.js";
import { askPage } from "./ask.js";
import { documentPage } from "./document.js";
import { contributorPage } from "./contributor.js";
import { datanetsPage, datanetPage } from "./datanets.js";
import { payerPage, adaptersPage } from "./accounts.js";
import { trainingPage } from "./factory.js";

const routes = [
  [/^#?\/?(ask)?$/, "ask", () => askPage()],
  [/^#\/ask\/([^/]+)$/, "ask", (m) => askPage(decodeURIComponent(m[1]))],
  [/^#\/doc\/([^/]+)\/(\d+)(?:\/([0-9a-f]{64}))?$/, "ask", (m) => documentPage(decodeURIComponent(m[1]), Number(m[2]), m[3])],
  [/^#\/contributor(?:\/(0x[0-9a-fA-F]{40}))?$/, "contributor", (m) => contributorPage(m[1])],
  [/^#\/datanets$/, "datanets", () => datanetsPage()],
  [/^#\/datanets\/([^/]+)$/, "datanets", (m) => datanetPage(decodeURIComponent(m[1]))],
  [/^#\/payer$/, "payer", () => payerPage()],
  [/^#\/adapters$/, "adapters", () => adaptersPage()],
  [/^#\/training\/([^/]+)$/, "adapters", (m) => trainingPage(decodeURIComponent(m[1]))],
];

let generation = 0;

async function render() {
  const main = document.getElementById("main");
  const hash = location.hash || "#/ask";
  const found = routes.map(([re, nav, page]) => [re.exec(hash), nav, page]).find(([m]) => m);
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (found && link.dataset.nav === found[1]) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const mine = ++generation;
  fill(main, loading());
  let content;
  try {
    content = found
      ? await found[2](found[0])
      : h("div", {}, h("h1", {}, "Not found"), h("p", {}, "There is no page here. "), h("a", { href: "#/ask" }, "Ask a question"));
  } catch (e) {
    content = h("div", {}, h("h1", {}, "This page could not load"), errorBox(e));
  }
  if (mine !== generation) return; // a later navigation won
  fill(main, content);
  const heading = main.querySelector("h1");
  if (heading) document.title = `${heading.textContent} · Tributary`;
}

/** Re-renders the current page (after sign-in or sign-out). */
export function refresh() {
  renderSession();
  render();
}

async function renderSession() {
  const box = document.getElementById("session");
  if (!apiKey()) {
    fill(box, h("button", { type: "button", id: "signin-open", onclick: openSignIn }, "Sign in"));
    return;
  }
  try {
    const who = await me();
    fill(
      box,
      h("span", { class: "who", title: who.address || "" }, h("span", { class: "role" }, who.role), " ", who.address ? short(who.address) : who.label || ""),
      h("button", { type: "button", class: "secondary", onclick: signOut }, "Sign out"),
    );
  } catch {
    setApiKey("");
    fill(box, h("button", { type: "button", id: "signin-open", onclick: openSignIn }, "Sign in"));
  }
}

function openSignIn() {
  const dialog = document.getElementById("signin");
  fill(document.getElementById("signin-error"));
  document.getElementById("signin-key").value = "";
  dialog.showModal();
}

function signOut() {
  setApiKey("");
  refresh();
}

function setUpSignIn() {
  const dialog = document.getElementById("signin");
  const form = document.getElementById("signin-form");
  document.getElementById("signin-cancel").addEventListener("click", () => dialog.close());
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = document.getElementById("signin-key").value.trim();
    const out = document.getElementById("signin-error");
    setApiKey(key);
    try {
      const who = await me();
      if (!who.role) throw new ApiError(401, { title: "Not signed in", detail: "Enter an API key." });
      dialog.close();
      refresh();
    } catch (e) {
      setApiKey("");
      fill(out, errorBox(e));
    }
  });
}

window.addEventListener("hashchange", render);
window.addEventListener("DOMContentLoaded", () => {
  setUpSignIn();
  // The skip link moves focus without touching the hash (the hash is the page).
  document.querySelector(".skip").addEventListener("click", (e) => {
    e.preventDefault();
    document.getElementById("main").focus();
  });
  refresh();
});
