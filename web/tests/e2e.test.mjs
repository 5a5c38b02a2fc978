// The web app in headless Chromium against a real `tributary serve` (started by
// scripts/web-test.sh, which passes its URL and keys in the environment). Each flow saves
// screenshots at 1280x800 and 390x844 under WEB_TEST_OUT; axe-core checks every page.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run scripts/web-test.sh`);
  return value;
};
const URL = env("WEB_URL");
const OUT = env("WEB_TEST_OUT");
const KEYS = {
  admin: env("WEB_ADMIN_KEY"),
  alice: env("WEB_OWNER_KEY"),
  bob: env("WEB_CONTRIBUTOR_KEY"),
  carol: env("WEB_PAYER_KEY"),
  dave: env("WEB_STRANGER_KEY"),
};
const ALICE = env("WEB_ALICE");
const QUESTION = "What happens to a river's discharge below the confluence with a tributary?";
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

let context;
let profile;
const problems = [];

before(async () => {
  profile = mkdtempSync(join(tmpdir(), "tributary-chromium-"));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    viewport: DESKTOP,
    args: ["--disable-background-networking", "--no-first-run", "--disable-component-update", "--disable-sync"],
  });
});

after(async () => {
  await context?.close();
  rmSync(profile, { recursive: true, force: true });
  // Every page ran under the strict Content-Security-Policy without a violation or an error.
  assert.deepEqual(problems, []);
});

async function open(hash, init) {
  const page = await context.newPage();
  if (init) await page.addInitScript(...init);
  page.on("console", (m) => {
    // A refused request is logged by the browser as "Failed to load resource"; the flows that
    // expect one check the message the page shows. Anything else (a script error, a CSP
    // violation) is a problem.
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) problems.push(`${hash}: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`${hash}: ${e.message}`));
  await page.goto(`${URL}/${hash}`);
  await page.locator("main h1").first().waitFor();
  return page;
}

async function signIn(page, key) {
  await page.locator("#signin-open").click();
  await page.locator("#signin-key").fill(key);
  await page.locator("#signin-submit").click();
  await page.locator(".session .who").waitFor();
}

/** Shows the page at `hash`, rendered afresh (also when it is the page shown now). */
async function go(page, hash) {
  await page.evaluate((h) => {
    if (location.hash === h) window.dispatchEvent(new HashChangeEvent("hashchange"));
    else location.hash = h;
  }, hash);
  await page.locator("main h1").first().waitFor();
  await page.locator("main .loading").first().waitFor({ state: "detached" }).catch(() => {});
}

/** Screenshots at both sizes, then back to the desktop size. */
async function shoot(page, name) {
  for (const [size, viewport] of [["desktop", DESKTOP], ["phone", PHONE]]) {
    await page.setViewportSize(viewport);
    // From the top, so the sticky header is where a reader sees it.
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.waitForTimeout(100);
    await page.screenshot({ path: join(OUT, `${name}-${size}.png`), fullPage: true });
  }
  await page.setViewportSize(DESKTOP);
}

/** axe-core's serious and critical violations on the page as it is now (none expected). */
async function axe(page, what) {
  // Evaluated through the DevTools protocol: the page's CSP (no inline scripts) stays on.
  if (!(await page.evaluate(() => typeof window.axe === "object"))) await page.evaluate(AXE);
  const violations = await page.evaluate(async () => {
    const r = await window.axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"] } });
    return r.violations.filter((v) => v.impact === "serious" || v.impact === "critical").map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(" ")).join("; ")})`);
  });
  assert.deepEqual(violations, [], `axe on ${what}`);
}

