// Ask: pick Datanets and an adapter, see the price, ask; the answer streams in with a chip per
// citation that opens the passage, and a sources panel lists every passage offered.

import { all, api, get, me, apiKey, stream, tokens, TOKEN, short } from "./api.js";
import { h, fill, field, errorBox, loading, table, uid, empty } from "./dom.js";

export async function askPage(preselect) {
  const [datanets, adapters] = await Promise.all([all("/v1/datanets"), all("/v1/adapters").catch(() => [])]);
  const page = h("div", { class: "ask" });
  const heading = h("h1", {}, "Ask a cited question");
  if (!datanets.length) {
    return h("div", {}, heading, empty("There is no Datanet you can read yet.", h("a", { href: "#/datanets" }, "Create one or request access")));
  }

  const question = h("textarea", { rows: "3", required: true, maxlength: "8192", placeholder: "What is the longest river in North America?" });
  const chosen = new Set([datanets.some((d) => d.name === preselect) ? preselect : datanets[0].name]);
  const boxes = h(
    "fieldset",
    { class: "datanets" },
    h("legend", {}, "Datanets"),
    datanets.map((d) => {
      const box = h("input", { type: "checkbox", value: d.name, checked: chosen.has(d.name), id: uid("dn") });
      box.addEventListener("change", () => {
        if (box.checked) chosen.add(d.name);
        else chosen.delete(d.name);
        quote();
      });
      return h(
        "div",
        { class: "check" },
        box,
        h("label", { for: box.id }, d.name, d.visibility === "private" ? h("span", { class: "badge" }, "private") : null),
      );
    }),
  );
  const adapter = h(
    "select",
    {},
    h("option", { value: "" }, "Base model"),
    adapters.map((a) => h("option", { value: a.id }, a.id)),
  );
  adapter.addEventListener("change", () => quote());
  const k = h("select", {}, [3, 5, 8].map((n) => h("option", { value: String(n) }, `${n} passages`)));
  const price = h("div", { class: "price", "aria-live": "polite" });
  const submit = h("button", { type: "submit", class: "primary" }, "Ask");
  const stop = h("button", { type: "button", class: "secondary", hidden: true }, "Stop");
  const form = h(
    "form",
    { class: "card ask-form" },
    field("Question", question),
    h("div", { class: "row" }, boxes, h("div", { class: "col" }, field("Adapter", adapter), field("Retrieve", k))),
    price,
    h("div", { class: "actions" }, stop, submit),
  );
  question.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) form.requestSubmit();
  });
  const result = h("div", { class: "result" });
  page.append(heading, form, result);

  const selection = () => ({ datanets: [...chosen], adapters: adapter.value ? [{ id: adapter.value }] : [] });
  let quoted = 0;
  async function quote() {
    const mine = ++quoted;
    const sel = selection();
    if (!sel.datanets.length) {
      fill(price, h("p", { class: "warn" }, "Pick at least one Datanet."));
      return;
    }
    try {
      // A quote names adapters by id; an answer takes {id, weight} choices.
      const priced = { datanets: sel.datanets, adapters: sel.adapters.map((a) => a.id) };
      const [q, who] = await Promise.all([api("POST", "/v1/quotes", priced), apiKey() ? me() : Promise.resolve({})]);
      let balance = null;
      if (who.address) balance = await get(`/v1/accounts/${who.address}`).catch(() => null);
      if (mine !== quoted) return;
      fill(price, priceLine(q, balance));
    } catch (e) {
      if (mine === quoted) fill(price, errorBox(e));
    }
  }
  quote();

  let controller = null;
  stop.addEventListener("click", () => controller && controller.abort());
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!question.value.trim()) return;
    const body = { question: question.value.trim(), ...selection(), k: Number(k.value) };
    controller = new AbortController();
    submit.disabled = true;
    stop.hidden = false;
    try {
      await answer(result, body, controller.signal);
    } finally {
      submit.disabled = false;
      stop.hidden = true;
      controller = null;
      quote();
    }
  });
  return page;
}

