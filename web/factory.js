// Model Factory: train a LoRA adapter on a Datanet's question/answer pairs, follow its loss as
// it trains, try it beside the base model, publish it.

import { all, api, get, stream, governs } from "./api.js";
import { h, field, errorBox, table, time, section, empty, busy, fill, plural, rerender } from "./dom.js";

/** The caller's jobs and the form to start one (owners and admins). */
export async function factorySection(who) {
  const [jobs, datanets] = await Promise.all([all("/v1/training"), all("/v1/datanets")]);
  const mine = datanets.filter((d) => governs(who, d));
  const list = jobs.length
    ? table("Training jobs", ["Adapter", "Datanet", "State", "Steps", "Held-out loss", "Submitted"], jobs.map((j) => [
        h("a", { href: `#/training/${encodeURIComponent(j.name)}` }, j.name),
        j.datanet,
        stateBadge(j),
        j.result ? String(j.result.steps) : String(j.steps.length),
        j.result ? `${j.result.adapter_loss.toFixed(3)} (base ${j.result.base_loss.toFixed(3)})` : "",
        time(j.submitted_at * 1000),
      ]))
    : empty("No training jobs yet.");
  return section("Model Factory", list, mine.length ? trainForm(mine) : empty("Train adapters on Datanets you own."));
}

function stateBadge(job) {
  const label = { queued: "queued", running: "training", succeeded: job.result?.published ? "published" : "trained", failed: "failed" }[job.state] || job.state;
  return h("span", { class: job.state === "failed" ? "bad" : job.state === "succeeded" ? "ok" : "muted" }, label);
}

function trainForm(datanets) {
  const name = h("input", { type: "text", required: true, pattern: "[A-Za-z0-9_\\-][A-Za-z0-9_.\\-]{0,127}", spellcheck: "false" });
  const datanet = h("select", { required: true }, datanets.map((d) => h("option", { value: d.name }, d.name)));
  const pairs = h("textarea", { rows: 6, spellcheck: "false", placeholder: '{"question": "How long is the River Varne?", "answer": "212 kilometres"}' });
  const synthesize = h("input", { type: "number", min: 0, max: 1000, value: 0 });
  const rank = h("input", { type: "number", min: 1, max: 256, value: 16 });
  const epochs = h("input", { type: "number", min: 1, max: 100, value: 3 });
  const lr = h("input", { type: "text", value: "2e-4", inputmode: "decimal" });
  const out = h("div", { role: "status" });
  const submit = h("button", { type: "submit", class: "primary" }, "Start training");
  const form = h("form", {},
    field("Adapter name", name),
    field("Datanet", datanet),
    field("Question/answer pairs (JSON lines)", pairs, "One {\"question\", \"answer\"} object per line; add \"chunks\": [ids] to name the passages an answer rests on, else retrieval finds them. A fifth is held out to evaluate on."),
    field("Pairs to write from the Datanet", synthesize, "The base model writes questions from the Datanet's passages; each answer is the passage's own sentence that states the fact asked. 0 for none; give pairs, this, or both."),
    field("Rank", rank), field("Epochs", epochs), field("Learning rate", lr),
    h("div", { class: "actions" }, submit), out);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(submit, async () => {
      const lines = pairs.value.split("\n").map((l) => l.trim()).filter(Boolean);
      let parsed;
      try {
        parsed = lines.map((l) => JSON.parse(l));
      } catch (err) {
        throw new Error(`The pairs are not JSON lines: ${err.message}`);
      }
      const written = Number(synthesize.value) || 0;
      if (!parsed.length && !written) throw new Error("Give question/answer pairs, or a number of pairs to write from the Datanet.");
      const job = await api("POST", "/v1/training", {
        name: name.value.trim(), datanet: datanet.value, pairs: parsed, synthesize: written,
        rank: Number(rank.value), epochs: Number(epochs.value), learning_rate: Number(lr.value),
      });
      location.hash = `#/training/${encodeURIComponent(job.name)}`;
    }, out);
  });
  return section("Train an adapter", form);
}

/** One job: its progress and loss curve (live), its evaluation, trying and publishing it. */
export async function trainingPage(name) {
  const job = await get(`/v1/training/${encodeURIComponent(name)}`);
  const status = h("p", { role: "status", class: "muted" });
  const curve = h("div", {});
  const result = h("div", {});
  const steps = [...job.steps];
  const draw = (j) => {
    fill(status, j.state === "failed" ? errorBox(new Error(j.error || "training failed")) : progressText(j, steps));
    fill(curve, lossChart(steps));
    fill(result, j.result ? resultView(j) : null);
  };
  draw(job);
  if (job.state === "queued" || job.state === "running") {
    const controller = new AbortController();
    const follow = stream(`/v1/training/${encodeURIComponent(name)}/events`, undefined, {
      job: (j) => { steps.splice(0, steps.length, ...j.steps); draw(j); },
      step: (s) => { if (!steps.some((x) => x.step === s.step)) steps.push(s); draw({ ...job, state: "running", result: null }); },
      finished: (j) => { steps.splice(0, steps.length, ...j.steps); draw(j); },
    }, controller.signal).catch((e) => { if (e.name !== "AbortError") fill(status, errorBox(e)); });
    window.addEventListener("hashchange", () => controller.abort(), { once: true });
    void follow;
  }
  return h("div", {}, h("h1", {}, `Training ${name}`), h("p", {}, `Datanet ${job.datanet}`), status, section("Loss", curve), result);
}

