// Earnings: what an address earned in total, per Datanet and per epoch, over time, and per
// citation; what it can claim, with the proof, and a claim button.

import { api, get, me, apiKey, tokens, TOKEN, isAddress, short } from "./api.js";
import { h, fill, field, errorBox, table, time, section, empty, busy, amountStat } from "./dom.js";

export async function contributorPage(address) {
  let who = {};
  if (apiKey()) who = await me().catch(() => ({}));
  const input = h("input", { type: "text", value: address || who.address || "", placeholder: "0x…", spellcheck: "false", autocomplete: "off", pattern: "^0x[0-9a-fA-F]{40}$" });
  const wallet = window.ethereum
    ? h("button", { type: "button", class: "secondary", onclick: async () => {
        const accounts = await window.ethereum.request({ method: "eth_requestAccounts" });
        if (accounts && accounts[0]) location.hash = `#/contributor/${accounts[0]}`;
      } }, "Use my wallet")
    : null;
  const form = h("form", { class: "card inline-form" }, field("Contributor address", input), h("div", { class: "actions" }, wallet, h("button", { type: "submit", class: "primary" }, "Show earnings")));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const value = input.value.trim();
    if (isAddress(value)) location.hash = `#/contributor/${value}`;
    else fill(out, errorBox({ title: "Not an address", detail: "An address is 0x followed by 40 hexadecimal digits." }));
  });
  const out = h("div", {});
  const page = h("div", { class: "contributor" }, h("h1", {}, "Contributor earnings"), form, out);
  const shown = address || who.address;
  if (!shown) {
    fill(out, empty("Type an address, or sign in with a key that has one, to see what its data earned."));
    return page;
  }
  const [earnings, proof, claimable] = await Promise.all([
    earningsOf(shown).catch((e) => e),
    get(`/v1/proofs/${shown}`).catch((e) => e),
    get(`/v1/claims/${shown}`).catch((e) => e),
  ]);
  fill(out, h("p", { class: "muted" }, "Address ", h("code", {}, shown)), earningsView(earnings), claimView(shown, proof, claimable));
  return page;
}

/** Every entry up to 5,000 (pages of 1,000), newest first in the table. */
async function earningsOf(address) {
  const first = await get(`/v1/earnings/${address}?limit=1000`);
  let cursor = first.next_cursor;
  while (cursor && first.entries.length < 5000) {
    const next = await get(`/v1/earnings/${address}?limit=1000&cursor=${encodeURIComponent(cursor)}`);
    first.entries.push(...next.entries);
    cursor = next.next_cursor;
  }
  first.more = Boolean(cursor);
  return first;
}

function earningsView(e) {
  if (e instanceof Error) {
    if (e.status === 401 || e.status === 403) {
      return section("Earnings", h("p", {}, "Earnings are shown to that address's own keys and to admins. ", apiKey() ? "This key has another address." : "Sign in with a key for this address."));
    }
    return section("Earnings", errorBox(e));
  }
  const stat = (kind, label, value) => amountStat(label, value, { dataset: { kind } });
  return h(
    "div",
    {},
    h("div", { class: "stats", role: "group", "aria-label": "Totals" }, stat("total", "Total earned", e.total), stat("settled", "Settled", e.settled), stat("unsettled", "Not yet settled", e.unsettled), stat("slashed", "Slashed", e.slashed)),
    section("Earnings over time", chart(e.entries)),
    h(
      "div",
      { class: "row" },
      section("Per Datanet", e.by_datanet.length ? table("Earnings per Datanet", ["Datanet", "Amount"], e.by_datanet.map((d) => [d.datanet, h("span", { class: "amt" }, `${tokens(d.amount)} ${TOKEN}`)])) : empty("Nothing yet.")),
      section("Per epoch", e.by_epoch.length ? table("Earnings per epoch", ["Epoch", "Amount"], e.by_epoch.map((d) => [String(d.epoch), h("span", { class: "amt" }, `${tokens(d.amount)} ${TOKEN}`)])) : empty("No epoch has closed with these earnings yet.")),
    ),
    section(
      "Citations that earned",
      e.entries.length
        ? table(
            "Every entry",
            ["When", "Question", "Answer sentence", "Chunk", "Role", "Amount"],
            [...e.entries].reverse().map((x) => [
              time(x.created_at_ms),
              x.receipt_id ? h("span", { class: "question", dataset: { receipt: x.receipt_id } }, "…") : x.kind === "slash" ? "slashed by a flag" : "",
              x.sentences && x.sentences.length ? x.sentences.join(" ") : "",
              x.chunk_id && x.datanet ? h("code", { title: x.chunk_id }, x.chunk_id.slice(0, 10)) : "",
              x.role.replaceAll("_", " "),
              h("span", { class: BigInt(x.amount) < 0n ? "amt neg" : "amt" }, `${tokens(x.amount)} ${TOKEN}`),
            ]),
          )
        : empty("No citation has earned yet."),
      e.more ? h("p", { class: "muted" }, "Showing the first 5,000 entries; the totals above count them all.") : null,
    ),
    questions(),
  );
}

