// cnnlab explore: the page over the app's JSON API (EXPLORE_API). Every number shown comes from the API; the
// page only lays it out. This file: the shared helpers and state, the runs list, the input (test image, file,
// drawing), the prediction, the start. explore_views.js (loaded first): the overview of every layer, one cell's
// detail, where the model looks, the filters, the arithmetic playground.
'use strict';
const $ = function (id) { return ROOT.getElementById(id); };  // ROOT: the document, or the widget's shadow root
const SHOW_INPUTS = 16;  // input channels drawn in a cell's detail; the rest are summed in one line
const MAP_SIDE = 96;  // pixels a feature map is drawn at (about; integer scale for small maps)
const MANY_CLASSES = 20;  // more classes than this: the probabilities sorted, the likeliest first
const S = {id: null, info: null, source: {kind: 'index', index: 0}, cell: null, seq: {}, openStages: new Set(),
           live: {busy: false, again: false, views: false}, player: null, input: null};

// ---- helpers (ROOT, TRANSPORT and CNNLAB come from the page, or the widget's render) -------------------------------------------------------------------------------------------
function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const key in attrs || {}) if (attrs[key] !== null && attrs[key] !== undefined) e.setAttribute(key, attrs[key]);
  if (text !== undefined && text !== null) e.textContent = text;
  return e;
}
function fmt4(v) {  // the one format for a cell's total and its value in the map: equal numbers look equal
  if (v === null || v === undefined) return 'n/a';
  const s = Number(v).toFixed(4);
  return s === '-0.0000' ? '0.0000' : s;
}
function short(v) { return v === null || v === undefined ? '' : String(Number(Number(v).toPrecision(2))); }
function pair(v) {  // [3, 3] -> '3', [3, 5] -> '3x5', 'same' -> 'same'
  if (v === null || v === undefined) return '';
  if (!Array.isArray(v)) return String(v);
  return v.length === 2 && v[0] === v[1] ? String(v[0]) : v.join('x');
}
function showError(id, message) { const e = $(id); e.textContent = message; e.hidden = false; }
function clearError(id) { const e = $(id); e.textContent = ''; e.hidden = true; }
function fresh(view) { S.seq[view] = (S.seq[view] || 0) + 1; const n = S.seq[view]; return function () { return S.seq[view] === n; }; }

// every answer comes through TRANSPORT (explore_transport.js): HTTP in the app, messages in the notebook widget
function api(name, body, subject) { return TRANSPORT.request(name, subject === undefined ? S.id : subject, body); }
function withImage(extra) { return Object.assign(currentImage(), extra || {}); }

// ---- runs list -----------------------------------------------------------------------------------------
function renderSubjects(list) {
  const body = $('subjects').querySelector('tbody');
  body.textContent = '';
  list.forEach(function (s) {
    const row = el('tr', {'data-id': s.id}), link = el('a', {href: '#subject=' + encodeURIComponent(s.id)}, s.name);
    row.appendChild(el('td')).appendChild(link);
    row.appendChild(el('td', {}, s.model));
    row.appendChild(el('td', {}, s.dataset || ''));
    row.appendChild(el('td', {class: 'num'}, s.test_acc === null || s.test_acc === undefined ? '' : s.test_acc.toFixed(2) + '%'));
    body.appendChild(row);
  });
}
function renderCurves(list) {
  const runs = list.filter(function (s) { return s.curves && s.curves.epoch && s.curves.epoch.length; });
  if (!runs.length) { $('curves').hidden = true; $('curves-note').textContent = 'No learning curves (no finished runs).'; return; }
  if (typeof Chart === 'undefined') { $('curves-note').textContent = 'Chart.js did not load: no curves.'; return; }
  const datasets = runs.map(function (s) {
    const c = s.curves, test = c.test_acc && c.test_acc.some(function (v) { return v !== null; });
    const acc = test ? c.test_acc : (c.val_acc || []);
    return {label: s.name + (test ? ' (test)' : ' (validation)'), spanGaps: true, pointRadius: 2,
            data: c.epoch.map(function (e, i) { return {x: e, y: acc[i] === undefined ? null : acc[i]}; })};
  });
  new Chart($('curves'), {type: 'line', data: {datasets: datasets}, options: {animation: false, responsive: false,
    scales: {x: {type: 'linear', title: {display: true, text: 'epoch'}},
             y: {title: {display: true, text: 'accuracy (%)'}}}}});
}

