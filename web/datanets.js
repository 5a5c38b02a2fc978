// Datanets: browse and search, create, upload files with progress and a result per file;
// owners manage members, access requests, flags, prices and sponsor budgets.

import { all, api, get, me, apiKey, upload, tokens, units, TOKEN, short, governs, sameAddress } from "./api.js";
import { h, fill, field, errorBox, table, time, section, empty, busy, button, uid, plural, rerender } from "./dom.js";

export async function datanetsPage() {
  const datanets = await all("/v1/datanets");
  const who = apiKey() ? await me().catch(() => ({})) : {};
  const search = h("input", { type: "search", placeholder: "Filter by name or description" });
  const list = h("ul", { class: "datanet-list" });
  const show = () => {
    const q = search.value.trim().toLowerCase();
    const shown = datanets.filter((d) => !q || d.name.toLowerCase().includes(q) || d.description.toLowerCase().includes(q));
    fill(
      list,
      shown.length
        ? shown.map((d) =>
            h(
              "li",
              { class: "card" },
              h(
                "h2",
                {},
                h("a", { href: `#/datanets/${encodeURIComponent(d.name)}` }, d.name),
                d.visibility === "private" ? h("span", { class: "badge" }, "private") : null,
                d.review ? h("span", { class: "badge info" }, "reviewed") : null,
              ),
              h("p", {}, d.description || h("span", { class: "muted" }, "No description.")),
              h("p", { class: "meta" }, "Owner ", h("a", { href: `#/contributor/${d.owner}` }, short(d.owner)), " · created ", time(d.created_at_ms)),
            ),
          )
        : h("li", {}, empty(datanets.length ? "No Datanet matches." : "There is no Datanet you can read yet.")),
    );
  };
  search.addEventListener("input", show);
  show();
  return h(
    "div",
    {},
    h("h1", {}, "Datanets"),
    h("div", { class: "toolbar" }, field("Search Datanets", search)),
    list,
    who.role && who.role !== "reader" && who.role !== "contributor" ? createForm(who) : null,
    apiKey() ? requestAccessForm() : h("p", { class: "muted" }, "Sign in to create a Datanet or to ask to join a private one."),
  );
}

function createForm(who) {
  const name = h("input", { type: "text", required: true, pattern: "[a-z0-9_\\-]{1,64}", maxlength: "64", spellcheck: "false" });
  const description = h("input", { type: "text", maxlength: "1000" });
  const visibility = h("select", {}, h("option", { value: "public" }, "Public: anyone can search it"), h("option", { value: "private" }, "Private: members only"));
  const review = h("input", { type: "checkbox", id: uid("review") });
  const out = h("div", { role: "status" });
  const submit = h("button", { type: "submit", class: "primary" }, "Create");
  const form = h(
    "form",
    {},
    field("Name", name, "Lowercase letters, digits, - and _."),
    field("Description", description),
    field("Visibility", visibility),
    h("div", { class: "check" }, review, h("label", { for: review.id }, "Review uploads: others' documents wait for your approval before anyone can find or cite them")),
    h("div", { class: "actions" }, submit),
    out,
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(submit, async () => {
      const body = { name: name.value.trim(), description: description.value.trim(), visibility: visibility.value, review: review.checked };
      if (who.role === "admin" && !who.address) throw { title: "No owner", detail: "An admin key without an address cannot own a Datanet; use an owner key." };
      const created = await api("POST", "/v1/datanets", body);
      location.hash = `#/datanets/${encodeURIComponent(created.name)}`;
    }, out);
  });
  return section("Create a Datanet", form);
}

function requestAccessForm() {
  const name = h("input", { type: "text", required: true, spellcheck: "false" });
  const message = h("input", { type: "text", maxlength: "500" });
  const out = h("div", { role: "status" });
  const submit = h("button", { type: "submit", class: "secondary" }, "Ask to join");
  const form = h("form", {}, field("Private Datanet's full name", name, "As its owner gave it to you, e.g. research~0x…"), field("Message to the owner", message), h("div", { class: "actions" }, submit), out);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(submit, async () => {
      await api("POST", `/v1/datanets/${encodeURIComponent(name.value.trim())}/access-requests`, { message: message.value });
      fill(out, h("p", { class: "ok" }, "Asked. The owner will see your request."));
    }, out);
  });
  return section("Join a private Datanet", form);
}