/** Fills each row's question from its receipt once the table is in the page. */
function questions() {
  const marker = h("span", { hidden: true });
  requestAnimationFrame(async () => {
    const cells = [...document.querySelectorAll(".question[data-receipt]")];
    const byId = new Map();
    for (const cell of cells) {
      const id = cell.dataset.receipt;
      if (!byId.has(id)) byId.set(id, get(`/v1/receipts/${encodeURIComponent(id)}`).catch(() => null));
      const r = await byId.get(id);
      cell.textContent = r ? r.question ?? "(private question)" : "(receipt not readable)";
    }
  });
  return marker;
}

/** Cumulative earnings over time, as an SVG line (drawn with the DOM, no inline styles). */
function chart(entries) {
  if (!entries.length) return empty("Nothing earned yet.");
  const points = [...entries].sort((a, b) => a.created_at_ms - b.created_at_ms || a.id - b.id);
  let sum = 0n;
  const series = points.map((x) => {
    sum += BigInt(x.amount);
    return [x.created_at_ms, sum];
  });
  const W = 640;
  const H = 200;
  const pad = 36;
  const t0 = series[0][0];
  const t1 = Math.max(series[series.length - 1][0], t0 + 1);
  const max = series.reduce((m, [, v]) => (v > m ? v : m), 1n);
  const x = (t) => pad + ((t - t0) / (t1 - t0)) * (W - 2 * pad);
  const y = (v) => H - pad - Number((v * 1000n) / max) / 1000 * (H - 2 * pad);
  const ns = "http://www.w3.org/2000/svg";
  const el = (tag, attrs) => {
    const e = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    return e;
  };
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": `Cumulative earnings, rising to ${tokens(sum)} ${TOKEN}` });
  svg.append(el("line", { x1: pad, y1: H - pad, x2: W - pad, y2: H - pad, class: "axis" }), el("line", { x1: pad, y1: pad, x2: pad, y2: H - pad, class: "axis" }));
  let d = `M ${x(t0)} ${y(0n)}`;
  for (const [t, v] of series) d += ` L ${x(t)} ${y(v)}`;
  svg.append(el("path", { d, class: "line" }));
  for (const [t, v] of series) svg.append(el("circle", { cx: x(t), cy: y(v), r: 3, class: "dot" }));
  const label = (text, attrs) => {
    const t = el("text", attrs);
    t.textContent = text;
    return t;
  };
  svg.append(label(`${tokens(sum)} ${TOKEN}`, { x: pad + 4, y: pad - 10, class: "label" }));
  svg.append(label(new Date(t0).toLocaleDateString(), { x: pad, y: H - 12, class: "label" }));
  svg.append(label(new Date(t1).toLocaleDateString(), { x: W - pad, y: H - 12, class: "label end" }));
  return h("figure", {}, svg, h("figcaption", { class: "muted" }, `Cumulative earnings over ${series.length} entr${series.length === 1 ? "y" : "ies"}.`));
}

