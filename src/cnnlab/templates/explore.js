// cnnlab explore: the page's views over the app's JSON API (EXPLORE_API). Every number shown comes from the
// API; this file only lays it out. Views: the runs list, the input (test image, file, drawing), the prediction,
// the overview of every layer, one cell's detail, where the model looks, the filters, the arithmetic playground.
(function () {
  'use strict';
  const $ = function (id) { return document.getElementById(id); };
  const SHOW_INPUTS = 16;  // input channels drawn in a cell's detail; the rest are summed in one line
  const MAP_SIDE = 96;  // pixels a feature map is drawn at (about; integer scale for small maps)
  const S = {id: null, info: null, source: {kind: 'index', index: 0}, cell: null, seq: {}, openStages: new Set(),
             live: {busy: false, again: false}, player: null, input: null};

  // ---- helpers -------------------------------------------------------------------------------------------
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
  function pair(v) { return !v ? '' : (v.length === 2 && v[0] === v[1] ? String(v[0]) : v.join('x')); }
  function showError(id, message) { const e = $(id); e.textContent = message; e.hidden = false; }
  function clearError(id) { const e = $(id); e.textContent = ''; e.hidden = true; }
  function fresh(view) { S.seq[view] = (S.seq[view] || 0) + 1; const n = S.seq[view]; return function () { return S.seq[view] === n; }; }

  async function api(path, body) {
    const headers = {'Accept': 'application/json'};
    if (CNNLAB.token) headers['X-Cnnlab-Token'] = CNNLAB.token;
    const init = {headers: headers};
    if (body !== undefined) { init.method = 'POST'; headers['Content-Type'] = 'application/json'; init.body = JSON.stringify(body); }
    let response;
    try { response = await fetch(path, init); } catch (err) { throw new Error('the server did not answer (is cnnlab explore still running?)'); }
    let data = null;
    try { data = await response.json(); } catch (err) { data = null; }
    if (!response.ok) throw new Error((data && data.error) || ('the server answered ' + response.status));
    return data;
  }
  function subjectPath(what) { return '/api/subjects/' + encodeURIComponent(S.id) + '/' + what; }
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
    try { info = await api('/api/subjects/' + encodeURIComponent(id)); } catch (err) { showError('page-error', err.message); return; }
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
    $('index').addEventListener('change', function () {
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

  // ---- prediction (live while drawing: at most one /predict in flight, then the latest canvas) --------------
  function livePredict() {
    const live = S.live;
    if (live.busy) { live.again = true; return; }
    live.busy = true; live.again = false;
    predict().then(function () { live.busy = false; if (live.again) livePredict(); });
  }
  async function predict() {
    const current = fresh('predict');
    try {
      const answer = await api(subjectPath('predict'), withImage());
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
    $('probs').querySelectorAll('tr').forEach(function (row) {
      const i = parseInt(row.dataset.class, 10), p = a.probs[i];
      row.dataset.p = p; row.classList.toggle('top', i === a.predicted);
      row.querySelector('.bar').style.width = (100 * p).toFixed(1) + '%';
      row.querySelector('.num').textContent = (100 * p).toFixed(1) + '%';
    });
  }
  async function refreshAll() {
    if (!S.info) return;
    if (!(await predict())) return;  // the image itself is wrong: one line by the input, nothing else asked
    loadOverview(); loadGradcam();
    if (S.cell) loadDetail();
  }

  // ---- overview: every layer ---------------------------------------------------------------------------------
  async function loadOverview() {
    const current = fresh('overview');
    try {
      const answer = await api(subjectPath('layers'), withImage({channels: 8}));
      if (!current()) return;
      clearError('overview-error'); renderOverview(answer);
    } catch (err) { if (current()) showError('overview-error', err.message); }
  }
  function renderOverview(a) {
    const root = $('overview'), groups = {};
    root.textContent = '';
    const stages = {};
    (a.stages || []).forEach(function (st) { stages[st.name] = st; });
    a.layers.forEach(function (layer) {
      if (!a.deep || !layer.stage) { root.appendChild(layerCard(layer)); return; }
      if (!groups[layer.stage]) { groups[layer.stage] = stageGroup(stages[layer.stage] || {name: layer.stage}); root.appendChild(groups[layer.stage]); }
      groups[layer.stage].querySelector('.stage-body').appendChild(layerCard(layer));
    });
    if (S.cell) markCell();
  }
  function stageGroup(stage) {
    const group = el('details', {class: 'stage', 'data-stage': stage.name});
    group.appendChild(el('summary', {}, stage.name + (stage.transition ? ': ' + stage.transition : '') +
      (stage.layers ? ' (' + stage.layers.length + ' layers)' : '')));
    group.appendChild(el('div', {class: 'stage-body'}));
    group.addEventListener('toggle', function () {
      if (!group.open) { S.openStages.delete(stage.name); return; }
      S.openStages.add(stage.name);
      if (group.querySelector('.layer[data-shown="0"]')) expandStage(stage.name, group);
    });
    if (S.openStages.has(stage.name)) group.open = true;
    return group;
  }
  async function expandStage(name, group) {
    try {
      const answer = await api(subjectPath('layers'), withImage({channels: 8, expand: name}));
      answer.layers.filter(function (l) { return l.stage === name; }).forEach(function (layer) {
        const old = group.querySelector('.layer[data-name="' + CSS.escape(layer.name) + '"]');
        if (old) old.replaceWith(layerCard(layer));
      });
      if (S.cell) markCell();
    } catch (err) { showError('overview-error', err.message); }
  }
  function layerMeta(l) {
    const parts = [l.name + ' (' + l.type + ')'];
    if (l.kernel) parts.push('k ' + pair(l.kernel) + ', s ' + pair(l.stride) + ', p ' + pair(l.padding) + ', d ' + pair(l.dilation));
    if (l.rf) parts.push('RF ' + pair(l.rf) + ', jump ' + pair(l.jump));
    parts.push(Number(l.macs).toLocaleString('en-US') + ' MACs');
    return parts;
  }
  function layerCard(l) {
    const card = el('div', {class: 'layer card', 'data-name': l.name, 'data-kind': l.kind, 'data-shown': l.shown ? '1' : '0'});
    card.appendChild(el('h3', {}, l.transition));
    layerMeta(l).forEach(function (line) { card.appendChild(el('div', {class: 'meta'}, line)); });
    if (l.formula) card.appendChild(el('div', {class: 'meta formula'}, l.formula));
    const maps = card.appendChild(el('div', {class: 'maps'}));
    (l.maps || []).forEach(function (url, c) { maps.appendChild(mapImage(l, url, c)); });
    if (!l.shown) maps.appendChild(el('span', {class: 'note'}, 'open the stage for its pictures'));
    else if (l.channels > (l.maps || []).length) maps.appendChild(el('span', {class: 'note'}, '+' + (l.channels - l.maps.length) + ' more channels'));
    if (l.shown && l.range) card.appendChild(el('div', {class: 'meta'}, 'colour scale (viridis): ' + short(l.range[0]) + ' .. ' + short(l.range[1])));
    return card;
  }
  function mapImage(l, url, c) {
    const h = l.output_shape[l.output_shape.length - 2], w = l.output_shape[l.output_shape.length - 1];
    const side = Math.max(h, w), scale = side <= MAP_SIDE ? Math.floor(MAP_SIDE / side) : MAP_SIDE / side;
    const wrap = el('span', {class: 'mapwrap'});
    const img = wrap.appendChild(el('img', {class: 'map', src: url, 'data-layer': l.name, 'data-channel': c,
      'data-h': h, 'data-w': w, width: Math.round(w * scale), height: Math.round(h * scale), alt: l.name + ' channel ' + c,
      title: l.name + ', channel ' + c}));
    wrap.appendChild(el('span', {class: 'cell-mark'}));
    img.addEventListener('click', function (evt) {
      const r = img.getBoundingClientRect();
      const y = Math.min(h - 1, Math.max(0, Math.floor((evt.clientY - r.top) * h / r.height)));
      const x = Math.min(w - 1, Math.max(0, Math.floor((evt.clientX - r.left) * w / r.width)));
      S.cell = {layer: l.name, channel: c, y: y, x: x};
      markCell(); loadDetail();
    });
    return wrap;
  }
  function markCell() {
    document.querySelectorAll('#overview .cell-mark').forEach(function (m) { m.style.display = 'none'; });
    const c = S.cell;
    const img = document.querySelector('img.map[data-layer="' + CSS.escape(c.layer) + '"][data-channel="' + c.channel + '"]');
    if (!img) return;
    const mark = img.parentNode.querySelector('.cell-mark'), sy = img.height / img.dataset.h, sx = img.width / img.dataset.w;
    Object.assign(mark.style, {display: 'block', top: (c.y * sy) + 'px', left: (c.x * sx) + 'px', height: sy + 'px', width: sx + 'px'});
  }

  // ---- detail: how one cell was computed -------------------------------------------------------------------
  async function loadDetail() {
    const current = fresh('detail'), c = S.cell, where = {layer: c.layer, channel: c.channel, y: c.y, x: c.x};
    try {
      const both = await Promise.all([api(subjectPath('cell'), withImage(where)),
                                      api(subjectPath('erf'), withImage({layer: c.layer, y: c.y, x: c.x}))]);
      if (!current()) return;
      clearError('detail-error'); renderDetail(both[0]); renderReceptive(both[0], both[1]);
    } catch (err) { if (current()) showError('detail-error', err.message); }
  }
  function renderDetail(d) {
    const root = $('detail');
    root.textContent = '';
    root.appendChild(el('h3', {}, d.layer + ', channel ' + d.channel + ', cell (' + d.y + ', ' + d.x + ')'));
    if (d.kind === 'conv') convDetail(root, d);
    else if (d.kind === 'pool') poolDetail(root, d);
    else root.appendChild(el('p', {}, 'element-wise: input ' + fmt4(d.input) + ' gives ' + fmt4(d.value)));
    const same = d.total === undefined || d.total === null || fmt4(d.total) === fmt4(d.value);
    root.appendChild(resultLine('value in the map', 'detail-value', d.value, same ? 'equal' : 'differs'));
  }
  function resultLine(text, id, value, cls) {
    const p = el('p', {class: 'result ' + (cls || '')}, text + ' = ');
    p.appendChild(el('b', {id: id}, fmt4(value)));
    return p;
  }
  function grid(rows, marks, className) {
    const table = el('table', {class: 'grid ' + (className || '')});
    rows.forEach(function (row, u) {
      const tr = table.appendChild(el('tr'));
      row.forEach(function (v, w) {
        const mark = marks ? marks(u, w) : '';
        tr.appendChild(el('td', {class: mark || null, title: (mark === 'pad' ? 'padding: ' : '') + v}, short(v)));
      });
    });
    return table;
  }
  function convDetail(root, d) {
    root.appendChild(el('p', {class: 'meta'}, 'kernel ' + pair(d.kernel) + ', stride ' + pair(d.stride) + ', padding ' +
      pair(d.padding) + ', dilation ' + pair(d.dilation) + (d.groups > 1 ? '; group ' + d.group + ' of ' + d.groups : '')));
    const terms = root.appendChild(el('div', {class: 'terms'}));
    d.inputs.slice(0, SHOW_INPUTS).forEach(function (term) {
      const box = terms.appendChild(el('div', {class: 'term'}));
      const pad = function (u, v) { return term.padding && term.padding[u][v] ? 'pad' : ''; };
      box.appendChild(el('div', {class: 'meta'}, 'input channel ' + term.channel));
      const row = box.appendChild(el('div', {class: 'row'}));
      row.appendChild(grid(term.window, pad, 'window')); row.appendChild(el('span', {class: 'op'}, '\u00d7'));
      row.appendChild(grid(term.kernel, null, 'kernel')); row.appendChild(el('span', {class: 'op'}, '='));
      row.appendChild(grid(term.products, pad, 'products'));
      row.appendChild(el('span', {class: 'op'}, 'sum ' + fmt4(term.sum)));
    });
    const rest = d.inputs.slice(SHOW_INPUTS);
    if (rest.length) {
      const sum = rest.reduce(function (a, t) { return a + t.sum; }, 0);
      root.appendChild(el('p', {class: 'more'}, '... and ' + rest.length + ' more channels, their sums adding up to ' + fmt4(sum)));
    }
    root.appendChild(el('p', {}, d.bias === null || d.bias === undefined ? 'no bias' : 'bias = ' + fmt4(d.bias)));
    root.appendChild(resultLine('total (the ' + d.inputs.length + ' sums + bias)', 'detail-total', d.total));
  }
  function poolDetail(root, d) {
    const win = d.argmax, mask = Array.isArray(d.padding) && Array.isArray(d.padding[0]) ? d.padding : null;
    const pad = function (u, v) {
      if (win && win[0] === u && win[1] === v) return 'win';
      return mask && mask[u][v] ? 'pad' : '';
    };
    root.appendChild(el('p', {class: 'meta'}, (d.op === 'max' ? 'max' : 'average') + ' pooling' +
      (d.kernel ? ', kernel ' + pair(d.kernel) + ', stride ' + pair(d.stride) : '') + (win ? ': the winner is highlighted' : '')));
    root.appendChild(grid(d.window, pad, 'window'));
    if (d.total !== undefined && d.total !== null) root.appendChild(resultLine(d.op + ' of the window', 'detail-total', d.total));
    else if (win) root.appendChild(resultLine('the winner', 'detail-total', d.window[win[0]][win[1]]));
  }
  function renderReceptive(cell, erf) {
    const box = cell.rf_box || erf.rf_box, H = S.info.input_shape[1], W = S.info.input_shape[2];
    const img = $('rf-image'), sy = img.height / H, sx = img.width / W, mark = $('rf-box');
    const b = box || [0, 0, H, W];
    const top = Math.max(0, b[0]), left = Math.max(0, b[1]), bottom = Math.min(H, b[2]), right = Math.min(W, b[3]);
    Object.assign(mark.style, {display: 'block', top: top * sy + 'px', left: left * sx + 'px',
                               height: (bottom - top) * sy + 'px', width: (right - left) * sx + 'px'});
    Object.assign(mark.dataset, {top: b[0], left: b[1], bottom: b[2], right: b[3]});
    $('rf-text').textContent = cell.layer + ' cell (' + cell.y + ', ' + cell.x + ') sees ' + (box ? 'rows ' + b[0] + '..' +
      (b[2] - 1) + ', columns ' + b[1] + '..' + (b[3] - 1) : 'the whole input');
    $('erf').src = erf.erf; $('erf').hidden = false;
    $('erf-caption').textContent = 'effective receptive field: |d cell / d input|';
  }

  // ---- where it looks, filters -----------------------------------------------------------------------------
  async function loadGradcam() {
    const current = fresh('gradcam'), body = {methods: []};
    document.querySelectorAll('.gc-method:checked').forEach(function (m) { body.methods.push(m.value); });
    if ($('gc-layer').value) body.layer = $('gc-layer').value;
    if ($('gc-class').value !== '') body.target = parseInt($('gc-class').value, 10);
    if (!body.methods.length) { $('gradcam').textContent = 'Tick a method.'; return; }
    try {
      const a = await api(subjectPath('gradcam'), withImage(body));
      if (current()) { clearError('gradcam-error'); renderGradcam(a); }
    } catch (err) { if (current()) showError('gradcam-error', err.message); }
  }
  function renderGradcam(a) {
    const root = $('gradcam'), names = {gradcam: 'Grad-CAM', saliency: 'saliency', ig: 'integrated gradients'};
    root.textContent = '';
    root.appendChild(el('p', {class: 'meta'}, 'class ' + a.target_name + ' (probability ' + (100 * a.probability).toFixed(1) +
      '%), layer ' + a.layer + (a.auto ? ' (automatic' + (a.reason ? ': ' + a.reason : '') + ')' : '')));
    Object.keys(a.pictures).forEach(function (name) {
      const fig = root.appendChild(el('figure'));
      fig.appendChild(el('img', {src: a.pictures[name], width: 168, height: 168, alt: names[name] || name}));
      fig.appendChild(el('figcaption', {}, names[name] || name));
    });
  }
  function setupFilters(info) {
    const select = $('filters-layer');
    select.textContent = '';
    info.conv_layers.forEach(function (name) { select.appendChild(el('option', {value: name}, name)); });
    $('filters').textContent = info.conv_layers.length ? '' : 'This model has no conv layers.';
    if (info.conv_layers.length) loadFilters();
  }
  async function loadFilters() {
    const current = fresh('filters');
    try {
      const a = await api(subjectPath('filters') + '?layer=' + encodeURIComponent($('filters-layer').value));
      if (!current()) return;
      clearError('filters-error');
      const root = $('filters');
      root.textContent = '';
      root.appendChild(el('p', {class: 'meta'}, a.layer + ': ' + a.shape.join(' x ') + ' (out x in x kh x kw)'));
      root.appendChild(el('img', {src: a.picture, alt: 'filters of ' + a.layer, class: 'pix'}));
    } catch (err) { if (current()) showError('filters-error', err.message); }
  }

  // ---- arithmetic playground -------------------------------------------------------------------------------
  function pgValue(id) { const v = $(id).value.trim(); return /^-?\d+$/.test(v) ? parseInt(v, 10) : v; }
  async function loadPlayground() {
    const current = fresh('playground');
    $('pg-output-padding').disabled = !$('pg-transposed').checked;
    const body = {input: pgValue('pg-input'), kernel: pgValue('pg-kernel'), stride: pgValue('pg-stride'),
                  padding: $('pg-padding').value.trim(), dilation: pgValue('pg-dilation'),
                  transposed: $('pg-transposed').checked, output_padding: $('pg-transposed').checked ? pgValue('pg-output-padding') : 0};
    try {
      const a = await api('/api/playground', body);
      if (current()) renderPlayground(a);
    } catch (err) {
      if (!current()) return;
      showError('pg-error', err.message);
      $('pg-output').textContent = ''; stopPlayer(); $('pg-animation').hidden = true;
    }
  }
  function stopPlayer() { if (S.player) S.player.stop(); S.player = null; }
  function renderPlayground(a) {
    clearError('pg-error');
    const out = $('pg-output');
    out.textContent = '';
    const p = out.appendChild(el('p', {}, 'output size '));
    p.appendChild(el('b', {}, Array.isArray(a.output) ? a.output.join('x') : a.output));
    out.appendChild(el('pre', {class: 'formula'}, (a.formula || []).join('\n')));
    stopPlayer();
    $('pg-animation').hidden = !a.animation;
    if (a.animation) S.player = cnnlabPlayAnimation(a.animation, $('pg-animation'));
  }
  function bindPlayground() {
    let timer = null;
    const later = function () { clearTimeout(timer); timer = setTimeout(loadPlayground, 120); };
    ['pg-input', 'pg-kernel', 'pg-stride', 'pg-padding', 'pg-dilation', 'pg-transposed', 'pg-output-padding'].forEach(function (id) {
      $(id).addEventListener('input', later); $(id).addEventListener('change', later);
    });
    loadPlayground();
  }

  // ---- start ---------------------------------------------------------------------------------------------
  function hashSubject() {
    const m = /(?:^#|&)subject=([^&]*)/.exec(location.hash);
    return m ? decodeURIComponent(m[1]) : null;
  }
  async function start() {
    bindCanvas(); bindInputs(); bindPlayground();
    ['gc-class', 'gc-layer'].forEach(function (id) { $(id).addEventListener('change', loadGradcam); });
    document.querySelectorAll('.gc-method').forEach(function (m) { m.addEventListener('change', loadGradcam); });
    $('filters-layer').addEventListener('change', loadFilters);
    window.addEventListener('hashchange', function () { const id = hashSubject(); if (id) openSubject(id); });
    let list = [];
    try { list = await api('/api/subjects'); } catch (err) { showError('page-error', err.message); return; }
    if (list.length > 1) { $('runs').hidden = false; renderSubjects(list); renderCurves(list); }
    const first = hashSubject() || CNNLAB.subject || (list.length === 1 ? list[0].id : null);
    if (first) openSubject(first);
  }
  start();
})();
