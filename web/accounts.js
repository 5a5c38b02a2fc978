// Payer: balance, deposits and spending, how to deposit. Adapters: list, register, loaded.

import { all, api, get, me, apiKey, tokens, TOKEN, short, sameAddress } from "./api.js";
import { h, field, errorBox, table, time, section, empty, busy, amountStat, rerender } from "./dom.js";
import { factorySection } from "./factory.js";

export async function payerPage() {
  const heading = h("h1", {}, "Payer account");
  if (!apiKey()) return h("div", {}, heading, empty("Sign in with your key to see your balance and what your questions spent."));
  const who = await me();
  if (!who.address) return h("div", {}, heading, empty("This key has no address, so it has no balance: its questions are paid by sponsors or not at all."));
  const [balance, transfers, chain] = await Promise.all([
    get(`/v1/accounts/${who.address}`),
    all(`/v1/accounts/${who.address}/transfers`, 500).catch((e) => e),
    get("/v1/chain").catch(() => null),
  ]);
  return h(
    "div",
    {},
    heading,
    h("p", { class: "muted" }, "Address ", h("code", {}, who.address)),
    h("div", { class: "stats", role: "group", "aria-label": "Balance" }, amountStat("Balance", balance.balance), amountStat("Held for answers in progress", balance.held), amountStat("Deposited on chain", balance.deposited), amountStat("Granted", balance.granted), amountStat("Spent", balance.spent)),
    section(
      "Deposits and spending",
      transfers instanceof Error
        ? errorBox(transfers)
        : transfers.length
          ? table("Transfers, newest first", ["When", "Kind", "Amount", "Receipt"], [...transfers].reverse().map((t) => [
              time(t.created_at_ms),
              t.kind,
              h("span", { class: sameAddress(t.debit, who.address) ? "neg" : "pos" }, `${sameAddress(t.debit, who.address) ? "−" : "+"}${tokens(t.amount)} ${TOKEN}`),
              t.receipt_id ? h("code", {}, t.receipt_id.slice(0, 12)) : "",
            ]))
          : empty("No deposits or charges yet."),
    ),
    section("How to deposit", depositHelp(who.address, chain)),
  );
}

function depositHelp(address, chain) {
  if (!chain || !chain.payouts) {
    return h("p", {}, "This server has no payout contract deployed, so deposits cannot arrive on chain yet; its operator can grant you a balance.");
  }
  return h(
    "div",
    {},
    h("p", {}, `Approve the payout contract to take the token, then call its deposit function for your address. Deposits count once they are confirmed (the server syncs every few seconds).`),
    h("dl", { class: "facts" }, h("dt", {}, "Payout contract"), h("dd", {}, h("code", { class: "wrap" }, chain.payouts)), h("dt", {}, "Token"), h("dd", {}, h("code", { class: "wrap" }, chain.token || "")), chain.chain_id ? [h("dt", {}, "Chain id"), h("dd", {}, String(chain.chain_id))] : null),
    h("pre", { class: "code" }, `token.approve(${short(chain.payouts)}, amount)\npayouts.deposit(${address}, amount)\n\n# or, with the CLI on the server's machine:\ntributary chain deposit ${address} <amount in units>`),
  );
}

export async function adaptersPage() {
  const [adapters, who] = await Promise.all([all("/v1/adapters"), apiKey() ? me().catch(() => ({})) : {}]);
  const list = adapters.length
    ? table("Registered adapters", ["Adapter", "Rank", "Modules", "Base model", "Loaded", "Added"], adapters.map((a) => [
        h("code", {}, a.id),
        String(a.rank),
        a.target_modules.join(", "),
        a.base_model || "",
        a.loaded ? h("span", { class: "ok" }, "in memory") : h("span", { class: "muted" }, "on disk"),
        time(a.added_at * 1000),
      ]))
    : empty("No adapters yet: answers use the base model.");
  const factory = who.role === "admin" || who.role === "owner" ? await factorySection(who) : null;
  return h("div", {}, h("h1", {}, "LoRA adapters"), section("Registered", list), factory, who.role === "admin" ? registerForm() : null);
}

function registerForm() {
  const id = h("input", { type: "text", required: true, pattern: "[A-Za-z0-9_\\-][A-Za-z0-9_.\/\\-]{0,127}", spellcheck: "false" });
  const path = h("input", { type: "text", required: true, spellcheck: "false", placeholder: "/srv/adapters/legal-v1" });
  const out = h("div", { role: "status" });
  const submit = h("button", { type: "submit", class: "primary" }, "Register");
  const form = h("form", {}, field("Adapter id", id), field("PEFT directory on the server", path, "It is checked against the base model; one that does not fit is refused."), h("div", { class: "actions" }, submit), out);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(submit, async () => {
      await api("POST", "/v1/adapters", { id: id.value.trim(), path: path.value.trim() });
      rerender();
    }, out);
  });
  return section("Register an adapter", form);
}
