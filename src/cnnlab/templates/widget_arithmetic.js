// cnnlab.widgets.arithmetic(), the notebook end (anywidget; appended to animation.js): the controls of
// templates/arithmetic.html in a shadow root of the output's element. A control sets its trait; the kernel
// answers with the traits "result" (cnnlab.visualize.views.playground: output, formula, animation) or "error"
// (one line), drawn here with cnnlabPlayAnimation. Traits set from Python show in the controls.
export default {
  render({model, el}) {
    const root = el.attachShadow({mode: 'open'});
    root.innerHTML = model.get('_markup');
    const q = function (sel) { return root.querySelector(sel); };
    const fields = Array.from(root.querySelectorAll('[data-trait]'));
    let player = null;
    function value(f) {
      if (f.type === 'checkbox') return f.checked;
      const v = f.value.trim();
      if (/^-?\d+$/.test(v)) return parseInt(v, 10);
      return f.dataset.trait === 'padding' ? v : NaN;
    }
    function show() {  // traits -> controls
      fields.forEach(function (f) {
        const v = model.get(f.dataset.trait);
        if (f.type === 'checkbox') f.checked = !!v; else if (root.activeElement !== f) f.value = String(v);
      });
      q('[data-trait="output_padding"]').disabled = !model.get('transposed');
    }
    function fail(message) { const e = q('.error'); e.textContent = message; e.hidden = !message; }
    function draw() {  // the answer -> the formula and the player
      const error = model.get('error'), a = model.get('result') || {}, out = q('.pg-output');
      fail(error || '');
      out.textContent = '';
      if (player) { player.stop(); player = null; }
      q('.player').hidden = !!error || !a.animation;
      if (error || !a.animation) return;
      const p = out.appendChild(document.createElement('p')), b = document.createElement('b');
      p.textContent = 'output size '; b.className = 'output'; b.textContent = a.output; p.appendChild(b);
      const pre = out.appendChild(document.createElement('pre'));
      pre.className = 'formula'; pre.textContent = (a.formula || []).join('\n');
      player = cnnlabPlayAnimation(a.animation, q('.player'));
    }
    fields.forEach(function (f) {
      f.addEventListener('change', function () {
        const v = value(f);
        if (typeof v === 'number' && Number.isNaN(v)) { fail(f.dataset.trait + ' must be a whole number'); return; }
        model.set(f.dataset.trait, v); model.save_changes();
      });
    });
    const names = fields.map(function (f) { return 'change:' + f.dataset.trait; });
    names.forEach(function (n) { model.on(n, show); });
    model.on('change:result', draw); model.on('change:error', draw);
    show(); draw();
    return function () {
      if (player) player.stop();
      names.forEach(function (n) { model.off(n, show); });
      model.off('change:result', draw); model.off('change:error', draw);
    };
  }
};
