// The animation player: draws the frames of an animation dict (cnnlab.visualize.animate.Animation.to_dict())
// as SVG; play, pause, step and scrub. cnnlabPlayAnimation(A, root) plays A inside root, an element holding
// svg.stage, buttons .prev / .play / .next, input.scrub and span.counter (animation.html plays ANIMATION;
// cnnlab explore's playground plays each answer of /api/playground). It returns {stop}: pause for good.
function cnnlabPlayAnimation(A, root) {
  const part = function (name) { return root.querySelector('.' + name); };
  const svg = part('stage'), NS = 'http://www.w3.org/2000/svg';
  const colors = {input: '#cfe2f3', pad: '#ececec', inserted: '#fff2cc', window: '#3d85c6',
                  done: '#b6d7a8', now: '#38761d', todo: '#ffffff'};
  const n = A.panels[0].grid.length, oh = A.output_size[0], ow = A.output_size[1], k = A.kernel_size;
  const cell = Math.max(14, Math.min(34, Math.floor(300 / Math.max(n, oh, k))));
  const kw = A.panels[0].kernel ? k * cell + 30 : 0;
  const panelH = Math.max(n, oh) * cell + 56, top = 40;
  const width = Math.max(560, n * cell + 30 + kw + ow * cell + 32);
  const height = top + A.panels.length * panelH + 18 * (A.caption.length + 1);
  svg.setAttribute('width', width); svg.setAttribute('height', height);
  function el(name, attrs, text) {
    const e = document.createElementNS(NS, name);
    for (const key in attrs) e.setAttribute(key, attrs[key]);
    if (text !== undefined) e.textContent = text;
    svg.appendChild(e); return e;
  }
  function box(x, y, fill) { el('rect', {x: x, y: y, width: cell, height: cell, fill: fill, stroke: '#5a5a5a'}); }
  function label(x, y, text, fill) {
    if (cell >= 18) el('text', {x: x + cell / 2, y: y + cell / 2 + 4, 'text-anchor': 'middle', 'font-size': cell / 2.4,
                               fill: fill || '#141414'}, text);
  }
  function fmt(v) { return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(3))); }
  function taps(win) {
    const t = {};
    if (!win) return t;
    for (let u = 0; u < k; u++) for (let v = 0; v < k; v++)
      t[(win[0] + A.dilation * u) + ',' + (win[1] + A.dilation * v)] = [u, v];
    return t;
  }
  function render(i) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const f = A.frames[i];
    let done = 0;
    for (let j = 0; j < i; j++) if (A.frames[j].out) done++;
    if (i === A.frames.length - 1 && !f.out) done = A.positions;
    el('text', {x: 10, y: 22, 'font-size': 15}, f.title);
    const t = taps(f.window);
    A.panels.forEach(function (p, pi) {
      const y0 = top + pi * panelH + 34, x0 = 10;
      el('text', {x: x0, y: y0 - 22, 'font-size': 12, fill: '#4646a0'}, p.name);
      if (f.texts[pi]) el('text', {x: x0, y: y0 - 6, 'font-size': 12}, f.texts[pi]);
      p.grid.forEach(function (row, r) { row.forEach(function (v, c) {
        const inside = t[r + ',' + c];
        box(x0 + c * cell, y0 + r * cell, inside ? colors.window : colors[p.kinds[r][c]]);
        if (p.kinds[r][c] === 'input') label(x0 + c * cell, y0 + r * cell, fmt(v), inside ? '#fff' : undefined);
        if (inside && p.order) el('text', {x: x0 + c * cell + 2, y: y0 + r * cell + 10, 'font-size': 9, fill: '#ffe600'},
                                  p.order[inside[0]][inside[1]]);
      }); });
      const kx = x0 + n * cell + 30;
      if (p.kernel) p.kernel.forEach(function (row, u) { row.forEach(function (v, vv) {
        box(kx + vv * cell, y0 + u * cell, colors.window); label(kx + vv * cell, y0 + u * cell, fmt(v), '#fff');
      }); });
      if (p.kernel) el('text', {x: kx, y: y0 + k * cell + 14, 'font-size': 11}, p.kernel_label);
      const ox = kx + kw;
      p.output.forEach(function (row, y) { row.forEach(function (v, x) {
        const idx = y * ow + x, now = f.out && f.out[0] === y && f.out[1] === x;
        box(ox + x * cell, y0 + y * cell, now ? colors.now : idx < done ? colors.done : colors.todo);
        if (now || idx < done) label(ox + x * cell, y0 + y * cell, fmt(v), now ? '#fff' : undefined);
      }); });
    });
    A.caption.forEach(function (line, li) {
      el('text', {x: 10, y: top + A.panels.length * panelH + 14 + 18 * li, 'font-size': 12}, line);
    });
    part('counter').textContent = ' frame ' + (i + 1) + ' / ' + A.frames.length;
    part('scrub').value = i;
  }
  let current = 0, timer = null;
  const scrub = part('scrub');
  scrub.max = A.frames.length - 1;
  function go(i) { current = (i + A.frames.length) % A.frames.length; render(current); }
  function play() { timer = setInterval(function () { go(current + 1); }, 700);
                    part('play').textContent = 'pause'; }
  function pause() { clearInterval(timer); timer = null; part('play').textContent = 'play'; }
  part('play').onclick = function () { timer ? pause() : play(); };
  part('prev').onclick = function () { pause(); go(current - 1); };
  part('next').onclick = function () { pause(); go(current + 1); };
  scrub.oninput = function () { pause(); go(parseInt(scrub.value, 10)); };
  go(0); play();
  return {stop: pause};
}
