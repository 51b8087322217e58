// The page in headless Chromium on SwiftShader's WebGPU (scripts/test.sh runs this after
// scripts/web-build.sh): the adapter is named, the ViT matches PyTorch's logits on the whole
// test split, MiniLM matches sentence-transformers, the digit pad draws and predicts, and a bad
// model URL is a visible error. Screenshots go to $RESFORMER_WEB_SHOTS (default
// target/web-shots).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { serve } from "../serve.mjs";

const ROOT = resolve(fileURLToPath(import.meta.url), "../../..");
const SHOTS = process.env.RESFORMER_WEB_SHOTS ?? join(ROOT, "target/web-shots");
mkdirSync(SHOTS, { recursive: true });
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const ARGS = ["--headless=new", "--no-sandbox", "--enable-unsafe-webgpu", "--enable-features=Vulkan",
  "--use-webgpu-adapter=swiftshader"];

/** A safetensors file's tensors as Float64Arrays (F32 and F64 only: what the fixtures hold). */
function safetensors(path) {
  const b = readFileSync(path);
  const n = Number(b.readBigUInt64LE(0));
  const header = JSON.parse(b.subarray(8, 8 + n).toString());
  const out = {};
  for (const [name, t] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    const [s, e] = t.data_offsets;
    const raw = b.subarray(8 + n + s, 8 + n + e);
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    const size = t.dtype === "F64" ? 8 : 4;
    out[name] = Float64Array.from({ length: raw.byteLength / size }, (_, i) =>
      size === 8 ? view.getFloat64(i * 8, true) : view.getFloat32(i * 4, true));
    out[name].shape = t.shape;
  }
  return out;
}

let server, browser;
before(async () => {
  server = await serve(0);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
});
after(async () => {
  await browser?.close();
  server?.close();
});

/** A page of the app at `query`, its console errors collected, once `what` models are settled. */
async function open(query = "", what = ["vit", "minilm"]) {
  const page = await browser.newPage({ viewport: { width: 1100, height: 1000 } });
  page.errors = [];
  page.on("pageerror", (e) => page.errors.push(e.message));
  await page.goto(`${server.url}/web/${query}`);
  for (const m of what) await page.waitForFunction((m) => document.body.dataset[m], m, { timeout: 240_000 });
  return page;
}

test("the page names its WebGPU adapter and runs both models on it", async () => {
  const page = await open();
  const state = await page.getAttribute("#adapter", "data-state");
  const text = await page.textContent("#adapter");
  console.log(`adapter line: ${text}`);
  assert.equal(state, "webgpu", text);
  assert.match(text, /swiftshader/i);
  assert.equal(await page.evaluate(() => [document.body.dataset.vit, document.body.dataset.minilm].join()), "ready,ready");
  await page.waitForSelector("#matrix tr:nth-child(5) td", { timeout: 120_000 });
  await page.screenshot({ path: join(SHOTS, "similarity.png"), fullPage: true });
  assert.deepEqual(page.errors, []);
  await page.close();
});

test("the ViT's logits on all 360 test images match PyTorch's within 1e-4, same predictions", async () => {
  const fx = safetensors(join(ROOT, "tests/fixtures/vit_digits/expected.safetensors"));
  const rows = readFileSync(join(ROOT, "data/digits/digits.csv"), "utf8").trim().split("\n");
  const idx = Array.from(fx.test_indices);
  assert.equal(idx.length, 360);
  const pixels = idx.flatMap((i) => rows[i].split(",").slice(0, 64).map(Number));
  const page = await open("", ["vit"]);
  const got = await page.evaluate(async (px) => {
    const t0 = performance.now();
    const r = await window.app.vit.classify(new Float32Array(px));
    return { logits: Array.from(r.logits), predictions: Array.from(r.predictions), ms: performance.now() - t0 };
  }, pixels);
  console.log(`ViT: 360 images in one batch in ${got.ms.toFixed(0)} ms = ${(360_000 / got.ms).toFixed(0)} images/s`);
  assert.equal(got.logits.length, 3600);
  let worst = 0;
  got.logits.forEach((v, i) => { worst = Math.max(worst, Math.abs(v - fx.logits[i])); });
  console.log(`ViT: max |logit - PyTorch| = ${worst.toExponential(2)}`);
  assert.ok(worst <= 1e-4, `max abs logit difference ${worst}`);
  assert.deepEqual(got.predictions, Array.from(fx.predictions));
  await page.close();
});