export async function datanetPage(name) {
  const path = `/v1/datanets/${encodeURIComponent(name)}`;
  const [d, documents] = await Promise.all([get(path), all(`${path}/documents`)]);
  const who = apiKey() ? await me().catch(() => ({})) : {};
  const governing = governs(who, d);
  const docList = documentsTable(d, documents);
  const contributions = h("div", {});
  const refreshContributions = async () => fill(contributions, await contributionsSection(d, path, who, governing));
  await refreshContributions();
  const page = h(
    "div",
    {},
    h("p", { class: "crumbs" }, h("a", { href: "#/datanets" }, "Datanets"), ` / ${d.name}`),
    h("h1", {}, d.name, d.visibility === "private" ? h("span", { class: "badge" }, "private") : null, d.review ? h("span", { class: "badge info" }, "reviewed") : null),
    h("p", {}, d.description || h("span", { class: "muted" }, "No description.")),
    d.review ? h("p", { class: "muted" }, "Uploads from contributors wait for the owner's or a member's review before they can be found, cited or paid.") : null,
    h("p", { class: "meta" }, "Owner ", h("a", { href: `#/contributor/${d.owner}` }, short(d.owner)), " · ", docList.count),
    h("p", {}, h("a", { class: "button-link", href: `#/ask/${encodeURIComponent(d.name)}` }, "Ask this Datanet")),
    apiKey() ? uploadForm(d, docList, refreshContributions) : h("p", { class: "muted" }, "Sign in to contribute documents."),
    section("Documents", docList),
    contributions,
    section("Leaderboard", await leaderboard(path)),
  );
  if (governing) page.append(await governance(d, path));
  return page;
}

/** The caller's contributions (or, for reviewers, everyone's), with accept and reject. */
async function contributionsSection(d, path, who, governing) {
  if (!who.role) return null;
  let items;
  try {
    items = await all(`${path}/contributions`, 200);
  } catch (e) {
    return section("Contributions", errorBox(e));
  }
  const mine = (c) => sameAddress(c.contributor, who.address);
  const reviewer = governing || items.some((c) => !mine(c));
  const decide = (c) => {
    if (c.status !== "pending" || !reviewer || (mine(c) && !governing)) return "";
    const reason = h("input", { type: "text", maxlength: "1000", placeholder: "Reason (shown to the contributor)", "aria-label": `Reason for contribution ${c.id}` });
    const out = h("div", { role: "status" });
    const act = (accept) => (e) => busy(e.target, async () => {
      await api("POST", `${path}/contributions/${c.id}`, { accept, reason: reason.value });
      rerender();
    }, out);
    return h("div", { class: "decide" }, reason, h("span", { class: "actions" }, button("Accept", act(true)), button("Reject", act(false), { class: "secondary" })), out);
  };
  const status = (c) => h("span", { class: `status ${c.status}` }, c.status === "accepting" ? "indexing" : c.status);
  const rows = [...items].reverse().map((c) => [
    String(c.id),
    h("a", { href: `#/contributor/${c.contributor}` }, short(c.contributor)),
    c.documents.join(", "),
    status(c),
    c.status === "rejected" ? c.reason || "(no reason given)" : c.report ? plural(c.report.new_chunks, "new chunk") : "",
    decide(c),
  ]);
  const title = reviewer ? "Contributions" : "Your contributions";
  return section(
    title,
    items.length
      ? table(title, ["#", "Contributor", "Documents", "Status", "Result", ""], rows)
      : empty(d.review ? "No contributions yet." : "No uploads yet."),
  );
}

async function leaderboard(path) {
  const board = await get(`${path}/leaderboard`).catch((e) => e);
  if (board instanceof Error) return errorBox(board);
  if (!board.contributors.length) return empty("Nobody has contributed yet.");
  return table(
    "Contributors, most earned first",
    ["Contributor", "Accepted uploads", "Chunks", "Citations", "Earned"],
    board.contributors.map((r) => [
      h("a", { href: `#/contributor/${r.contributor}` }, short(r.contributor)),
      String(r.accepted_uploads),
      String(r.chunks),
      String(r.citations),
      h("span", { class: "amt" }, `${tokens(r.earned)} ${TOKEN}`),
    ]),
  );
}

