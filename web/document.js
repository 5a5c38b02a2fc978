// A document with the chunk a citation points to highlighted and scrolled to.

import { get, short, byteSlicer } from "./api.js";
import { h } from "./dom.js";

export async function documentPage(datanet, id, chunk) {
  const doc = await get(`/v1/datanets/${encodeURIComponent(datanet)}/documents/${id}`);
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
  );
}