test("?device=cpu runs the CPU backend in wasm, one thread, with the same ViT logits and MiniLM vectors", async () => {
  const fx = safetensors(join(ROOT, "tests/fixtures/vit_digits/expected.safetensors"));
  const rows = readFileSync(join(ROOT, "data/digits/digits.csv"), "utf8").trim().split("\n");
  const pixels = Array.from(fx.test_indices).flatMap((i) => rows[i].split(",").slice(0, 64).map(Number));
  const page = await open("?device=cpu", ["vit", "minilm"]);
  assert.equal(await page.getAttribute("#adapter", "data-state"), "cpu");
  assert.match(await page.textContent("#adapter"), /CPU backend/);
  const got = await page.evaluate(async (px) => {
    const t0 = performance.now();
    const r = await window.app.vit.classify(new Float32Array(px));
    return { logits: Array.from(r.logits), ms: performance.now() - t0 };
  }, pixels);
  console.log(`ViT, CPU backend in wasm: 360 images in ${got.ms.toFixed(0)} ms = ${(360_000 / got.ms).toFixed(0)} images/s`);
  let worst = 0;
  got.logits.forEach((v, i) => { worst = Math.max(worst, Math.abs(v - fx.logits[i])); });
  assert.ok(worst <= 1e-4, `max abs logit difference ${worst}`);
  const lowest = await minilmAgainstFixture(page, "CPU backend in wasm");
  assert.ok(lowest >= 0.9999, `lowest cosine ${lowest}`);
  await page.close();
});

/** MiniLM in `page` on the 12 fixture sentences: the lowest cosine to sentence-transformers. */
async function minilmAgainstFixture(page, where) {
  const fx = safetensors(join(ROOT, "tests/fixtures/minilm/expected.safetensors"));
  const sentences = readFileSync(join(ROOT, "tests/fixtures/minilm/sentences.txt"), "utf8").split("\n").filter(Boolean);
  const [n, dim] = fx.embeddings.shape;
  assert.equal(sentences.length, n);
  const got = await page.evaluate(async (s) => {
    const t0 = performance.now();
    const v = await window.app.encoder.embed(s);
    return { vecs: v.map((x) => Array.from(x)), ms: performance.now() - t0 };
  }, sentences);
  console.log(`MiniLM, ${where}: ${n} sentences (3 to 256 tokens) in one batch in ${got.ms.toFixed(0)} ms = ${(n * 1000 / got.ms).toFixed(2)} sentences/s`);
  let lowest = 1;
  got.vecs.forEach((v, i) => {
    const w = fx.embeddings.subarray(i * dim, (i + 1) * dim);
    let d = 0, a = 0, b = 0;
    v.forEach((x, k) => { d += x * w[k]; a += x * x; b += w[k] * w[k]; });
    lowest = Math.min(lowest, d / Math.sqrt(a * b));
  });
  console.log(`MiniLM, ${where}: lowest cosine to sentence-transformers = ${lowest.toFixed(7)}`);
  return lowest;
}

test("MiniLM on the fixture sentences is within cosine 0.9999 of sentence-transformers", async () => {
  const page = await open("", ["minilm"]);
  const lowest = await minilmAgainstFixture(page, "SwiftShader WebGPU");
  assert.ok(lowest >= 0.9999, `lowest cosine ${lowest}`);
  await page.close();
});

test("a digit drawn on the pad gets a prediction, ten bars and a heatmap", async () => {
  const page = await open("", ["vit"]);
  const box = await page.locator("#pad").boundingBox();
  // a "7": the top bar, then the diagonal down to the lower left
  const at = (x, y) => [box.x + x * box.width, box.y + y * box.height];
  await page.mouse.move(...at(0.25, 0.2));
  await page.mouse.down();
  for (const [x, y] of [[0.5, 0.2], [0.75, 0.2], [0.65, 0.45], [0.55, 0.65], [0.45, 0.85]]) {
    await page.mouse.move(...at(x, y), { steps: 8 });
  }
  await page.mouse.up();
  await page.waitForFunction(() => document.querySelector("#heatmap").dataset.weights, null, { timeout: 60_000 });
  const prediction = await page.textContent("#prediction");
  assert.match(prediction, /^[0-9]$/);
  const probs = await page.$$eval("#bars .bar", (bars) => bars.map((b) => Number(b.dataset.p)));
  assert.equal(probs.length, 10);
  assert.ok(Math.abs(probs.reduce((a, b) => a + b, 0) - 1) < 1e-4, `probabilities sum to ${probs}`);
  assert.equal(probs.indexOf(Math.max(...probs)), Number(prediction));
  const weights = JSON.parse(await page.getAttribute("#heatmap", "data-weights"));
  assert.equal(weights.length, 16);
  assert.ok(weights.every((w) => w >= 0) && weights.some((w) => w > 0), `heatmap ${weights}`);
  console.log(`pad: a drawn 7 was read as ${prediction}`);
  // the strokes, the preprocessing and the model are fixed, so the answer is too
  assert.equal(prediction, "7", "the pad's preprocessing (bounding box to 32x32, 4x4 counts) should read a plain 7");
  await page.screenshot({ path: join(SHOTS, "digit-pad.png"), fullPage: true });
  assert.deepEqual(page.errors, []);
  await page.close();
});

test("a malformed model URL is a visible error, not a hung page", async () => {
  const page = await open("?vit=../no-such-model/&minilm=../no-such-model/");
  assert.equal(await page.evaluate(() => document.body.dataset.vit), "failed");
  const error = await page.textContent("#error");
  assert.equal(await page.isVisible("#error"), true);
  assert.match(error, /no-such-model\/config\.json: HTTP 404/);
  await page.screenshot({ path: join(SHOTS, "bad-url.png") });
  await page.close();
});