function progressText(job, steps) {
  if (job.state === "queued") return "Waiting for the jobs before it.";
  const last = steps[steps.length - 1];
  if (job.state === "running") return last ? `Step ${last.step} of ${last.total}: loss ${last.loss.toFixed(4)}` : "Preparing the examples.";
  return `Trained in ${plural(steps.length, "step")}.`;
}

/** Loss per step as an SVG line (drawn with the DOM, no inline styles). */
function lossChart(steps) {
  if (!steps.length) return empty("No steps yet.");
  const W = 640, H = 200, pad = 36;
  const total = steps[steps.length - 1].total;
  const max = Math.max(...steps.map((s) => s.loss), 1e-9);
  const x = (n) => pad + ((n - 1) / Math.max(total - 1, 1)) * (W - 2 * pad);
  const y = (v) => H - pad - (v / max) * (H - 2 * pad);
  const ns = "http://www.w3.org/2000/svg";
  const el = (tag, attrs, text) => {
    const e = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    if (text) e.textContent = text;
    return e;
  };
  const last = steps[steps.length - 1];
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": `Training loss over ${steps.length} steps, now ${last.loss.toFixed(3)}` });
  svg.append(el("line", { x1: pad, y1: H - pad, x2: W - pad, y2: H - pad, class: "axis" }), el("line", { x1: pad, y1: pad, x2: pad, y2: H - pad, class: "axis" }));
  svg.append(el("path", { d: steps.map((s, i) => `${i ? "L" : "M"} ${x(s.step)} ${y(s.loss)}`).join(" "), class: "line" }));
  // Each step a dot too (a run of one step is a point, not a line).
  if (steps.length <= 200) for (const s of steps) svg.append(el("circle", { cx: x(s.step), cy: y(s.loss), r: 3, class: "dot" }));
  svg.append(el("text", { x: pad + 4, y: pad - 10, class: "label" }, `loss ${max.toFixed(3)}`));
  svg.append(el("text", { x: W - pad, y: H - 12, class: "label end" }, `step ${total}`));
  return h("figure", {}, svg, h("figcaption", { class: "muted" }, `Mean loss per answer token, ${steps.length} of ${total} step${total === 1 ? "" : "s"}.`));
}

function resultView(job) {
  const r = job.result;
  const figures = table("Held-out evaluation", ["", "Base model", "Adapter"], [
    ["Loss per answer token", r.base_loss.toFixed(4), r.adapter_loss.toFixed(4)],
    ["Answer F1", r.base_answer_f1.toFixed(3), r.adapter_answer_f1.toFixed(3)],
  ]);
  const verdict = h("p", { class: r.beats_base ? "ok" : "bad" }, r.beats_base
    ? `Better than the base on ${plural(r.heldout_pairs, "held-out pair")}.`
    : `Not better than the base on ${plural(r.heldout_pairs, "held-out pair")}.`);
  const provenance = h("p", { class: "muted" }, "Training log root ", h("code", { class: "wrap" }, r.log_root), `: ${plural(r.train_pairs, "pair")}${r.synthesized_pairs ? ` (of ${r.train_pairs + r.heldout_pairs}, ${r.synthesized_pairs} written from the Datanet)` : ""}, ${plural(r.steps, "step")}, ${Math.round(r.tokens_per_second)} tokens/s.`);
  return h("div", {}, section("Result", figures, verdict, provenance), tryForm(job), publishView(job));
}

function tryForm(job) {
  const question = h("input", { type: "text", required: true, maxlength: 8192 });
  const out = h("div", { role: "status" });
  const submit = h("button", { type: "submit" }, "Try");
  const form = h("form", {}, field("Question", question), h("div", { class: "actions" }, submit), out);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(submit, async () => {
      const t = await api("POST", `/v1/training/${encodeURIComponent(job.name)}/try`, { datanet: job.datanet, question: question.value });
      fill(out, h("div", { class: "side-by-side" },
        h("div", {}, h("h3", {}, "Base model"), h("p", { class: "trial-base" }, t.base.trim())),
        h("div", {}, h("h3", {}, job.name), h("p", { class: "trial-adapter" }, t.adapter.trim()))));
    }, out);
  });
  return section("Try it beside the base", form);
}

function publishView(job) {
  const r = job.result;
  if (r.published) return section("Published", h("p", {}, `Questions may name ${job.name}${r.forced ? " (published though it does not beat its base)" : ""}.`));
  const force = h("input", { type: "checkbox" });
  const out = h("div", { role: "status" });
  const submit = h("button", { type: "button", class: "primary" }, "Publish");
  submit.addEventListener("click", () => busy(submit, async () => {
    await api("POST", `/v1/training/${encodeURIComponent(job.name)}/publish`, { force: force.checked });
    rerender();
  }, out));
  return section("Publish", h("p", {}, "Publishing registers the adapter: questions may then name it. A paid answer from it credits its own cited passages and, from the training share of the fee, the contributors of the training examples that most shaped it."),
    r.beats_base ? null : field("Publish though it does not beat the base", force), h("div", { class: "actions" }, submit), out);
}
