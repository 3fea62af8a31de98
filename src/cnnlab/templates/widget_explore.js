// cnnlab.widgets.explore(), the notebook end (anywidget). Built by cnnlab.widgets from the app's own files:
// animation.js + explore_transport.js + cnnlabExplore(ROOT, TRANSPORT, CNNLAB) { explore_views.js explore.js }
// + this adapter. render() puts the page's markup (the trait _markup: templates/explore.html as a fragment) in
// a shadow root of the output's element -- several widgets on one notebook page never share an id or a style --
// and runs the page's code there, its requests sent to the kernel as anywidget messages.
export default {
  render({model, el}) {
    const root = el.attachShadow({mode: 'open'});
    root.innerHTML = model.get('_markup');
    cnnlabExplore(root, cnnlabMessageTransport(model), model.get('_config'));
  }
};