// ---- one subject: set up its controls --------------------------------------------------------------------
async function openSubject(id) {
  const current = fresh('subject');
  clearError('page-error');
  let info;
  try { info = await api('subject', undefined, id); } catch (err) { showError('page-error', err.message); return; }
  if (!current()) return;
  S.id = id; S.info = info; S.cell = null; S.openStages.clear(); S.input = null;
  $('subject-name').textContent = ': ' + info.name + (info.dataset ? ' on ' + info.dataset : '');
  $('subject').hidden = false;
  setupIndex(info); setupCanvas(info); setupProbs(info); setupGradcamControls(info); setupFilters(info);
  $('detail').textContent = 'No cell chosen yet.'; $('rf-box').style.display = 'none'; $('erf').hidden = true;
  S.source = info.test_size ? {kind: 'index', index: 0} : {kind: 'canvas'};
  $('index').value = 0;
  refreshAll();
}
function setupIndex(info) {
  $('index').disabled = !info.test_size;
  $('index').max = info.test_size ? info.test_size - 1 : 0;
  $('index-label').textContent = info.test_size ? 'of ' + info.test_size : '(no dataset: draw or upload an image)';
}
function setupProbs(info) {
  const body = $('probs').querySelector('tbody');
  body.textContent = '';
  info.classes.forEach(function (name, i) {
    const row = el('tr', {'data-class': i, 'data-p': ''});
    row.appendChild(el('td', {class: 'cls'}, name));
    row.appendChild(el('td', {class: 'barcell'})).appendChild(el('div', {class: 'bar'}));
    row.appendChild(el('td', {class: 'num'}));
    body.appendChild(row);
  });
}
function setupGradcamControls(info) {
  const cls = $('gc-class'), layer = $('gc-layer');
  cls.textContent = ''; layer.textContent = '';
  cls.appendChild(el('option', {value: ''}, 'the predicted class'));
  info.classes.forEach(function (name, i) { cls.appendChild(el('option', {value: i}, name)); });
  const auto = info.gradcam_layer;
  layer.appendChild(el('option', {value: ''}, 'automatic' + (auto ? ' (' + auto.name + ': ' + auto.reason + ')' : '')));
  info.layers.forEach(function (name) { layer.appendChild(el('option', {value: name}, name)); });
}

// ---- input: test image, file, drawing ----------------------------------------------------------------------
function currentImage() {
  if (S.source.kind === 'index') return {index: S.source.index};
  if (S.source.kind === 'upload') return {image: S.source.data};
  return {image: $('canvas').toDataURL('image/png')};
}
function setupCanvas(info) {
  const canvas = $('canvas');
  canvas.dataset.gray = info.gray ? '1' : '0';
  $('pen-box').hidden = !!info.gray;
  clearCanvas();
}
function clearCanvas() {
  const canvas = $('canvas'), ctx = canvas.getContext('2d');
  ctx.fillStyle = canvas.dataset.gray === '1' ? '#000000' : '#ffffff';
  ctx.fillRect(0, 0, canvas.width, canvas.height);
}
function canvasPoint(canvas, evt) {
  const r = canvas.getBoundingClientRect();
  return [(evt.clientX - r.left) * canvas.width / r.width, (evt.clientY - r.top) * canvas.height / r.height];
}
function strokeTo(canvas, from, to) {
  const ctx = canvas.getContext('2d');
  ctx.strokeStyle = ctx.fillStyle = canvas.dataset.gray === '1' ? '#ffffff' : $('pen').value;
  ctx.lineWidth = canvas.width / 12; ctx.lineCap = 'round'; ctx.lineJoin = 'round';
  ctx.beginPath(); ctx.moveTo(from[0], from[1]); ctx.lineTo(to[0], to[1]); ctx.stroke();
}
function bindCanvas() {
  const canvas = $('canvas');
  let last = null;
  canvas.addEventListener('pointerdown', function (evt) {
    if (!S.info) return;
    canvas.setPointerCapture(evt.pointerId);
    last = canvasPoint(canvas, evt);
    S.source = {kind: 'canvas'};
    strokeTo(canvas, last, last); livePredict();
  });
  canvas.addEventListener('pointermove', function (evt) {
    if (!last) return;
    const point = canvasPoint(canvas, evt);
    strokeTo(canvas, last, point); last = point; livePredict();
  });
  function end() { if (last) { last = null; refreshAll(); } }
  canvas.addEventListener('pointerup', end);
  canvas.addEventListener('pointercancel', end);
  $('clear').addEventListener('click', function () { clearCanvas(); S.source = {kind: 'canvas'}; if (S.info) refreshAll(); });
}
function bindInputs() {
  $('index').addEventListener('input', function () {
    S.source = {kind: 'index', index: parseInt($('index').value, 10)};
    if (Number.isNaN(S.source.index)) { showError('input-error', 'The test image index must be a whole number.'); return; }
    refreshAll();
  });
  $('upload').addEventListener('change', function () {
    const file = $('upload').files[0];
    if (!file) return;
    const reader = new FileReader();
    reader.onload = function () { S.source = {kind: 'upload', data: reader.result}; refreshAll(); };
    reader.onerror = function () { showError('input-error', 'Could not read ' + file.name + '.'); };
    reader.readAsDataURL(file);
  });
}

