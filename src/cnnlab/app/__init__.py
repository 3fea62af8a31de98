"""``cnnlab explore``: CNN Explainer for your own model -- a local web app (FastAPI on Starlette, served
by uvicorn; the ``explore`` extra) where you draw or pick an image, watch the prediction, click any cell of
any feature map to see the multiply-adds that made it, and see where the network looks.

- ``cnnlab.visualize.catalog``: the subjects served (runs under a folder, one run, or a zoo model), ids looked up, never
  used as paths; models loaded on first use, one request at a time per model
- ``api.py``: the JSON API (``/api/subjects``, ``predict``, ``layers``, ``cell``, ``erf``, ``gradcam``,
  ``filters``, ``/api/playground``): thin routes into :mod:`cnnlab.visualize.views` and
  :func:`cnnlab.visualize.cell.explain_cell` -- the app holds no CNN arithmetic
- ``guard.py``: Host header (DNS rebinding), token (any host but the loopback), 10 MB body limit
- ``server.py``: :func:`create_app` and :func:`serve`
- ``static/``: the page's files served offline (Chart.js, vendored from npm); the page itself is
  ``templates/explore.html`` + ``explore.js`` (:mod:`cnnlab.pages`)
"""

from cnnlab.errors import CnnlabError

try:
    import fastapi  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError:
    raise CnnlabError("cnnlab explore needs FastAPI and uvicorn: pip install 'cnnlab[explore]'") from None

from cnnlab.visualize.catalog import Catalog, Entry, SubjectNotFound  # noqa: E402
from cnnlab.app.guard import MAX_BODY, Guard, Policy  # noqa: E402
from cnnlab.app.server import bind, create_app, serve  # noqa: E402

__all__ = ["Catalog", "Entry", "SubjectNotFound", "Guard", "Policy", "MAX_BODY", "create_app", "serve", "bind"]
