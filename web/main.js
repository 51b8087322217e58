// The page: a digit pad on the ViT and a similarity matrix on MiniLM, both through
// resformer's wasm package (pkg/, built by scripts/web-build.sh). Query parameters:
// ?device=cpu|gpu forces a backend; ?vit=URL and ?minilm=URL point at other model directories.
import init, { Engine, SentenceEncoder, ViTClassifier } from "./pkg/resformer_web.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const VIT_URL = params.get("vit") ?? "../assets/vit-digits/";
const MINILM_URL = params.get("minilm") ?? "../models/all-MiniLM-L6-v2/";
const DIGITS_CSV = "../data/digits/digits.csv";

const app = { engine: null, vit: null, encoder: null, errors: [] };
window.app = app;

function fail(where, e) {
  const msg = `${where}: ${e?.message ?? e}`;
  app.errors.push(msg);
  const box = $("error");
  box.hidden = false;
  box.textContent = app.errors.join("\n");
  console.error(msg);
}

const ms = (t0) => (performance.now() - t0).toFixed(1);

// ---- the digit pad ----
const pad = $("pad");
const ctx = pad.getContext("2d", { willReadFrequently: true });
function clearPad() {
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, pad.width, pad.height);
}
clearPad();
let drawing = false;
pad.addEventListener("pointerdown", (e) => {
  drawing = true;
  pad.setPointerCapture(e.pointerId);
  ctx.strokeStyle = "#fff";
  ctx.lineWidth = pad.width / 9;
  ctx.lineCap = ctx.lineJoin = "round";
  ctx.beginPath();
  ctx.moveTo(e.offsetX, e.offsetY);
});
pad.addEventListener("pointermove", (e) => {
  if (!drawing) return;
  ctx.lineTo(e.offsetX, e.offsetY);
  ctx.stroke();
});
pad.addEventListener("pointerup", () => {
  drawing = false;
  classifyPad();
});
$("clear").addEventListener("click", () => {
  clearPad();
  $("prediction").textContent = "–";
  $("bars").replaceChildren();
});

/** The pad as the ViT reads it, prepared as the digits were (UCI optdigits): the ink's bounding
 * box scaled to fill a 32x32 frame, centred, then the inked pixels of each 4x4 block counted
 * (0-16). */
function padPixels() {
  const { data } = ctx.getImageData(0, 0, pad.width, pad.height);
  let [x0, y0, x1, y1] = [pad.width, pad.height, -1, -1];
  for (let y = 0; y < pad.height; y++)
    for (let x = 0; x < pad.width; x++)
      if (data[(y * pad.width + x) * 4] > 127) {
        x0 = Math.min(x0, x); x1 = Math.max(x1, x);
        y0 = Math.min(y0, y); y1 = Math.max(y1, y);
      }
  const out = new Float32Array(64);
  if (x1 < 0) return out;
  const [bw, bh] = [x1 - x0 + 1, y1 - y0 + 1];
  const scale = 32 / Math.max(bw, bh);
  const frame = document.createElement("canvas");
  frame.width = frame.height = 32;
  const f = frame.getContext("2d", { willReadFrequently: true });
  f.fillStyle = "#000";
  f.fillRect(0, 0, 32, 32);
  f.drawImage(pad, x0, y0, bw, bh, (32 - bw * scale) / 2, (32 - bh * scale) / 2, bw * scale, bh * scale);
  const px = f.getImageData(0, 0, 32, 32).data;
  for (let y = 0; y < 32; y++)
    for (let x = 0; x < 32; x++) out[(y >> 2) * 8 + (x >> 2)] += px[(y * 32 + x) * 4] > 127 ? 1 : 0;
  return out;
}

function drawGrid(pixels) {
  const g = $("grid").getContext("2d"), s = $("grid").width / 8;
  pixels.forEach((v, i) => {
    const c = Math.round((255 * v) / 16);
    g.fillStyle = `rgb(${c},${c},${c})`;
    g.fillRect((i % 8) * s, Math.floor(i / 8) * s, s, s);
  });
}

function drawHeatmap(weights) {
  const h = $("heatmap"), g = h.getContext("2d");
  const side = Math.round(Math.sqrt(weights.length)), s = h.width / side;
  const max = Math.max(...weights) || 1;
  g.clearRect(0, 0, h.width, h.height);
  weights.forEach((w, i) => {
    g.fillStyle = `rgba(230, 81, 0, ${(w / max).toFixed(3)})`;
    g.fillRect((i % side) * s, Math.floor(i / side) * s, s, s);
  });
  h.dataset.weights = JSON.stringify(Array.from(weights));
}

