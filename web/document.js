// A document with the chunk a citation points to highlighted and scrolled to.

import { api, apiKey, get, governs, me, short, byteSlicer, tokens, TOKEN } from "./api.js";
import { h, fill, field, busy, section } from "./dom.js";

export async function documentPage(datanet, id, chunk) {
  const path = `/v1/datanets/${encodeURIComponent(datanet)}`;
  const [doc, net, who] = await Promise.all([
    get(`${path}/documents/${id}`),
    get(path),
    apiKey() ? me().catch(() => ({})) : Promise.resolve({}),
  ]);
  const slice = byteSlicer(doc.text);
  const target = chunk ? doc.spans.find((s) => s.chunk_id === chunk) : null;
  const body = h("div", { class: "doc-text" });
  if (target) {
    body.append(
      slice(0, target.start),
      h("mark", { id: "cited", class: "cited-span", tabindex: "-1" }, slice(target.start, target.end)),
      slice(target.end, new TextEncoder().encode(doc.text).length),
    );
    // Scroll once the page is in the document.
    requestAnimationFrame(() => {
      const mark = document.getElementById("cited");
      if (mark) {
        mark.scrollIntoView({ block: "center" });
        mark.focus({ preventScroll: true });
      }
    });
  } else {
    body.append(doc.text);
  }
  const d = doc.document;
  return h(
    "div",
    { class: "document" },
    h("p", { class: "crumbs" }, h("a", { href: `#/datanets/${encodeURIComponent(doc.datanet)}` }, doc.datanet), " / document"),
    h("h1", {}, d.external_id),
    h(
      "p",
      { class: "meta" },
      `Contributed by `,
      h("a", { href: `#/contributor/${d.contributor}` }, short(d.contributor)),
      ` · ${d.license} · ${d.chunk_count} chunk${d.chunk_count === 1 ? "" : "s"}${d.duplicate_chunks ? ` (${d.duplicate_chunks} already in the Datanet)` : ""}`,
    ),
    chunk && !target ? h("p", { class: "warn" }, "The cited chunk is no longer in this document.") : null,
    target ? h("p", { class: "muted" }, "The cited passage is highlighted.") : null,
    h("article", { class: "card" }, body),
    governs(who, net) && target ? flagForm(path, target.chunk_id) : null,
  );
}

/** The Datanet's owner takes a passage out of retrieval from where they read it. */
function flagForm(path, chunk) {
  const reason = h("input", { type: "text", required: true, maxlength: "500", placeholder: "Why it should not be cited" });
  const out = h("div", { role: "status" });
  const submit = h("button", { type: "submit", class: "secondary" }, "Flag this passage");
  const form = h("form", { class: "inline-form" }, field("Reason", reason), h("div", { class: "actions" }, submit));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(submit, async () => {
      const flagged = await api("POST", `${path}/flags`, { chunk, reason: reason.value });
      const slashed = flagged.slashed_credits ? ` (${flagged.slashed_credits} credits, ${tokens(flagged.slashed)} ${TOKEN})` : "";
      fill(out, h("p", { class: "ok" }, `Flagged: the passage is out of retrieval, and its unsettled credits are slashed${slashed}.`));
    }, out);
  });
  return section("Owner: flag this passage", h("p", { class: "hint" }, "A flag can be lifted later on the Datanet's page; slashes stay."), form, out);
}