function claimView(address, proof, claimable) {
  if (proof instanceof Error) {
    return section("Claim", proof.status === 404 ? empty("Nothing to claim yet: this address is in no closed epoch. Earnings become claimable when an epoch is settled.") : errorBox(proof));
  }
  const onChain = !(claimable instanceof Error) && claimable.contracts;
  const out = h("div", { role: "status" });
  const nothing = onChain && BigInt(claimable.claimable) === 0n;
  const serverClaim = h("button", { type: "button", class: "primary", disabled: nothing }, nothing ? "Nothing to claim" : "Claim");
  serverClaim.addEventListener("click", () =>
    busy(serverClaim, async () => {
      const r = await api("POST", "/v1/claims", { address });
      fill(out, h("p", { class: "ok" }, `Claimed ${tokens(r.paid)} ${TOKEN} in transaction `, h("code", { class: "wrap" }, r.transaction), "."));
    }, out),
  );
  const walletClaim = window.ethereum ? h("button", { type: "button", class: "secondary" }, "Claim with my wallet") : null;
  if (walletClaim) {
    walletClaim.addEventListener("click", () =>
      busy(walletClaim, async () => {
        const chain = await get("/v1/chain");
        if (!chain.payouts) throw { title: "No payout contract", detail: "This server has not deployed its contracts yet." };
        // Claims are checked against the chain's latest root: the proof of that epoch.
        const epoch = chain.chain_latest_epoch;
        if (!epoch) throw { title: "Nothing posted yet", detail: "No epoch is on chain yet; claims open once the operator settles one." };
        const posted = await get(`/v1/proofs/${address}?epoch=${epoch}`);
        const [from] = await window.ethereum.request({ method: "eth_requestAccounts" });
        const tx = await window.ethereum.request({ method: "eth_sendTransaction", params: [{ from, to: chain.payouts, data: claimCalldata(posted) }] });
        fill(out, h("p", { class: "ok" }, "Claim sent: ", h("code", { class: "wrap" }, tx)));
      }, out),
    );
  }
  const stat = (label, id, amount) => amountStat(label, amount, { id });
  const stats = onChain
    ? [stat(`Claimable now (epoch ${claimable.epoch} on chain)`, "claimable", claimable.claimable), stat("Paid out so far", "paid", claimable.paid), stat(`Settled through epoch ${proof.epoch}`, "settled-total", proof.cumulative)]
    : [stat(`Settled through epoch ${proof.epoch}`, "settled-total", proof.cumulative)];
  return section(
    "Claim",
    h("div", { class: "stats" }, stats),
    onChain
      ? h("p", { class: "muted" }, "A claim pays the cumulative amount of the chain's latest epoch less what earlier claims paid. Anyone may submit the proof; the tokens always go to the address.")
      : h("p", { class: "notice" }, claimable instanceof Error ? `The chain cannot be read now: ${claimable.detail || claimable.message}` : "This server has no payout contract deployed yet: settled earnings become claimable once it has, and its first epoch is posted."),
    h("details", {}, h("summary", {}, `Merkle proof (epoch ${proof.epoch})`), h("dl", { class: "facts" }, h("dt", {}, "Leaf index"), h("dd", {}, String(proof.index)), h("dt", {}, "Root"), h("dd", {}, h("code", { class: "wrap" }, proof.root)), h("dt", {}, "Proof"), h("dd", {}, proof.proof.length ? proof.proof.map((p) => h("code", { class: "wrap block" }, p)) : "(the only leaf)"))),
    h("div", { class: "actions" }, walletClaim, serverClaim),
    out,
  );
}

/** `claim(uint256 index, address account, uint256 cumulativeAmount, bytes32[] proof)`, ABI-encoded. */
export function claimCalldata(proof) {
  const word = (hex) => hex.replace(/^0x/, "").padStart(64, "0");
  const num = (v) => word(BigInt(v).toString(16));
  const parts = ["0x2e7ba6ef", num(proof.index), word(proof.account.toLowerCase()), num(proof.cumulative), num(128), num(proof.proof.length)];
  for (const p of proof.proof) parts.push(word(p));
  return parts.join("");
}
