// Small DOM helpers. Text always goes in as text nodes (never as HTML), so nothing a user or
// the API sends can become markup.

import { tokens, TOKEN } from "./api.js";

/** h("a", {href: "#/x", class: "link", onclick: fn}, "text", child, ...) */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      el.className = value;
    } else if (name === "dataset") {
      Object.assign(el.dataset, value);
    } else if (value === true) {
      el.setAttribute(name, "");
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

/** Replaces the children of `el`. */
export function fill(el, ...children) {
  return append(clear(el), children);
}

let ids = 0;
export function uid(prefix = "id") {
  ids += 1;
  return `${prefix}-${ids}`;
}

/** A labelled form control: the label is tied to the control by id. */
export function field(label, control, hint) {
  if (!control.id) control.id = uid("f");
  const hintEl = hint ? h("p", { class: "hint", id: `${control.id}-hint` }, hint) : null;
  if (hintEl) control.setAttribute("aria-describedby", hintEl.id);
  return h("div", { class: "field" }, h("label", { for: control.id }, label), control, hintEl);
}

export function section(title, ...children) {
  const id = uid("s");
  return h("section", { class: "card", "aria-labelledby": id }, h("h2", { id }, title), ...children);
}

export function loading(what = "Loading") {
  return h("p", { class: "loading", role: "status" }, h("span", { class: "spinner", "aria-hidden": "true" }), `${what}…`);
}

export function empty(text, ...more) {
  return h("div", { class: "empty" }, h("p", {}, text), ...more);
}

/** An error as a readable message (an API problem's title and detail). */
export function errorBox(error) {
  const title = error && error.title ? error.title : "Something went wrong";
  const detail = error && (error.detail || error.message) ? error.detail || error.message : String(error);
  return h(
    "div",
    { class: "error", role: "alert" },
    h("strong", {}, title),
    h("p", {}, detail),
    error && error.code ? h("p", { class: "code" }, `Code: ${error.code}`) : null,
  );
}

export function time(ms) {
  if (!ms && ms !== 0) return "";
  const d = new Date(ms);
  return h("time", { datetime: d.toISOString() }, d.toLocaleString());
}

/** A table from column titles and rows of cells. */
export function table(caption, columns, rows) {
  return h(
    "div",
    { class: "table-wrap", tabindex: "0", role: "region", "aria-label": caption },
    // Explicit roles: on a phone the rows stack as cards (each cell showing its column's
    // title), and a table restyled so keeps its semantics only when they are spelled out.
    h(
      "table",
      { role: "table" },
      h("caption", { class: "sr-only" }, caption),
      h("thead", { role: "rowgroup" }, h("tr", { role: "row" }, columns.map((c) => h("th", { scope: "col", role: "columnheader" }, c)))),
      h(
        "tbody",
        { role: "rowgroup" },
        rows.map((cells) => h("tr", { role: "row" }, cells.map((c, i) => h("td", { role: "cell", dataset: { label: columns[i] || "" } }, c)))),
      ),
    ),
  );
}

export function button(label, onclick, props = {}) {
  return h("button", { type: "button", ...props, onclick }, label);
}

/** Runs `task` with the button disabled and busy; shows the error in `out` if it fails. */
export async function busy(btn, task, out) {
  btn.disabled = true;
  btn.setAttribute("aria-busy", "true");
  try {
    return await task();
  } catch (e) {
    if (out) fill(out, errorBox(e));
    else throw e;
  } finally {
    btn.disabled = false;
    btn.removeAttribute("aria-busy");
  }
}

/** "1 chunk", "3 chunks". */
export function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

/** Renders the current page again (after a change it shows). */
export function rerender() {
  window.dispatchEvent(new HashChangeEvent("hashchange"));
}

/** A tile with an amount in tokens; `data-amount` keeps the exact units. */
export function amountStat(label, amount, props = {}) {
  const dataset = { ...(props.dataset || {}), amount };
  return h("div", { class: "stat" }, h("span", { class: "stat-label" }, label), h("span", { class: "stat-value", ...props, dataset }, `${tokens(amount)} ${TOKEN}`));
}