function drawBars(probs, top) {
  const rows = Array.from(probs, (p, k) => {
    const row = document.createElement("div");
    row.className = "bar" + (k === top ? " top" : "");
    row.dataset.p = p.toFixed(6);
    const label = document.createElement("span");
    label.textContent = k;
    const bar = document.createElement("div");
    bar.style.width = `${(200 * p).toFixed(1)}px`;
    const val = document.createElement("span");
    val.textContent = `${(100 * p).toFixed(1)}%`;
    row.append(label, bar, val);
    return row;
  });
  $("bars").replaceChildren(...rows);
}

async function classify(pixels) {
  if (!app.vit) return;
  try {
    drawGrid(pixels);
    const t0 = performance.now();
    const r = await app.vit.classify(pixels);
    $("vit-time").textContent = `(forward ${ms(t0)} ms)`;
    const top = r.predictions[0];
    $("prediction").textContent = String(top);
    drawBars(r.probabilities, top);
    drawHeatmap(app.vit.attention(pixels, app.vit.layers - 1));
  } catch (e) {
    fail("classify", e);
  }
}
const classifyPad = () => classify(padPixels());

let digits = null;
$("sample").addEventListener("click", async () => {
  try {
    digits ??= (await (await fetch(DIGITS_CSV)).text()).trim().split("\n");
    const row = digits[Math.floor(Math.random() * digits.length)].split(",").map(Number);
    const pixels = Float32Array.from(row.slice(0, 64));
    clearPad();
    const s = pad.width / 8;
    pixels.forEach((v, i) => {
      const c = Math.round((255 * v) / 16);
      ctx.fillStyle = `rgb(${c},${c},${c})`;
      ctx.fillRect((i % 8) * s, Math.floor(i / 8) * s, s, s);
    });
    await classify(pixels);
  } catch (e) {
    fail("test digit", e);
  }
});

// ---- sentence similarity ----
function cosine(a, b) {
  let d = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) {
    d += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return d / Math.sqrt(na * nb);
}

async function compare() {
  const sentences = $("sentences").value.split("\n").map((s) => s.trim()).filter(Boolean);
  if (!app.encoder || sentences.length === 0) return;
  try {
    const t0 = performance.now();
    const vecs = await app.encoder.embed(sentences);
    $("minilm-time").textContent = `(forward of ${sentences.length} sentences ${ms(t0)} ms)`;
    const table = $("matrix");
    const head = document.createElement("tr");
    head.append(document.createElement("th"), ...sentences.map((s, j) => {
      const th = document.createElement("th");
      th.textContent = `${j + 1}`;
      th.title = s;
      return th;
    }));
    const rows = sentences.map((s, i) => {
      const tr = document.createElement("tr");
      const th = document.createElement("th");
      th.textContent = `${i + 1}. ${s}`;
      th.title = s;
      tr.append(th, ...vecs.map((v) => {
        const td = document.createElement("td");
        const c = cosine(vecs[i], v);
        td.textContent = c.toFixed(3);
        td.style.background = `rgba(59, 111, 216, ${Math.max(0, c).toFixed(3)})`;
        td.style.color = c > 0.6 ? "#fff" : "#222";
        return td;
      }));
      return tr;
    });
    table.replaceChildren(head, ...rows);
  } catch (e) {
    fail("embed", e);
  }
}
$("compare").addEventListener("click", compare);

// ---- start ----
async function start() {
  await init();
  const t0 = performance.now();
  app.engine = await Engine.create(params.get("device") ?? undefined);
  const e = app.engine;
  $("adapter").textContent = `Running on ${e.adapter} (${e.backend})` +
    (e.fallbackReason ? ` — no WebGPU: ${e.fallbackReason}` : "") + ` · started in ${ms(t0)} ms`;
  $("adapter").dataset.state = e.backend;
  const vit = ViTClassifier.load(e, VIT_URL).then((m) => { app.vit = m; }, (err) => fail(`ViT from ${VIT_URL}`, err));
  const minilm = SentenceEncoder.load(e, MINILM_URL).then(
    (m) => { app.encoder = m; $("compare").disabled = false; },
    (err) => fail(`MiniLM from ${MINILM_URL}`, err),
  );
  await vit;
  document.body.dataset.vit = app.vit ? "ready" : "failed";
  await minilm;
  document.body.dataset.minilm = app.encoder ? "ready" : "failed";
  if (app.encoder) await compare();
}
start().catch((e) => {
  fail("engine", e);
  $("adapter").dataset.state = "failed";
  document.body.dataset.vit = document.body.dataset.minilm = "failed";
});