function documentsTable(d, documents) {
  const box = h("div", {});
  box.count = h("span", {});
  const render = (docs) => {
    box.count.textContent = plural(docs.length, "document");
    fill(
      box,
      docs.length
        ? table(
            "Documents",
            ["Document", "Contributor", "Chunks", "License"],
            docs.map((x) => [
              h("a", { href: `#/doc/${encodeURIComponent(d.name)}/${x.id}` }, x.external_id),
              h("a", { href: `#/contributor/${x.contributor}` }, short(x.contributor)),
              `${x.chunk_count}${x.duplicate_chunks ? ` (${x.duplicate_chunks} duplicate)` : ""}`,
              x.license,
            ]),
          )
        : empty("No documents yet. Upload the first."),
    );
  };
  render(documents);
  box.reload = async () => render(await all(`/v1/datanets/${encodeURIComponent(d.name)}/documents`));
  return box;
}

function uploadForm(d, docList, afterUpload) {
  const files = h("input", { type: "file", multiple: true, accept: ".txt,.md,.markdown,.html,.htm,.json,.jsonl,.csv,.pdf,text/*" });
  const license = h("input", { type: "text", value: "CC-BY-4.0", maxlength: "100" });
  const results = h("ul", { class: "upload-results", "aria-live": "polite" });
  const submit = h("button", { type: "submit", class: "primary" }, "Upload");
  const form = h("form", {}, field("Files", files, "Each file is chunked, hashed and indexed; chunks the Datanet already has stay credited to their first contributor."), field("License", license), h("div", { class: "actions" }, submit), results);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    if (!files.files.length) {
      fill(results, h("li", {}, errorBox({ title: "No file chosen", detail: "Choose one or more files to upload." })));
      return;
    }
    busy(submit, async () => {
      fill(results);
      for (const file of files.files) {
        const bar = h("progress", { max: "100", value: "0", "aria-label": `Uploading ${file.name}` });
        const line = h("li", {}, h("span", { class: "file" }, file.name), bar);
        results.append(line);
        try {
          const r = await upload(d.name, file, license.value.trim(), (p) => (bar.value = Math.round(p * 100)));
          bar.value = 100;
          const rep = r.report;
          fill(
            line,
            h("span", { class: "file" }, file.name),
            !rep
              ? h("span", { class: "warn" }, "Waiting for review: it can be found and cited once the owner accepts it.")
              : h("span", { class: "ok" }, rep.documents_already_present ? "Already in the Datanet" : `${plural(rep.chunks, "chunk")}: ${rep.new_chunks} new, ${rep.duplicate_chunks} duplicate`),
          );
        } catch (err) {
          fill(line, h("span", { class: "file" }, file.name), errorBox(err));
        }
      }
      files.value = "";
      await docList.reload();
      await afterUpload();
    });
  });
  return section("Contribute documents", form);
}

async function governance(d, path) {
  const [members, requests, flags, pricing, sponsor] = await Promise.all([
    all(`${path}/members`).catch((e) => e),
    all(`${path}/access-requests`).catch((e) => e),
    all(`${path}/flags`).catch((e) => e),
    get(`${path}/pricing`).catch((e) => e),
    get(`${path}/sponsor`).catch((e) => e),
  ]);
  const orError = (v, f) => (v instanceof Error ? errorBox(v) : f(v));
  return h(
    "div",
    { class: "governance" },
    h("h2", { class: "group" }, "Owner tools"),
    section("Review", reviewToggle(d, path)),
    section("Access requests", orError(requests, (rs) => {
      const pending = rs.filter((r) => r.status === "pending");
      return pending.length
        ? table("Pending requests", ["Address", "Message", "Asked", ""], pending.map((r) => [short(r.address), r.message, time(r.created_at_ms), h("span", { class: "actions" },
            button("Approve", (e) => busy(e.target, async () => { await api("POST", `${path}/access-requests/${r.id}`, { approve: true }); rerender(); })),
            button("Reject", (e) => busy(e.target, async () => { await api("POST", `${path}/access-requests/${r.id}`, { approve: false }); rerender(); }), { class: "secondary" }))]))
        : empty("No pending requests.");
    })),
    d.visibility === "private" ? section("Members", orError(members, (ms) => membersView(path, ms))) : null,
    section("Flags", orError(flags, (fs) => flagsView(path, fs))),
    section("Price", orError(pricing, (p) => pricingView(path, p))),
    section("Sponsor budget", orError(sponsor, (s) => sponsorView(path, s))),
  );
}