// ---- prediction: every /predict goes through this one loop, so at most one is in flight; a change while one
// is in flight sends the latest image when its answer arrives (live while drawing). views: then refresh the
// other views (after a stroke ends, or any other change of the image).
function livePredict(views) {
  const live = S.live;
  if (views) live.views = true;
  if (live.busy) { live.again = true; return; }
  live.busy = true; live.again = false;
  predict().then(function (ok) {
    live.busy = false;
    if (live.again) { livePredict(); return; }
    if (live.views && ok) refreshViews();
    live.views = false;
  });
}
async function predict() {
  const current = fresh('predict');
  try {
    const answer = await api('predict', withImage());
    if (current()) { clearError('input-error'); renderPrediction(answer); }
    return true;
  } catch (err) { if (current()) showError('input-error', err.message); return false; }
}
function renderPrediction(a) {
  const classes = a.classes || S.info.classes, best = a.probs[a.predicted];
  $('predicted').textContent = 'predicted: ' + classes[a.predicted] + ' (' + (100 * best).toFixed(1) + '%)' +
    (a.label === null || a.label === undefined ? '' : '; label: ' + classes[a.label]);
  $('seen').src = a.input; $('rf-image').src = a.input; S.input = a.input;
  if (S.source.kind === 'index') $('index-label').textContent = 'of ' + S.info.test_size + '; label: ' +
    (a.label === null || a.label === undefined ? 'none' : classes[a.label]);
  else if (S.info.test_size) $('index-label').textContent = 'of ' + S.info.test_size + ' (showing ' +
    (S.source.kind === 'upload' ? 'your file' : 'your drawing') + ')';
  const rows = Array.from($('probs').querySelectorAll('tr'));
  rows.forEach(function (row) {
    const i = parseInt(row.dataset.class, 10), p = a.probs[i];
    row.dataset.p = p; row.classList.toggle('top', i === a.predicted);
    row.querySelector('.bar').style.width = (100 * p).toFixed(1) + '%';
    row.querySelector('.num').textContent = (100 * p).toFixed(1) + '%';
  });
  if (rows.length > MANY_CLASSES) {  // many classes: the likeliest first, in a scrolling box
    const body = $('probs').querySelector('tbody');
    rows.sort(function (r, q) { return q.dataset.p - r.dataset.p; }).forEach(function (row) { body.appendChild(row); });
  }
}
function refreshAll() { if (S.info) livePredict(true); }
function refreshViews() {  // after a prediction succeeded (a wrong image: one line by the input, nothing else asked)
  loadOverview(); loadGradcam();
  if (S.cell) loadDetail();
}

// ---- start ---------------------------------------------------------------------------------------------
function hashSubject() {
  const m = /(?:^#|&)subject=([^&]*)/.exec(location.hash);
  return m ? decodeURIComponent(m[1]) : null;
}
async function start() {
  bindCanvas(); bindInputs(); bindPlayground();
  ['gc-class', 'gc-layer'].forEach(function (id) { $(id).addEventListener('change', loadGradcam); });
  ROOT.querySelectorAll('.gc-method').forEach(function (m) { m.addEventListener('change', loadGradcam); });
  $('filters-layer').addEventListener('change', loadFilters);
  if (!CNNLAB.widget) window.addEventListener('hashchange', function () { const id = hashSubject(); if (id) openSubject(id); });
  let list = [];
  try { list = await api('subjects'); } catch (err) { showError('page-error', err.message); return; }
  if (list.length > 1) { $('runs').hidden = false; renderSubjects(list); renderCurves(list); }
  const first = (CNNLAB.widget ? null : hashSubject()) || CNNLAB.subject || (list.length === 1 ? list[0].id : null);
  if (first) openSubject(first);
}
start();
