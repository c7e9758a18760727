// The page: the gpu-siamese core in WebAssembly (pkg/, built by `make web-build`) on this browser's
// WebGPU. Compare, search and train; every number comes from the core's WGSL kernels.
import init, { open_engine } from './pkg/gpu_siamese_web.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
let engine = null;
let model = null;
let modelInfo = null;

function show(id, text, isError = false) {
  const el = $(id);
  el.textContent = text;
  el.classList.toggle('error', isError);
}

// What the core threw (a string from Rust, or a JavaScript error).
const message = (e) => (typeof e === 'string' ? e : e && e.message ? e.message : String(e));

async function fetchBytes(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: ${response.status} ${response.statusText}`);
  return new Uint8Array(await response.arrayBuffer());
}

// ---- the adapter ---------------------------------------------------------------------------------
async function openEngine() {
  await init();
  try {
    engine = await open_engine();
  } catch (e) {
    show('adapter', `No GPU for this page: ${message(e)}`, true);
    for (const b of document.querySelectorAll('button, input')) b.disabled = true;
    throw e;
  }
  const limits = JSON.parse(engine.limits());
  // WebGPU tells a page little of its adapter (wgpu's description of it is empty): what it does tell.
  const info = (await navigator.gpu.requestAdapter())?.info;
  const name = [info?.vendor, info?.architecture, info?.description].filter(Boolean).join(' ') || 'unnamed';
  show('adapter', `WebGPU adapter: ${name} — storage bindings up to ${(limits.max_storage_buffer_binding_size / 2 ** 20).toFixed(0)} MiB`);
}

// ---- the model -----------------------------------------------------------------------------------
async function loadModel(bytes, name) {
  try {
    const loaded = engine.load_model(bytes, name);
    if (model) model.free();
    model = loaded;
    modelInfo = JSON.parse(model.info());
    const [h, w, c] = modelInfo.input;
    show('model-info', `${name}: ${modelInfo.arch} — ${h}x${w}x${c} in, ${modelInfo.embedding_dim} out, ` +
      `${modelInfo.parameters.toLocaleString()} parameters, trained ${modelInfo.epoch} epochs, threshold ${modelInfo.threshold.toFixed(4)}`);
    for (const side of sides) if (side.bytes) await side.prepare();
    await compare();
    if (gallery.files.length) await embedGallery();
  } catch (e) {
    show('model-info', message(e), true);
  }
}

$('model-file').addEventListener('change', async (event) => {
  const file = event.target.files[0];
  if (file) await loadModel(new Uint8Array(await file.arrayBuffer()), file.name);
});
$('model-load-url').addEventListener('click', async () => {
  const url = $('model-url').value.trim();
  if (!url) return;
  try {
    await loadModel(await fetchBytes(url), url);
  } catch (e) {
    show('model-info', message(e), true);
  }
});

// A prepared input (HWC bytes) drawn on a canvas at the model's size.
function draw(canvas, input, [h, w, c]) {
  canvas.width = w;
  canvas.height = h;
  const context = canvas.getContext('2d');
  const picture = context.createImageData(w, h);
  for (let i = 0; i < h * w; i++) {
    for (let k = 0; k < 3; k++) picture.data[4 * i + k] = input[i * c + (c === 3 ? k : 0)];
    picture.data[4 * i + 3] = 255;
  }
  context.putImageData(picture, 0, 0);
}

// ---- compare -------------------------------------------------------------------------------------
function dropZone(id, onBytes) {
  const zone = $(id);
  const input = zone.querySelector('input');
  zone.addEventListener('click', () => input.click());
  input.addEventListener('change', async () => input.files[0] && onBytes(new Uint8Array(await input.files[0].arrayBuffer()), input.files[0].name));
  zone.addEventListener('dragover', (e) => { e.preventDefault(); zone.classList.add('over'); });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', async (e) => {
    e.preventDefault();
    zone.classList.remove('over');
    const file = e.dataTransfer.files[0];
    if (file) onBytes(new Uint8Array(await file.arrayBuffer()), file.name);
  });
  return zone;
}

const sides = ['drop-a', 'drop-b'].map((id) => {
  const side = { bytes: null, name: '', input: null };
  const zone = dropZone(id, async (bytes, name) => {
    side.bytes = bytes;
    side.name = name;
    await side.prepare();
    await compare();
  });
  side.prepare = async () => {
    side.input = null;
    const note = zone.querySelector('small');
    note.textContent = side.name;
    if (!model) return;
    try {
      side.input = model.prepare(side.bytes, side.name);
      draw(zone.querySelector('canvas'), side.input, modelInfo.input);
      zone.classList.add('filled');
    } catch (e) {
      zone.classList.remove('filled');
      note.textContent = message(e);
    }
  };
  return side;
});

async function compare() {
  const verdict = $('verdict');
  verdict.className = 'verdict';
  if (!model) { verdict.textContent = sides.some((s) => s.bytes) ? 'Load a model to compare.' : ''; return null; }
  if (!sides.every((s) => s.input)) { verdict.textContent = ''; return null; }
  const inputs = new Uint8Array(sides[0].input.length * 2);
  inputs.set(sides[0].input, 0);
  inputs.set(sides[1].input, sides[0].input.length);
  const [distance] = await model.distances(inputs, new Uint32Array([0, 1]));
  const same = distance < modelInfo.threshold;
  verdict.textContent = `${same ? 'Same' : 'Different'}: distance ${distance.toFixed(4)} (threshold ${modelInfo.threshold.toFixed(4)})`;
  verdict.classList.add(same ? 'same' : 'different');
  return { distance, verdict: same ? 'same' : 'different', threshold: modelInfo.threshold, text: verdict.textContent };
}

// ---- search --------------------------------------------------------------------------------------
const gallery = { files: [], inputs: null, names: [], embeddings: null };
let lastSearch = null;
const PICTURE = /\.(png|jpe?g|bmp|gif|webp|tiff?)$/i;

async function filesOfEntry(entry, path = '') {
  if (entry.isFile) {
    return PICTURE.test(entry.name) ? [await new Promise((ok, fail) => entry.file((f) => ok({ file: f, path: path + entry.name }), fail))] : [];
  }
  const reader = entry.createReader();
  const out = [];
  for (;;) {
    const batch = await new Promise((ok, fail) => reader.readEntries(ok, fail));
    if (!batch.length) return out;
    for (const child of batch) out.push(...(await filesOfEntry(child, `${path}${entry.name}/`)));
  }
}

async function setGallery(files) {
  gallery.files = files.sort((a, b) => a.path.localeCompare(b.path));
  await embedGallery();
}

async function embedGallery() {
  if (!model) { show('search-status', `${gallery.files.length} pictures; load a model to search them.`); return; }
  const inputs = [];
  const names = [];
  const skipped = [];
  for (const { file, path } of gallery.files) {
    try {
      inputs.push(model.prepare(new Uint8Array(await file.arrayBuffer()), path));
      names.push(path);
    } catch (e) {
      skipped.push(message(e));
    }
  }
  if (!inputs.length) { show('search-status', `No picture in the folder could be read${skipped.length ? `: ${skipped[0]}` : ''}.`, true); return; }
  const size = inputs[0].length;
  gallery.inputs = new Uint8Array(size * inputs.length);
  inputs.forEach((x, i) => gallery.inputs.set(x, i * size));
  gallery.names = names;
  const started = performance.now();
  gallery.embeddings = await model.embed(gallery.inputs);
  show('search-status', `${names.length} pictures embedded in ${((performance.now() - started) / 1000).toFixed(1)} s` +
    (skipped.length ? `; ${skipped.length} skipped (${skipped[0]})` : '') + '. Choose a query picture.');
}

// The tutorial's distance, sqrt(max(sum of squares, 1e-7)), between embeddings the GPU computed.
function distance(a, b, dim, i) {
  let sum = 0;
  for (let k = 0; k < dim; k++) { const d = a[k] - b[i * dim + k]; sum += d * d; }
  return Math.sqrt(Math.max(sum, 1e-7));
}

async function search(bytes, name) {
  if (!gallery.embeddings) { show('search-status', 'Choose a folder (and a model) first.', true); return; }
  try {
    const query = model.prepare(bytes, name);
    const q = await model.embed(query);
    const dim = modelInfo.embedding_dim;
    const k = Math.max(1, Math.min(64, Number($('search-k').value) || 8));
    const ranked = gallery.names.map((n, i) => [distance(q, gallery.embeddings, dim, i), i]).sort((x, y) => x[0] - y[0]).slice(0, k);
    lastSearch = ranked.map(([d, i]) => ({ name: gallery.names[i], distance: d }));
    const list = $('search-results');
    list.replaceChildren();
    const size = query.length;
    for (const [d, i] of ranked) {
      const item = document.createElement('li');
      const canvas = document.createElement('canvas');
      draw(canvas, gallery.inputs.subarray(i * size, (i + 1) * size), modelInfo.input);
      item.append(canvas, `${gallery.names[i]} — ${d.toFixed(4)}${d < modelInfo.threshold ? ' (same)' : ''}`);
      list.append(item);
    }
    show('search-status', `The ${ranked.length} nearest of ${gallery.names.length} to ${name}.`);
  } catch (e) {
    show('search-status', message(e), true);
  }
}

$('search-folder').addEventListener('change', (e) => setGallery([...e.target.files].filter((f) => PICTURE.test(f.name)).map((f) => ({ file: f, path: f.webkitRelativePath || f.name }))));
$('search-query').addEventListener('change', async (e) => { const f = e.target.files[0]; if (f) await search(new Uint8Array(await f.arrayBuffer()), f.name); });
$('search-section').addEventListener('dragover', (e) => e.preventDefault());
$('search-section').addEventListener('drop', async (e) => {
  e.preventDefault();
  const entries = [...e.dataTransfer.items].map((item) => item.webkitGetAsEntry && item.webkitGetAsEntry()).filter(Boolean);
  const files = [];
  for (const entry of entries) files.push(...(await filesOfEntry(entry)));
  await setGallery(files);
});

// ---- train ---------------------------------------------------------------------------------------
const IDX = ['train-images-idx3-ubyte', 'train-labels-idx1-ubyte', 't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'];
let stopRequested = false;

async function fetchIdx(stem) {
  for (const name of [`${stem}.gz`, stem]) {
    const response = await fetch(`data/${name}`);
    if (response.ok) return new Uint8Array(await response.arrayBuffer());
  }
  throw new Error(`the server's /data/ has no ${stem}(.gz): start the page with gpu-siamese web --data DIR, DIR holding Fashion-MNIST's IDX files`);
}

function plot(curve) {
  const canvas = $('train-curve');
  const context = canvas.getContext('2d');
  const { width, height } = canvas;
  context.clearRect(0, 0, width, height);
  const all = [...curve.loss.map((p) => p[1]), ...curve.val.map((p) => p[1])].filter(Number.isFinite);
  if (!all.length) return;
  const top = Math.max(...all) * 1.05;
  const x = (step) => 40 + (width - 50) * step / Math.max(1, curve.steps);
  const y = (v) => height - 20 - (height - 30) * v / top;
  context.strokeStyle = '#999';
  context.strokeRect(40, 10, width - 50, height - 30);
  context.fillStyle = '#555';
  context.font = '11px sans-serif';
  context.fillText(top.toFixed(3), 2, 16);
  context.fillText('0', 28, height - 20);
  context.fillText(`step ${curve.steps}`, width - 70, height - 5);
  const line = (points, colour, dots) => {
    context.strokeStyle = colour;
    context.fillStyle = colour;
    context.beginPath();
    points.forEach(([s, v], i) => (i ? context.lineTo(x(s), y(v)) : context.moveTo(x(s), y(v))));
    context.stroke();
    if (dots) for (const [s, v] of points) context.fillRect(x(s) - 3, y(v) - 3, 6, 6);
  };
  line(curve.loss, '#1f6feb', false);
  line(curve.val, '#d1242f', true);
  context.fillStyle = '#1f6feb';
  context.fillText('loss (running mean of the epoch)', 50, 24);
  context.fillStyle = '#d1242f';
  context.fillText('val_loss', 260, 24);
}

// Trains with the form's settings; returns the last epoch's figures and the checkpoint's bytes.
async function train() {
  if (!engine) return null;
  stopRequested = false;
  $('train-start').disabled = true;
  $('train-stop').disabled = false;
  $('train-download').classList.add('disabled');
  let training = null;
  try {
    show('train-status', 'Fetching Fashion-MNIST…');
    const [a, b, c, d] = await Promise.all(IDX.map(fetchIdx));
    const options = {
      epochs: Number($('train-epochs').value), seed: Number($('train-seed').value), batch_size: Number($('train-batch').value),
      learning_rate: 1e-3, train_limit: Number($('train-limit').value), test_limit: Number($('test-limit').value),
    };
    training = engine.train(a, b, c, d, JSON.stringify(options));
    const info = JSON.parse(training.info());
    const total = info.steps_per_epoch * info.epochs;
    const curve = { steps: total, loss: [], val: [] };
    show('train-status', `${info.arch}: ${info.parameters.toLocaleString()} parameters, ${info.pairs_per_epoch} pairs an epoch in ${info.steps_per_epoch} steps of ${info.batch_size}.`);
    let chunk = 1;
    let last = null;
    for (let epoch = 0; epoch < info.epochs && !stopRequested; epoch++) {
      const started = performance.now();
      while (!training.epoch_submitted() && !stopRequested) {
        const t0 = performance.now();
        training.submit(chunk);
        const { running } = JSON.parse(await training.losses());
        const step = epoch * info.steps_per_epoch + training.steps_done();
        curve.loss.push([step, running]);
        // About a tenth of a second of GPU work between updates of the page.
        const ms = performance.now() - t0;
        chunk = Math.max(1, Math.min(64, Math.round(chunk * 100 / Math.max(ms, 1))));
        const perStep = (performance.now() - started) / training.steps_done();
        $('train-progress').value = step / total;
        show('train-status', `Epoch ${epoch + 1}/${info.epochs}  ${training.steps_done()}/${info.steps_per_epoch} — ${perStep.toFixed(0)} ms/step — loss: ${running.toFixed(4)}`);
        plot(curve);
      }
      if (stopRequested) break;
      show('train-status', `Epoch ${epoch + 1}/${info.epochs}: validating…`);
      last = JSON.parse(await training.validate());
      curve.val.push([(epoch + 1) * info.steps_per_epoch, last.val_loss]);
      plot(curve);
      show('train-status', `Epoch ${last.epoch}/${info.epochs} — loss: ${last.loss.toFixed(4)} — val_loss: ${last.val_loss.toFixed(4)} — val_acc: ${last.val_acc.toFixed(4)} — threshold ${last.threshold.toFixed(4)}`);
    }
    const bytes = await training.checkpoint();
    const link = $('train-download');
    if (link.href) URL.revokeObjectURL(link.href);
    link.href = URL.createObjectURL(new Blob([bytes], { type: 'application/octet-stream' }));
    link.classList.remove('disabled');
    if (stopRequested) show('train-status', `Stopped${last ? ` after epoch ${last.epoch}` : ' in the first epoch'}; the checkpoint holds the weights as they are.`);
    await loadModel(bytes, 'the tab\'s run');
    return { last, bytes };
  } catch (e) {
    show('train-status', message(e), true);
    return { error: message(e) };
  } finally {
    // The run's images and GPU buffers go with it.
    if (training) training.free();
    $('train-start').disabled = false;
    $('train-stop').disabled = true;
  }
}

$('train-start').addEventListener('click', train);
$('train-stop').addEventListener('click', () => { stopRequested = true; });

// ---- start ---------------------------------------------------------------------------------------
// ?model=URL&a=URL&b=URL loads a model and compares two pictures at once (a link to a comparison);
// ?gallery=URL (a JSON list of picture URLs) with &query=URL searches them at once (and &k=N);
// ?train=1 (with epochs, batch, train_limit, test_limit, seed) starts training at once; ?report=1
// also posts the outcome as JSON to /result (the browser tests read it).
async function start() {
  await openEngine();
  const url = params.get('model');
  if (url) {
    $('model-url').value = url;
    await loadModel(await fetchBytes(url), url);
  }
  for (const [key, side] of [['a', sides[0]], ['b', sides[1]]]) {
    const picture = params.get(key);
    if (picture) { side.bytes = await fetchBytes(picture); side.name = picture; await side.prepare(); }
  }
  const outcome = await compare();
  if (params.get('gallery')) {
    const urls = await (await fetch(params.get('gallery'))).json();
    const files = [];
    for (const url of urls) files.push({ file: new File([await fetchBytes(url)], url), path: url });
    await setGallery(files);
    if (params.get('k')) $('search-k').value = params.get('k');
    if (params.get('query')) await search(await fetchBytes(params.get('query')), params.get('query'));
  }
  let trained = null;
  if (params.get('train')) {
    for (const [key, id] of [['epochs', 'train-epochs'], ['batch', 'train-batch'], ['train_limit', 'train-limit'], ['test_limit', 'test-limit'], ['seed', 'train-seed']]) {
      if (params.get(key)) $(id).value = params.get(key);
    }
    trained = await train();
  }
  if (params.get('report')) {
    const report = { outcome, shown: $('verdict').textContent, adapter: $('adapter').textContent, model: $('model-info').textContent,
      search: lastSearch, search_status: $('search-status').textContent };
    if (trained) {
      report.train = { last: trained.last, error: trained.error, status: $('train-status').textContent, checkpoint: trained.bytes ? Array.from(trained.bytes) : null };
    }
    await fetch('/result', { method: 'POST', body: JSON.stringify(report) });
  }
}

start().catch(async (e) => {
  console.error(e);
  if (params.get('report')) await fetch('/result', { method: 'POST', body: JSON.stringify({ error: message(e), shown: $('adapter').textContent }) });
});