async function call(method, path, key, body) {
  const response = await fetch(`${URL}${path}`, {
    method,
    headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await response.json();
  assert.ok(response.ok, `${method} ${path}: ${JSON.stringify(json)}`);
  return json;
}

const amountOf = async (locator) => BigInt(await locator.getAttribute("data-amount"));

test("the pages are served with a strict Content-Security-Policy", async () => {
  const response = await fetch(`${URL}/`);
  assert.equal(response.status, 200);
  const csp = response.headers.get("content-security-policy");
  assert.match(csp, /script-src 'self'/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
  assert.equal(response.headers.get("x-content-type-options"), "nosniff");
  const html = await response.text();
  assert.doesNotMatch(html, /<script>[^<]/, "no inline script");
  const etag = response.headers.get("etag");
  const again = await fetch(`${URL}/`, { headers: { "If-None-Match": etag } });
  assert.equal(again.status, 304);
});

test("an owner creates a Datanet and uploads a document", async () => {
  const page = await open("#/datanets");
  await signIn(page, KEYS.alice);
  await page.getByLabel("Name", { exact: true }).fill("field-notes");
  await page.getByLabel("Description").fill("Notes from the river survey");
  await page.getByRole("button", { name: "Create" }).click();
  await page.waitForURL(/#\/datanets\/field-notes$/);
  await page.getByRole("heading", { level: 1, name: "field-notes" }).waitFor();
  await page.getByLabel("Files").setInputFiles([
    { name: "deltas.md", mimeType: "text/markdown", buffer: Buffer.from("# Deltas\n\nA delta forms where a river deposits sediment as it meets slower water. The Mississippi delta grows into the Gulf of Mexico.\n") },
    { name: "empty.txt", mimeType: "text/plain", buffer: Buffer.from("") },
  ]);
  await page.getByRole("button", { name: "Upload" }).click();
  const results = page.locator(".upload-results li");
  await results.nth(1).locator(".ok, .error").waitFor();
  assert.match(await results.nth(0).innerText(), /deltas\.md\s+\d+ chunks?: \d+ new, 0 duplicate/);
  assert.ok(await results.nth(1).locator(".error").isVisible(), "the empty file's error is shown");
  await page.locator("table a", { hasText: "deltas.md" }).waitFor();
  await axe(page, "a Datanet with owner tools");
  await shoot(page, "datanet-upload");

  // The owner flags the passage from the document view: it leaves retrieval at once.
  const search = { query: "delta sediment Gulf of Mexico", datanets: ["field-notes"], mode: "bm25" };
  const found = await call("POST", "/v1/search", KEYS.alice, search);
  assert.equal(found.passages.length, 1);
  const p = found.passages[0];
  await go(page, `#/doc/field-notes/${p.document_id}/${p.chunk_id}`);
  await page.locator("mark#cited").waitFor();
  await page.getByLabel("Reason").fill("Unsourced claim");
  await page.getByRole("button", { name: "Flag this passage" }).click();
  await page.locator(".card .ok", { hasText: "Flagged" }).waitFor();
  assert.equal((await call("POST", "/v1/search", KEYS.alice, search)).passages.length, 0, "flagged: out of retrieval");
  await axe(page, "the document view with owner tools");
  await shoot(page, "document-flag");
  await page.close();
});

test("ask: the answer streams, a citation opens its passage, the document shows it", async () => {
  const page = await open("#/ask/rivers-demo");
  await signIn(page, KEYS.carol);
  await page.locator(".price", { hasText: "paid from your balance" }).waitFor();
  await page.locator(".price", { hasText: "Your balance" }).waitFor();
  await axe(page, "the Ask page");
  await shoot(page, "ask-empty");
  // Watch the answer's text while it is being written.
  await page.evaluate(() => {
    window.__drafts = [];
    new MutationObserver(() => {
      const card = document.querySelector("article.answer");
      const text = document.querySelector(".answer-text");
      if (card && text && card.getAttribute("aria-busy") === "true") window.__drafts.push(text.textContent.length);
    }).observe(document.querySelector(".result"), { childList: true, subtree: true, characterData: true });
  });
  await page.getByLabel("Question").fill(QUESTION);
  await page.getByRole("button", { name: "Ask", exact: true }).click();
  await page.locator("article.answer[aria-busy=false]").waitFor({ timeout: 120_000 });
  const drafts = await page.evaluate(() => window.__drafts.filter((n) => n > 0));
  assert.ok(new Set(drafts).size >= 2, `the answer streamed in pieces: ${drafts}`);
  const chips = page.locator(".answer-text .chip");
  assert.ok((await chips.count()) >= 1, "the answer has citation chips");
  const sources = page.locator(".sources li");
  assert.ok((await sources.count()) >= 1);
  await page.locator(".sources li.cited", { hasText: "Cited by sentence" }).first().waitFor();
  await page.locator(".receipt-details summary", { hasText: "Fee" }).waitFor();

  await chips.first().click();
  const card = page.locator(".cite-card");
  await card.waitFor();
  assert.ok((await card.locator("mark").innerText()).trim().length > 0, "the cited span is highlighted");
  assert.match(await card.innerText(), /rivers-demo/);
  await axe(page, "the answer with a citation card");
  await shoot(page, "ask-citation");
  await page.keyboard.press("Escape");
  await card.waitFor({ state: "detached" });

  await page.locator(".receipt-details summary").click();
  await page.locator(".receipt-details table").waitFor();
  assert.match(await page.locator(".receipt-details").innerText(), /contributor/);
  await shoot(page, "ask-receipt");

  await chips.first().click();
  await page.locator(".cite-card").getByRole("link", { name: "Open in the document" }).click();
  await page.waitForURL(/#\/doc\//);
  const mark = page.locator("mark#cited");
  await mark.waitFor();
  await page.waitForFunction(() => {
    const r = document.getElementById("cited").getBoundingClientRect();
    return r.top >= 0 && r.top < window.innerHeight;
  });
  assert.ok((await mark.innerText()).length > 20);
  await axe(page, "the document view");
  await shoot(page, "document");

  // A Datanet with nothing in it: the answer says so plainly, and costs nothing.
  await call("POST", "/v1/datanets", KEYS.alice, { name: "empty-shelf", description: "Nothing here yet" });
  await go(page, "#/ask/empty-shelf");
  await page.getByLabel("Question").fill(QUESTION);
  await page.getByRole("button", { name: "Ask", exact: true }).click();
  await page.locator(".notice", { hasText: "Not found" }).waitFor({ timeout: 60_000 });
  await page.locator(".receipt-details summary", { hasText: "Fee 0 TRIB" }).waitFor();
  await shoot(page, "ask-not-found");
  await page.close();
});

test("a contributor's earnings rise with an answer, and settling makes them claimable", async () => {
  const page = await open("#/contributor");
  await signIn(page, KEYS.alice);
  await go(page, "#/contributor");
  const total = page.locator(".stat-value[data-kind=total]");
  await total.waitFor();
  const before = await amountOf(total);
  await call("POST", "/v1/answers", KEYS.carol, { question: "Where does a watershed drain?", datanets: ["rivers-demo"], max_tokens: 48 });
  await page.reload();
  await total.waitFor();
  const after = await amountOf(total);
  assert.ok(after > before, `earnings rose: ${before} -> ${after}`);
  await page.locator("svg.chart").waitFor();
  await page.locator("td .question", { hasText: "Where does a watershed drain?" }).first().waitFor();
  assert.match(await page.locator("main").innerText(), /Nothing to claim yet/);
  await axe(page, "the earnings page");
  await shoot(page, "earnings");

  const settled = await call("POST", "/v1/admin/settle", KEYS.admin, {});
  assert.ok(settled.epoch, JSON.stringify(settled));
  assert.deepEqual(settled.posted_on_chain, [settled.epoch.number], JSON.stringify(settled));
  await page.reload();
  const claimable = page.locator("#claimable");
  await claimable.waitFor();
  assert.equal(await amountOf(claimable), after, "everything earned so far is claimable on chain");
  assert.equal(await amountOf(page.locator("#settled-total")), after);
  await shoot(page, "claim");
  // The claim pays it (the server's signer submits the proof; the tokens go to alice).
  await page.getByRole("button", { name: "Claim", exact: true }).click();
  await page.locator(".card .ok", { hasText: `Claimed` }).waitFor();
  await page.reload();
  await claimable.waitFor();
  assert.equal(await amountOf(claimable), 0n, "claimed once");
  assert.equal(await amountOf(page.locator("#paid")), after);
  assert.ok(await page.getByRole("button", { name: "Nothing to claim" }).isDisabled());
  await shoot(page, "claimed");
  await page.close();
});

test("a private Datanet is invisible to a stranger", async () => {
  const secret = await call("POST", "/v1/datanets", KEYS.alice, { name: "survey-drafts", visibility: "private", description: "Unpublished" });
  const owner = await open("#/datanets");
  await signIn(owner, KEYS.alice);
  await go(owner, "#/datanets");
  await owner.locator(".datanet-list a", { hasText: secret.name }).waitFor();
  await owner.close();

  for (const key of [KEYS.dave, null]) {
    const page = await open("#/datanets");
    if (key) await signIn(page, key);
    await go(page, "#/datanets");
    await page.locator(".datanet-list a", { hasText: "rivers-demo" }).waitFor();
    assert.doesNotMatch(await page.locator("main").innerText(), /survey-drafts/);
    await go(page, `#/datanets/${encodeURIComponent(secret.name)}`);
    await page.locator("main .error").waitFor();
    assert.match(await page.locator("main .error").innerText(), /not found|does not exist|no Datanet/i);
    if (key) await shoot(page, "private-stranger");
    await page.close();
  }
});

test("a reviewed Datanet holds an upload until its owner accepts it", async () => {
  await call("POST", "/v1/datanets", KEYS.alice, { name: "reviewed-notes", review: true, description: "Checked before use" });
  const bob = await open("#/datanets/reviewed-notes");
  await signIn(bob, KEYS.bob);
  await go(bob, "#/datanets/reviewed-notes");
  await bob.getByLabel("Files").setInputFiles([{ name: "levees.txt", mimeType: "text/plain", buffer: Buffer.from("Levees are embankments that keep a river in its channel during floods.") }]);
  await bob.getByRole("button", { name: "Upload" }).click();
  await bob.locator(".upload-results .warn", { hasText: "Waiting for review" }).waitFor();
  await go(bob, "#/datanets/reviewed-notes");
  const bobsRow = bob.locator("section", { hasText: "Your contributions" }).locator("tbody tr").first();
  await bobsRow.locator(".status.pending").waitFor();
  assert.equal(await bob.getByRole("button", { name: "Accept" }).count(), 0, "a contributor cannot accept");
  const search = await call("POST", "/v1/search", KEYS.admin, { query: "levees embankments", datanets: ["reviewed-notes"], mode: "bm25" });
  assert.equal(search.passages.length, 0, "a pending upload cannot be found");

  const alice = await open("#/datanets/reviewed-notes");
  await signIn(alice, KEYS.alice);
  await go(alice, "#/datanets/reviewed-notes");
  const row = alice.locator("section", { hasText: "Contributions" }).locator("tbody tr", { hasText: "levees.txt" });
  await row.getByRole("button", { name: "Accept" }).waitFor();
  await shoot(alice, "review-pending");
  await row.getByRole("button", { name: "Accept" }).click();
  const decided = alice.locator("tbody tr", { hasText: "levees.txt" }).locator(".status.accepted, .error");
  await decided.first().waitFor();
  assert.equal(await decided.first().getAttribute("class"), "status accepted", await decided.first().innerText());
  await alice.locator("section", { hasText: "Leaderboard" }).locator("td a", { hasText: "0x7099" }).waitFor();
  await axe(alice, "a reviewed Datanet's contributions");
  await shoot(alice, "review-owner");
  await alice.close();

  await go(bob, "#/datanets/reviewed-notes");
  await bob.locator("tbody tr", { hasText: "levees.txt" }).locator(".status.accepted").waitFor();
  const found = await call("POST", "/v1/search", KEYS.admin, { query: "levees embankments", datanets: ["reviewed-notes"], mode: "bm25" });
  assert.equal(found.passages[0].contributor, env("WEB_BOB"), "accepted: found, credited to its contributor");
  await shoot(bob, "review-contributor");
  await bob.close();
});

test("an EIP-1193 wallet supplies the contributor's address", async () => {
  // A stand-in for a browser wallet (no wallet extension runs in headless Chromium): the
  // provider interface the page uses, answering with alice's account and recording calls.
  const wallet = (account) => {
    window.__walletCalls = [];
    window.ethereum = {
      request: async ({ method, params }) => {
        window.__walletCalls.push({ method, params });
        if (method === "eth_requestAccounts") return [account];
        if (method === "eth_sendTransaction") return `0x${"ab".repeat(32)}`;
        throw new Error(`unexpected ${method}`);
      },
    };
  };
  // The protocol's treasury: paid a share of every answer, never claimed here. An admin key
  // reads any address's earnings.
  const treasury = env("WEB_TREASURY");
  const page = await open("#/contributor", [wallet, treasury]);
  await signIn(page, KEYS.admin);
  await go(page, "#/contributor");
  await page.getByRole("button", { name: "Use my wallet" }).click();
  await page.waitForURL(new RegExp(`#/contributor/${treasury}$`));
  await page.locator(".stat-value[data-kind=total]").waitFor();
  assert.deepEqual(await page.evaluate(() => window.__walletCalls.map((c) => c.method)), ["eth_requestAccounts"]);
  // A claim with the wallet sends `claim(index, account, cumulative, proof)` of the epoch on
  // chain to the payout contract; the calldata is checked against the contract by anvil.
  await page.getByRole("button", { name: "Claim with my wallet" }).click();
  await page.locator(".card .error, .card .ok").first().waitFor();
  const sent = await page.evaluate(() => window.__walletCalls.find((c) => c.method === "eth_sendTransaction"));
  assert.ok(sent, "the wallet was asked to send the claim");
  const [tx] = sent.params;
  const chain = await call("GET", "/v1/chain", KEYS.admin);
  assert.equal(tx.to.toLowerCase(), chain.payouts.toLowerCase());
  assert.ok(tx.data.startsWith("0x2e7ba6ef"), tx.data);
  // The contract itself judges the calldata: as sent, the claim goes through (simulated
  // with eth_call, so nothing is paid); with the amount changed it is refused.
  const rpc = async (method, params) => {
    const r = await fetch(env("TRIBUTARY_RPC_URL"), { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }) });
    return r.json();
  };
  const asIs = await rpc("eth_call", [{ from: tx.from, to: tx.to, data: tx.data }, "latest"]);
  assert.equal(asIs.error, undefined, `the wallet's claim is valid: ${JSON.stringify(asIs)}`);
  const amount = 10 + 2 * 64; // after the selector, the index and the account
  const forged = `${tx.data.slice(0, amount)}${"0".repeat(63)}1${tx.data.slice(amount + 64)}`;
  assert.ok((await rpc("eth_call", [{ from: tx.from, to: tx.to, data: forged }, "latest"])).error, "another amount is refused");
  await page.close();
});

test("an API error is shown as a readable message", async () => {
  const page = await open("#/ask");
  await page.locator("#signin-open").click();
  await page.locator("#signin-key").fill("not-a-key");
  await page.locator("#signin-submit").click();
  const error = page.locator("#signin-error .error");
  await error.waitFor();
  assert.match(await error.innerText(), /not a Tributary API key/);
  await shoot(page, "signin-error");
  await page.close();
});

test("the payer, adapters and Datanets pages pass axe and show their data", async () => {
  const page = await open("#/payer");
  await signIn(page, KEYS.carol);
  await go(page, "#/payer");
  await page.locator(".stat-value").first().waitFor();
  assert.match(await page.locator("main").innerText(), /charge|grant/i);
  await axe(page, "the payer page");
  await shoot(page, "payer");
  await go(page, "#/adapters");
  await axe(page, "the adapters page");
  await go(page, "#/datanets");
  await axe(page, "the Datanets page");
  await shoot(page, "datanets");
  await page.close();
});

test("Model Factory: an owner trains an adapter, follows its loss, tries it and publishes it", async () => {
  const page = await open("#/adapters");
  await signIn(page, KEYS.alice);
  await go(page, "#/adapters");
  await page.getByRole("heading", { name: "Train an adapter" }).waitFor();
  await page.getByLabel("Adapter name").fill("demo-lora");
  await page.getByLabel("Datanet", { exact: true }).selectOption("rivers-demo");
  const pairs = [
    { question: "What is a tributary?", answer: "A stream or river that flows into a larger river." },
    { question: "What is a confluence?", answer: "The place where two rivers meet." },
    { question: "What is a watershed?", answer: "The land that drains into one river." },
  ];
  await page.getByLabel("Question/answer pairs (JSON lines)").fill(pairs.map((p) => JSON.stringify(p)).join("\n"));
  // Two more pairs written by the model from the Datanet's own passages.
  await page.getByLabel("Pairs to write from the Datanet").fill("2");
  await page.getByLabel("Rank").fill("2");
  await page.getByLabel("Epochs").fill("1");
  await page.getByLabel("Learning rate").fill("0.001");
  await shoot(page, "train-form");
  await page.getByRole("button", { name: "Start training" }).click();
  await page.waitForURL(/#\/training\/demo-lora$/);
  // Followed live to its end: the loss curve, then the held-out evaluation.
  await page.getByRole("heading", { name: "Result", exact: true }).waitFor({ timeout: 180_000 });
  await page.locator("svg.chart circle.dot").first().waitFor();
  assert.match(await page.locator("main").innerText(), /Training log root [0-9a-f]{64}/);
  const job = await call("GET", "/v1/training/demo-lora", KEYS.alice);
  assert.ok(job.result.synthesized_pairs >= 1, `pairs written from the Datanet: ${JSON.stringify(job.result)}`);
  assert.match(await page.locator("main").innerText(), new RegExp(`${job.result.synthesized_pairs} written from the Datanet`));
  await axe(page, "a finished training job");
  await shoot(page, "training");

  await page.getByLabel("Question").fill("What is a tributary?");
  await page.getByRole("button", { name: "Try" }).click();
  await page.locator(".side-by-side .trial-adapter").waitFor({ timeout: 120_000 });
  const force = page.getByLabel("Publish though it does not beat the base");
  if (await force.count()) await force.check();
  await page.getByRole("button", { name: "Publish" }).click();
  await page.getByRole("heading", { name: "Published" }).waitFor({ timeout: 60_000 });
  const adapters = await (await fetch(`${URL}/v1/adapters`)).json();
  assert.ok(adapters.items.some((a) => a.id === "demo-lora"), "published: registered");
  await go(page, "#/adapters");
  await page.locator("table a", { hasText: "demo-lora" }).waitFor();
  await axe(page, "the adapters page with a training job");
  await page.close();

  // A paid question with the published adapter: its receipt credits the training data the
  // answer owes most to, beside the passages it cites.
  const asker = await open("#/ask/rivers-demo");
  await signIn(asker, KEYS.carol);
  await go(asker, "#/ask/rivers-demo");
  await asker.getByLabel("Adapter").selectOption("demo-lora");
  // Priced with the adapter (its surcharge included), not refused.
  await asker.locator(".price", { hasText: "This answer costs" }).waitFor();
  assert.equal(await asker.locator(".price .error, .price [role=alert]").count(), 0);
  await asker.getByLabel("Question").fill(QUESTION);
  await asker.getByRole("button", { name: "Ask", exact: true }).click();
  await asker.locator("article.answer[aria-busy=false]").waitFor({ timeout: 180_000 });
  await asker.locator(".receipt-details summary").click();
  const details = asker.locator(".receipt-details");
  await details.locator(".trained-on").waitFor();
  assert.match(await details.innerText(), /demo-lora: \d+ chunks? of \d+ influential training examples?/);
  assert.match(await details.locator("table").innerText(), /training contributor/);
  await axe(asker, "a receipt with training-data credits");
  await shoot(asker, "ask-trained-receipt");
  await asker.close();
});
