// cnnlab report: a click on a feature-map cell draws that cell's receptive-field box on the input image
// (the intervals come from cnnlab.summary, computed in Python: no receptive-field arithmetic here).
(function () {
  function showBox(wrap, evt) {
    const img = wrap.querySelector('img.fmap'), layer = wrap.closest('.layer'), sample = wrap.closest('.sample');
    const h = parseInt(layer.dataset.h, 10), w = parseInt(layer.dataset.w, 10);
    const rect = img.getBoundingClientRect();
    const y = Math.min(h - 1, Math.max(0, Math.floor((evt.clientY - rect.top) / rect.height * h)));
    const x = Math.min(w - 1, Math.max(0, Math.floor((evt.clientX - rect.left) / rect.width * w)));
    const input = sample.querySelector('.inputbox'), H = parseInt(input.dataset.h, 10), W = parseInt(input.dataset.w, 10);
    const rows = JSON.parse(layer.dataset.rows), cols = JSON.parse(layer.dataset.cols);
    const top = rows ? rows[y][0] : 0, bottom = rows ? rows[y][1] : H;
    const left = cols ? cols[x][0] : 0, right = cols ? cols[x][1] : W;
    const pic = input.querySelector('img'), sy = pic.clientHeight / H, sx = pic.clientWidth / W;
    const box = input.querySelector('.rf-box');
    box.style.top = (top * sy) + 'px'; box.style.left = (left * sx) + 'px';
    box.style.height = ((bottom - top) * sy) + 'px'; box.style.width = ((right - left) * sx) + 'px';
    box.style.display = 'block';
    Object.assign(box.dataset, {layer: layer.dataset.layer, y: y, x: x, top: top, left: left, bottom: bottom,
                                right: right});
    sample.querySelectorAll('.cell-mark').forEach(function (m) { m.style.display = 'none'; });
    const mark = wrap.querySelector('.cell-mark');
    mark.style.top = (y * img.clientHeight / h) + 'px'; mark.style.left = (x * img.clientWidth / w) + 'px';
    mark.style.height = (img.clientHeight / h) + 'px'; mark.style.width = (img.clientWidth / w) + 'px';
    mark.style.display = 'block';
    const rf = layer.dataset.rf ? ' (receptive field ' + layer.dataset.rf + ')' : ' (the whole input)';
    sample.querySelector('.rf-text').textContent = layer.dataset.layer + ' cell (' + y + ', ' + x + ') sees rows ' +
      top + '..' + (bottom - 1) + ', columns ' + left + '..' + (right - 1) + rf;
  }
  document.querySelectorAll('.fmap-wrap').forEach(function (wrap) {
    wrap.addEventListener('click', function (evt) { showBox(wrap, evt); });
  });
})();
