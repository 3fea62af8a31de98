// cnnlab explore, the views that show the API's answers: the overview of every layer, one cell's detail, where
// the model looks, the filters and the arithmetic playground. Loaded before explore.js, whose helpers
// ($, el, api, S, ...) they call; every element is looked up in ROOT (the page, or the widget's shadow root).
'use strict';
// ---- overview: every layer ---------------------------------------------------------------------------------
async function loadOverview() {
  const current = fresh('overview');
  try {
    const answer = await api('layers', withImage({channels: 8}));
    if (!current()) return;
    clearError('overview-error'); renderOverview(answer);
  } catch (err) { if (current()) showError('overview-error', err.message); }
}
function renderOverview(a) {
  const root = $('overview'), groups = {};
  root.textContent = '';
  const stages = {};
  (a.stages || []).forEach(function (st) { stages[st.name] = st; });
  root.appendChild(inputCard(a));
  a.layers.forEach(function (layer) {
    if (!a.deep || !layer.stage) { root.appendChild(layerCard(layer)); return; }
    if (!groups[layer.stage]) { groups[layer.stage] = stageGroup(stages[layer.stage] || {name: layer.stage}); root.appendChild(groups[layer.stage]); }
    groups[layer.stage].querySelector('.stage-body').appendChild(layerCard(layer));
  });
  if (S.cell) markCell();
}
function inputCard(a) {  // the image as the model sees it, at the head of the layers
  const card = el('div', {class: 'card input-card'}), shape = a.input_shape || S.info.input_shape;
  card.appendChild(el('h3', {}, 'input ' + shape[1] + 'x' + shape[2] + 'x' + shape[0]));
  card.appendChild(el('img', {class: 'pix', src: a.input, width: MAP_SIDE, height: MAP_SIDE, alt: 'input'}));
  return card;
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
    const answer = await api('layers', withImage({channels: 8, expand: name}));
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
  if (!l.shown) maps.appendChild(el('span', {class: 'note'}, l.stage && !S.openStages.has(l.stage) ?
    'open the stage for its pictures' : 'no pictures for this layer'));
  else if (l.channels > (l.maps || []).length) maps.appendChild(el('span', {class: 'note'}, '+' + (l.channels - l.maps.length) + ' more channels'));
  if (l.shown && l.range) card.appendChild(el('div', {class: 'meta'}, 'colour scale (viridis): ' + short(l.range[0]) + ' .. ' + short(l.range[1])));
  return card;
}
function mapImage(l, url, c) {
  const h = l.output_shape[l.output_shape.length - 2], w = l.output_shape[l.output_shape.length - 1];
  const side = Math.max(h, w), scale = side <= MAP_SIDE ? Math.max(1, Math.round(MAP_SIDE / side)) : MAP_SIDE / side;
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
  ROOT.querySelectorAll('#overview .cell-mark').forEach(function (m) { m.style.display = 'none'; });
  const c = S.cell;
  const img = ROOT.querySelector('img.map[data-layer="' + CSS.escape(c.layer) + '"][data-channel="' + c.channel + '"]');
  if (!img) return;
  const mark = img.parentNode.querySelector('.cell-mark'), sy = img.height / img.dataset.h, sx = img.width / img.dataset.w;
  Object.assign(mark.style, {display: 'block', top: (c.y * sy) + 'px', left: (c.x * sx) + 'px', height: sy + 'px', width: sx + 'px'});
}

// ---- detail: how one cell was computed -------------------------------------------------------------------
async function loadDetail() {
  const current = fresh('detail'), c = S.cell, where = {layer: c.layer, channel: c.channel, y: c.y, x: c.x};
  try {
    const both = await Promise.all([api('cell', withImage(where)),
                                    api('erf', withImage({layer: c.layer, y: c.y, x: c.x}))]);
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
    (d.kernel ? ', kernel ' + pair(d.kernel) + ', stride ' + pair(d.stride) + ', padding ' + pair(d.layer_padding) : '') +
    (win ? ': the winner is highlighted' : (d.divisor ? ': the sum of the window divided by ' + short(d.divisor) : ''))));
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
  ROOT.querySelectorAll('.gc-method:checked').forEach(function (m) { body.methods.push(m.value); });
  if ($('gc-layer').value) body.layer = $('gc-layer').value;
  if ($('gc-class').value !== '') body.target = parseInt($('gc-class').value, 10);
  if (!body.methods.length) { $('gradcam').textContent = 'Tick a method.'; return; }
  try {
    const a = await api('gradcam', withImage(body));
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
    const a = await api('filters', {layer: $('filters-layer').value});
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
    const a = await api('playground', body);
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