function reviewToggle(d, path) {
  const box = h("input", { type: "checkbox", id: uid("review"), checked: d.review });
  const out = h("div", { role: "status" });
  box.addEventListener("change", () => busy(box, async () => {
    await api("PATCH", path, { review: box.checked });
    rerender();
  }, out));
  return h("div", {}, h("div", { class: "check" }, box, h("label", { for: box.id }, "Hold uploads from contributors for review")), h("p", { class: "hint" }, "Members may accept or reject too, never their own uploads. Pending uploads stay pending if you turn this off."), out);
}

function membersView(path, members) {
  const address = h("input", { type: "text", placeholder: "0x…", spellcheck: "false" });
  const out = h("div", { role: "status" });
  const add = h("button", { type: "submit" }, "Add member");
  const form = h("form", { class: "inline-form" }, field("Address", address), h("div", { class: "actions" }, add), out);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(add, async () => { await api("POST", `${path}/members`, { address: address.value.trim() }); rerender(); }, out);
  });
  return h("div", {}, members.length ? table("Members", ["Address", "Since", ""], members.map((m) => [h("code", {}, m.address), time(m.added_at_ms), button("Remove", (ev) => busy(ev.target, async () => { await api("DELETE", `${path}/members/${m.address}`); rerender(); }), { class: "secondary" })])) : empty("No members yet."), form);
}

function flagsView(path, flags) {
  const kind = h("select", {}, h("option", { value: "chunk" }, "Chunk id"), h("option", { value: "document" }, "Document id"), h("option", { value: "contributor" }, "Contributor address"));
  const target = h("input", { type: "text", spellcheck: "false", required: true });
  const reason = h("input", { type: "text", required: true, maxlength: "500" });
  const out = h("div", { role: "status" });
  const submit = h("button", { type: "submit" }, "Flag");
  const form = h("form", { class: "inline-form" }, field("Flag a", kind), field("Target", target), field("Reason", reason), h("div", { class: "actions" }, submit), out);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(submit, async () => { await api("POST", `${path}/flags`, { [kind.value]: target.value.trim(), reason: reason.value }); rerender(); }, out);
  });
  return h(
    "div",
    {},
    flags.length
      ? table("Flags", ["Target", "Reason", "By", "State", ""], flags.map((f) => [h("code", { title: f.target }, `${f.kind} ${f.target.slice(0, 12)}`), f.reason, short(f.actor), f.active ? "active" : "lifted", f.active ? button("Lift", (ev) => busy(ev.target, async () => { await api("POST", `${path}/flags/${f.id}/lift`, {}); rerender(); }), { class: "secondary" }) : ""]))
      : empty("No flags. A flag takes a chunk, document or contributor out of retrieval and slashes unsettled credits."),
    form,
  );
}

function pricingView(path, p) {
  const fee = h("input", { type: "text", inputmode: "decimal", value: p.fee ? tokens(p.fee) : "", placeholder: "ledger default" });
  const weighting = h("select", {}, h("option", { value: "" }, "Ledger default"), h("option", { value: "citation" }, "By citation"), h("option", { value: "ablation" }, "By ablation (measured influence)"));
  weighting.value = p.weighting || "";
  const out = h("div", { role: "status" });
  const submit = h("button", { type: "submit" }, "Save price");
  const form = h("form", { class: "inline-form" }, field(`Fee per answer (${TOKEN})`, fee), field("Credit weighting", weighting), h("div", { class: "actions" }, submit), out);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(submit, async () => {
      const body = { fee: fee.value.trim() ? units(fee.value) : null, weighting: weighting.value || null };
      await api("PUT", `${path}/pricing`, body);
      fill(out, h("p", { class: "ok" }, "Saved."));
    }, out);
  });
  return form;
}

function sponsorView(path, s) {
  const amount = h("input", { type: "text", inputmode: "decimal", required: true });
  const out = h("div", { role: "status" });
  const submit = h("button", { type: "submit" }, "Add to budget");
  const form = h("form", { class: "inline-form" }, field(`Amount (${TOKEN}) from the owner's balance`, amount), h("div", { class: "actions" }, submit), out);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(submit, async () => { await api("POST", `${path}/sponsor`, { amount: units(amount.value), key: uid("sponsor") + Date.now() }); rerender(); }, out);
  });
  return h("div", {}, h("p", {}, "Budget: ", h("strong", {}, `${tokens(s.balance)} ${TOKEN}`), ". It pays for questions on this Datanet that nobody else pays for."), form);
}
