// How the explore page reaches its data: ONE transport object, request(name, subject, body) -> a promise of the
// JSON answer (rejected with an Error holding the one-line message). Endpoint names: subjects, subject, predict,
// layers, cell, erf, gradcam, filters, playground (cnnlab.visualize.service). The app's page talks HTTP to the
// JSON API (cnnlabHttpTransport); the notebook widget sends anywidget messages to the kernel
// (cnnlabMessageTransport), answered by cnnlab.visualize.service.handle -- the function the app's routes call.
'use strict';
function cnnlabHttpTransport(token) {
  const GET = {subjects: true, subject: true, filters: true};
  function path(name, subject, body) {
    if (name === 'subjects' || name === 'playground') return '/api/' + name;
    let p = '/api/subjects/' + encodeURIComponent(subject) + (name === 'subject' ? '' : '/' + name);
    if (GET[name] && body) { const q = new URLSearchParams(body).toString(); if (q) p += '?' + q; }
    return p;
  }
  async function request(name, subject, body) {
    const headers = {'Accept': 'application/json'}, init = {headers: headers};
    if (token) headers['X-Cnnlab-Token'] = token;
    if (!GET[name]) { init.method = 'POST'; headers['Content-Type'] = 'application/json'; init.body = JSON.stringify(body || {}); }
    let response;
    try { response = await fetch(path(name, subject, body), init); } catch (err) { throw new Error('the server did not answer (is cnnlab explore still running?)'); }
    let data = null;
    try { data = await response.json(); } catch (err) { data = null; }
    if (!response.ok) throw new Error((data && data.error) || ('the server answered ' + response.status));
    return data;
  }
  return {request: request};
}
function cnnlabMessageTransport(model) {  // model: anywidget's (send, on('msg:custom'))
  const pending = new Map(), tag = Math.random().toString(36).slice(2);
  let next = 0;
  model.on('msg:custom', function (msg) {
    if (!msg || !pending.has(msg.id)) return;  // another view's answer
    const p = pending.get(msg.id);
    pending.delete(msg.id);
    if (msg.error !== undefined && msg.error !== null) p.reject(new Error(msg.error)); else p.resolve(msg.answer);
  });
  function request(name, subject, body) {
    return new Promise(function (resolve, reject) {
      const id = tag + ':' + (++next);
      pending.set(id, {resolve: resolve, reject: reject});
      model.send({id: id, name: name, subject: subject === undefined ? null : subject, body: body === undefined ? null : body});
    });
  }
  return {request: request};
}