function priceLine(q, balance) {
  const fee = `${tokens(q.fee)} ${TOKEN}`;
  const lines = [];
  if (q.billing === "payer") lines.push(h("p", {}, "This answer costs ", h("strong", {}, fee), ", paid from your balance."));
  else if (q.billing === "sponsor") lines.push(h("p", {}, "This answer costs ", h("strong", {}, fee), ", paid by the Datanet's sponsor budget."));
  else if (q.billing === "unpaid") lines.push(h("p", {}, `This answer would cost ${fee}; asked without a funded key it is free and credits no one.`));
  else lines.push(h("p", { class: "warn" }, `This answer costs ${fee} and nobody can pay for it: sign in with a funded key, or `, h("a", { href: "#/payer" }, "deposit"), "."));
  if (balance) {
    lines.push(h("p", { class: "muted" }, `Your balance: ${tokens(balance.balance)} ${TOKEN}`, BigInt(balance.held) > 0n ? ` (${tokens(balance.held)} held for answers in progress)` : ""));
  }
  return lines;
}

/** Runs one question and renders its answer, sources and receipt into `out`. */
async function answer(out, body, signal) {
  const text = h("div", { class: "answer-text", "aria-live": "off" });
  const status = h("div", { class: "muted", role: "status" }, loading("Searching the Datanets"));
  const sourcesList = h("ol", { class: "sources" });
  const sourcesPanel = h(
    "aside",
    { class: "card sources-panel", "aria-labelledby": "sources-title" },
    h("h2", { id: "sources-title" }, "Sources"),
    sourcesList,
  );
  const receiptBox = h("div", { class: "receipt" });
  const answerCard = h(
    "article",
    { class: "card answer", "aria-labelledby": "answer-title", "aria-busy": "true" },
    h("h2", { id: "answer-title" }, "Answer"),
    status,
    text,
    receiptBox,
  );
  fill(out, h("div", { class: "answer-grid" }, answerCard, sourcesPanel));

  const state = { passages: [], draft: "", answer: null, card: null };
  const chipFor = (n) => chip(n, state);
  try {
    await stream(
      "/v1/answers",
      body,
      {
        sources(data) {
          state.passages = data.passages;
          fill(status, state.passages.length ? loading("Writing") : "");
          renderSources(sourcesList, state);
        },
        token(data) {
          state.draft += data.text;
          fill(text, withChips(state.draft, chipFor));
        },
        answer(data) {
          state.answer = data;
          answerCard.setAttribute("aria-busy", "false");
          fill(status, verdict(data));
          fill(text, sentences(data, chipFor));
          renderSources(sourcesList, state);
        },
        receipt(data) {
          fill(receiptBox, receipt(data));
        },
        error(problem) {
          answerCard.setAttribute("aria-busy", "false");
          fill(status, errorBox(problem));
        },
      },
      signal,
    );
  } catch (e) {
    answerCard.setAttribute("aria-busy", "false");
    if (e.name === "AbortError") fill(status, h("p", { class: "warn" }, "Stopped. Nothing was recorded or charged."));
    else fill(status, errorBox(e));
  }
}

/** The streamed text with each `[n]` marker as a chip. */
function withChips(textValue, chipFor) {
  const parts = [];
  const re = /\[(\d+(?:\s*,\s*\d+)*)\]/g;
  let last = 0;
  for (const m of textValue.matchAll(re)) {
    parts.push(textValue.slice(last, m.index));
    for (const n of m[1].split(",")) parts.push(chipFor(Number(n.trim())));
    last = m.index + m[0].length;
  }
  parts.push(textValue.slice(last));
  return h("p", {}, parts);
}

function verdict(a) {
  if (!a.citations.length) {
    return h(
      "p",
      { class: "notice" },
      h("strong", {}, "Not found. "),
      a.sources_offered ? "The passages found do not answer this question, so nothing is cited." : "Nothing in these Datanets matches this question.",
    );
  }
  const s = a.stats;
  const checked = [];
  if (s.repaired) checked.push(`${s.repaired} rewritten`);
  if (s.quoted) checked.push(`${s.quoted} quoted from the source`);
  if (s.dropped) checked.push(`${s.dropped} left out`);
  return h(
    "p",
    { class: a.grounded ? "ok" : "warn" },
    a.grounded ? "Every sentence is supported by a cited passage." : "Some sentences are not supported by any passage; they credit no one.",
    checked.length ? ` The fact check changed sentences: ${checked.join(", ")}.` : "",
  );
}

/** The checked answer: each sentence with its chips; unsupported ones marked. */
function sentences(a, chipFor) {
  return h(
    "p",
    {},
    a.sentences.map((s, i) => {
      // A "not found" answer states nothing, so nothing in it is unsupported.
      const unsupported = !s.citations.length && a.sources_offered > 0;
      const note = unsupported
        ? s.unsupported_facts && s.unsupported_facts.length
          ? `Not supported: no cited passage states ${s.unsupported_facts.join(", ")}.`
          : "Not supported by a passage."
        : s.origin === "quoted"
          ? "Quoted from the passage."
          : s.origin === "repaired"
            ? "Rewritten from the passage after the fact check."
            : null;
      return h(
        "span",
        { class: `sentence${unsupported ? " unsupported" : ""}`, id: `sentence-${i + 1}`, title: note },
        s.text,
        s.citations.map(chipFor),
        unsupported ? h("span", { class: "sr-only" }, ` (${note})`) : null,
        " ",
      );
    }),
  );
}

function chip(n, state) {
  const p = state.passages[n - 1];
  const label = p ? `Source ${n}: ${p.document}, ${p.datanet}` : `Source ${n}`;
  const btn = h("button", { type: "button", class: "chip", "aria-label": label, "aria-haspopup": "dialog", dataset: { n: String(n) } }, String(n));
  btn.addEventListener("click", () => openCard(btn, n, state));
  return btn;
}

/** The words two texts share, to find the passage sentence a citing sentence rests on. */
const STOP = new Set("the a an and or of to in on at by for with from is are was were be been it its this that as which who what when where how".split(" "));
function words(text) {
  return new Set((text.toLowerCase().match(/[\p{L}\p{N}]+/gu) || []).filter((w) => w.length > 1 && !STOP.has(w)));
}

/** The passage with the sentence that best supports `citing` marked. */
export function highlighted(passage, citing) {
  const parts = passage.match(/[^.!?]+(?:[.!?]+["')\]]*\s*|$)/g) || [passage];
  const want = words(citing.join(" "));
  let best = -1;
  let bestScore = 0;
  parts.forEach((part, i) => {
    let score = 0;
    for (const w of words(part)) if (want.has(w)) score += 1;
    if (score > bestScore) [best, bestScore] = [i, score];
  });
  return parts.map((part, i) => (i === best ? h("mark", {}, part) : part));
}

function citingSentences(state, n) {
  return state.answer ? state.answer.sentences.filter((s) => s.citations.includes(n)) : [];
}

function docLink(p) {
  return `#/doc/${encodeURIComponent(p.datanet)}/${p.document_id}/${p.chunk_id}`;
}

function openCard(anchor, n, state) {
  closeCard(state);
  const p = state.passages[n - 1];
  const titleId = uid("card");
  const close = h("button", { type: "button", class: "icon", "aria-label": "Close" }, "×");
  const citing = citingSentences(state, n);
  const card = h(
    "div",
    { class: "cite-card", role: "dialog", "aria-labelledby": titleId },
    h("div", { class: "cite-head" }, h("h3", { id: titleId }, `[${n}] `, p ? p.document : "Unknown source"), close),
    p
      ? [
          h("p", { class: "meta" }, "Datanet ", h("strong", {}, p.datanet), " · contributor ", h("a", { href: `#/contributor/${p.contributor}` }, short(p.contributor))),
          h("blockquote", { class: "passage", tabindex: "0" }, highlighted(p.text, citing.map((s) => s.text))),
          citing.length ? h("p", { class: "muted" }, `Cited by ${citing.length === 1 ? "1 sentence" : `${citing.length} sentences`}.`) : null,
          h("a", { class: "button-link", href: docLink(p) }, "Open in the document"),
        ]
      : h("p", {}, "This marker does not match a passage that was offered."),
  );
  const finish = () => {
    closeCard(state);
    anchor.focus();
  };
  close.addEventListener("click", finish);
  card.addEventListener("keydown", (e) => {
    if (e.key === "Escape") finish();
  });
  // Inside the page, so that leaving the page takes the card with it.
  document.getElementById("main").append(card);
  const r = anchor.getBoundingClientRect();
  if (window.innerWidth > 640) {
    const left = Math.min(window.scrollX + r.left, window.scrollX + window.innerWidth - card.offsetWidth - 16);
    card.style.left = `${Math.max(8, left)}px`;
    card.style.top = `${window.scrollY + r.bottom + 6}px`;
  }
  anchor.setAttribute("aria-expanded", "true");
  state.card = { card, anchor, outside: (e) => !card.contains(e.target) && e.target !== anchor && closeCard(state) };
  document.addEventListener("mousedown", state.card.outside);
  close.focus();
}

window.addEventListener("hashchange", () => {
  for (const card of document.querySelectorAll(".cite-card")) card.remove();
});

function closeCard(state) {
  if (!state.card) return;
  state.card.card.remove();
  state.card.anchor.setAttribute("aria-expanded", "false");
  document.removeEventListener("mousedown", state.card.outside);
  state.card = null;
}

function renderSources(list, state) {
  if (!state.passages.length) {
    fill(list, h("li", { class: "muted" }, "No passage matched."));
    return;
  }
  fill(
    list,
    state.passages.map((p, i) => {
      const n = i + 1;
      const citing = state.answer ? state.answer.sentences.map((s, j) => (s.citations.includes(n) ? j + 1 : 0)).filter(Boolean) : [];
      const cited = state.answer ? (citing.length ? `Cited by sentence${citing.length > 1 ? "s" : ""} ${citing.join(", ")}` : "Not cited") : "";
      return h(
        "li",
        { class: citing.length ? "cited" : "", id: `source-${n}` },
        h("div", { class: "source-head" }, h("span", { class: "num", "aria-hidden": "true" }, String(n)), h("a", { href: docLink(p) }, p.document)),
        h("p", { class: "meta" }, `${p.datanet} · `, h("a", { href: `#/contributor/${p.contributor}` }, short(p.contributor)), ` · relevance ${p.score.toFixed(2)}`),
        h("details", {}, h("summary", {}, excerpt(p.text)), h("p", { class: "passage" }, p.text)),
        cited ? h("p", { class: citing.length ? "ok small" : "muted small" }, cited) : null,
      );
    }),
  );
}

function excerpt(text) {
  return text.length > 140 ? `${text.slice(0, 140).trimEnd()}…` : text;
}

/** The training data a trained adapter's answer credited: chunks per adapter, with how many
 * of its influential training examples hold each. */
function trainedOn(trained) {
  if (!trained.length) return [];
  const adapters = [...new Set(trained.map((t) => t.adapter))];
  return [
    h("dt", {}, "Trained on"),
    h(
      "dd",
      { class: "trained-on" },
      adapters.map((a) => {
        const chunks = trained.filter((t) => t.adapter === a);
        const examples = new Set(chunks.flatMap((t) => t.examples)).size;
        return h(
          "p",
          {},
          `${a}: ${chunks.length} chunk${chunks.length === 1 ? "" : "s"} of ${examples} influential training example${examples === 1 ? "" : "s"} `,
          chunks.map((t, i) => [i ? " " : "", h("code", { title: `${t.chunk_id} (weight ${t.weight})` }, t.chunk_id.slice(0, 10))]),
        );
      }),
    ),
  ];
}

function receipt(r) {
  const paidBy = r.payment ? r.payment.paid_by : "unpaid";
  const payer = r.payment && r.payment.payer ? r.payment.payer : null;
  const who = paidBy === "payer" ? `paid by ${short(payer)}` : paidBy === "sponsor" ? "paid by the Datanet's sponsor" : "unpaid: nobody was credited";
  const credits = r.credits.map((c) => [
    c.account.startsWith("0x") ? h("a", { href: `#/contributor/${c.account}` }, short(c.account)) : c.account,
    c.role.replaceAll("_", " "),
    h("span", { class: "amt" }, `${tokens(c.amount)} ${TOKEN}`),
    c.datanet || "",
    c.chunk_id ? h("code", { title: c.chunk_id }, c.chunk_id.slice(0, 10)) : "",
  ]);
  return h(
    "details",
    { class: "receipt-details" },
    h("summary", {}, `Fee ${tokens(r.fee)} ${TOKEN}, ${who} · receipt and ${r.credits.length} credit${r.credits.length === 1 ? "" : "s"}`),
    credits.length ? table("Who got how much", ["Account", "Role", "Amount", "Datanet", "Chunk"], credits) : h("p", { class: "muted" }, "No credits."),
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "Receipt"),
      h("dd", {}, h("code", {}, r.id)),
      h("dt", {}, "Hash"),
      h("dd", {}, h("code", { class: "wrap" }, r.hash)),
      h("dt", {}, "Weighting"),
      h("dd", {}, r.weighting),
      ...trainedOn(r.trained || []),
    ),
  );
}
