"""``cnnlab explore``'s JSON API through an ASGI test client (in-process): every endpoint, images prepared
as training prepared them, every bad input a 4xx with a one-line JSON error, path escapes, the Host header
and the token rule."""

from __future__ import annotations

import base64
import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import extra_module
import torch
from PIL import Image

extra_module("fastapi")
extra_module("httpx2")
from fastapi.testclient import TestClient  # noqa: E402

from cnnlab.app import MAX_BODY, Catalog, create_app  # noqa: E402
from cnnlab.runs import Run  # noqa: E402
from cnnlab.trace import trace  # noqa: E402
from cnnlab.visualize.source import take  # noqa: E402

BASE = "http://127.0.0.1:8765"


def client_for(catalog: Catalog, **kwargs) -> TestClient:
    return TestClient(create_app(catalog, host="127.0.0.1", port=8765, **kwargs), base_url=BASE,
                      raise_server_exceptions=False)


def png_url(array: np.ndarray, fmt: str = "PNG") -> str:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buffer.getvalue()).decode()


def assert_error(response, status: int, *fragments: str) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error"} and "\n" not in body["error"] and "Traceback" not in body["error"], body
    for fragment in fragments:
        assert fragment in body["error"], body["error"]


@pytest.fixture(scope="module")
def runs_dir(finished_run: Path, tmp_path_factory) -> Path:
    """A folder with the finished run, an unfinished directory and a link to a run outside the folder."""
    root = tmp_path_factory.mktemp("runs")
    shutil.copytree(finished_run, root / "digits-run")
    (root / "half").mkdir()
    (root / "half" / "config.json").write_text((finished_run / "config.json").read_text())
    outside = tmp_path_factory.mktemp("outside")
    shutil.copytree(finished_run, outside / "secret")
    os.symlink(outside / "secret", root / "escape")
    return root


@pytest.fixture(scope="module")
def api(runs_dir: Path) -> TestClient:
    return client_for(Catalog.open(runs_dir))


@pytest.fixture(scope="module")
def model_api() -> TestClient:
    return client_for(Catalog.open("convnet", dataset="digits"))


def test_subjects_lists_the_finished_runs_under_the_folder_only(api, runs_dir):
    subjects = api.get("/api/subjects").json()
    assert [s["id"] for s in subjects] == ["digits-run"]  # not the unfinished one, not the link out
    s = subjects[0]
    assert s["kind"] == "run" and s["model"] == "convnet" and s["dataset"] == "digits"
    assert isinstance(s["test_acc"], float) and 0 <= s["test_acc"] <= 100
    assert s["input_shape"] == list(Run.open(runs_dir / "digits-run").input_shape)
    assert s["classes"] == [str(i) for i in range(10)] and s["curves"]["epoch"] == [1]
    one = api.get("/api/subjects/digits-run").json()
    assert one["test_size"] > 0 and one["gray"] and one["conv_layers"] == ["conv_1", "conv_2"]
    assert one["gradcam_layer"]["name"] in one["layers"] and "spatial extent" in one["gradcam_layer"]["reason"]


def test_one_run_and_one_model_are_served_alone(finished_run):
    run = client_for(Catalog.open(finished_run)).get("/api/subjects").json()
    assert [s["id"] for s in run] == [finished_run.name]
    model = client_for(Catalog.open("resnet18")).get("/api/subjects").json()
    assert model[0]["kind"] == "model" and model[0]["input_shape"] == [3, 224, 224] and model[0]["test_acc"] is None


@pytest.mark.parametrize("key", ["..", "../outside", "escape", "/etc/passwd", "%2Fetc%2Fpasswd", "half", "nope"])
def test_an_id_outside_the_served_runs_is_404(api, key):
    for path in (f"/api/subjects/{key}", f"/api/subjects/{key}/filters"):
        response = api.get(path)
        assert response.status_code == 404, (path, response.status_code)
    assert_error(api.post(f"/api/subjects/{key}/predict", json={"index": 0}), 404)


def test_predict_prepares_images_exactly_as_training_did(api, runs_dir):
    run = Run.open(runs_dir / "digits-run")
    model = run.load_model()
    images, labels = take(run.split("test"), [5])
    x = run.preprocessing.to_input(images.float() / 255.0)
    expected = torch.softmax(model(x), dim=1)[0]
    by_index = api.post("/api/subjects/digits-run/predict", json={"index": 5}).json()
    assert by_index["label"] == int(labels[0]) and by_index["classes"] == run.classes
    assert np.allclose(by_index["probs"], expected.tolist(), atol=1e-5)
    assert by_index["predicted"] == int(expected.argmax()) and by_index["input"].startswith("data:image/png;base64,")
    as_file = api.post("/api/subjects/digits-run/predict", json={"image": png_url(images[0, 0].numpy())}).json()
    assert np.allclose(as_file["probs"], expected.tolist(), atol=1e-5) and as_file["label"] is None


def test_a_colour_drawing_is_converted_to_the_models_channels(api):
    drawing = np.zeros((280, 280, 4), dtype=np.uint8)
    drawing[..., 3] = 255
    drawing[60:220, 130:150, :3] = 255  # a white "1" on black, RGBA as a canvas gives it
    first = api.post("/api/subjects/digits-run/predict", json={"image": png_url(drawing)})
    assert first.status_code == 200 and abs(sum(first.json()["probs"]) - 1) < 1e-5
    jpeg = api.post("/api/subjects/digits-run/predict", json={"image": png_url(drawing[..., :3], "JPEG")})
    assert jpeg.status_code == 200


def bomb_png() -> str:
    buffer = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buffer, format="PNG")  # 400 megapixels in a few hundred kB
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.parametrize("body,status,fragment", [
    ({"image": "hello"}, 400, "data URL"),
    ({"image": "data:image/png;base64,@@@@"}, 400, "base64"),
    ({"image": "data:image/png;base64," + base64.b64encode(b"not an image").decode()}, 400, "not a readable image"),
    ({"index": 10**9}, 400, "outside the test split"),
    ({"index": -1}, 400, "outside the test split"),
    ({"index": 0, "image": "data:image/png;base64,"}, 400, "not both"),
    ({"index": "3"}, 422, "index"),
    ({"index": True}, 422, "index"),
    ({"idx": 3}, 422, "idx"),
])
def test_bad_images_are_one_line_4xx(api, body, status, fragment):
    assert_error(api.post("/api/subjects/digits-run/predict", json=body), status, fragment)


def test_a_decompression_bomb_is_refused_and_the_server_goes_on(api):
    assert_error(api.post("/api/subjects/digits-run/predict", json={"image": bomb_png()}), 400, "decompression bomb")
    assert api.post("/api/subjects/digits-run/predict", json={"index": 1}).status_code == 200


def test_a_body_over_10_mb_is_413(api):
    big = "data:image/png;base64," + "A" * (MAX_BODY + 10)
    assert_error(api.post("/api/subjects/digits-run/predict", json={"image": big}), 413, "10 MB")
    streamed = api.post("/api/subjects/digits-run/predict", content=iter([b"x" * 2**20] * 11),
                        headers={"content-type": "application/json"})  # no Content-Length: counted as read
    assert_error(streamed, 413)
    assert_error(api.post("/api/subjects/digits-run/predict", content=b"{", headers={"content-type": "application/json"}),
                 422)


def test_layers_come_from_the_tracer(api, runs_dir):
    body = api.post("/api/subjects/digits-run/layers", json={"index": 2, "channels": 3}).json()
    run = Run.open(runs_dir / "digits-run")
    calls = {c.name: c for c in trace(run.load_model(), run.input_shape).calls}
    assert not body["deep"] and [layer["name"] for layer in body["layers"]] == ["conv_1", "pool_1", "conv_2", "pool_2"]
    for layer in body["layers"]:
        call = calls[layer["name"]]
        assert layer["transition"] == call.transition and layer["formula"] == call.formula
        assert layer["macs"] == call.macs and layer["rf"] == list(call.rf.size) and layer["jump"] == list(call.rf.jump)
        assert layer["shown"] and len(layer["maps"]) == min(3, call.output_shape[0])
        png = Image.open(io.BytesIO(base64.b64decode(layer["maps"][0].split(",", 1)[1])))
        assert png.size == (call.output_shape[2], call.output_shape[1])
    assert body["layers"][0]["transition"].endswith("x4") and body["layers"][0]["kind"] == "conv"
    assert_error(api.post("/api/subjects/digits-run/layers", json={"channels": 0}), 400, "channels")
    assert_error(api.post("/api/subjects/digits-run/layers", json={"expand": "stage 9"}), 400, "stage")


def test_a_deep_net_shows_one_layer_per_stage_and_expands_one():
    api = client_for(Catalog.open("resnet18"))
    image = png_url(np.random.default_rng(0).integers(0, 255, (224, 224, 3), dtype=np.uint8))
    body = api.post("/api/subjects/resnet18/layers", json={"image": image, "channels": 2}).json()
    assert body["deep"] and len(body["stages"]) >= 5
    shown = [layer["name"] for layer in body["layers"] if layer["shown"]]
    assert shown == ["conv1", "maxpool", "layer1.1", "layer2.1", "layer3.1", "layer4.1"] or "layer4.1" in shown
    stage = next(s for s in body["stages"] if "layer2.0" in s["layers"])
    wide = api.post("/api/subjects/resnet18/layers", json={"image": image, "channels": 2, "expand": stage["name"]}).json()
    opened = {layer["name"] for layer in wide["layers"] if layer["shown"]}
    assert set(stage["layers"]) <= opened and "layer2.0.conv1" in opened


def test_cell_total_is_the_layers_own_output(api, runs_dir):
    run = Run.open(runs_dir / "digits-run")
    model = run.load_model()
    images, _ = take(run.split("test"), [4])
    kept = trace(model, run.preprocessing.to_input(images.float() / 255.0), keep={"conv_2", "pool_1"}).kept()
    _, _, h, w = kept["conv_2"].shape
    for y, x in ((0, 0), (h // 2, w - 1)):
        cell = api.post("/api/subjects/digits-run/cell", json={"index": 4, "layer": "conv_2", "channel": 1, "y": y,
                                                              "x": x}).json()
        assert cell["kind"] == "conv" and len(cell["inputs"]) == 4
        assert cell["value"] == pytest.approx(float(kept["conv_2"][0, 1, y, x]), abs=1e-4)
        assert cell["total"] == pytest.approx(sum(i["sum"] for i in cell["inputs"]) + cell["bias"], abs=1e-6)
        assert cell["total"] == pytest.approx(cell["value"], abs=1e-4)
    pool = api.post("/api/subjects/digits-run/cell", json={"index": 4, "layer": "pool_1", "channel": 0, "y": 1,
                                                          "x": 0}).json()
    assert pool["kind"] == "pool" and pool["value"] == pytest.approx(float(kept["pool_1"][0, 0, 1, 0]), abs=1e-6)


@pytest.mark.parametrize("body,fragment", [
    ({"layer": "conv2", "channel": 0, "y": 0, "x": 0}, "did you mean"),
    ({"layer": "conv_1", "channel": 0, "y": 28, "x": 0}, "y=28"),
    ({"layer": "conv_1", "channel": 99, "y": 0, "x": 0}, "channel"),
    ({"layer": "linear_1", "channel": 0, "y": 0, "x": 0}, "linear_1"),
])
def test_a_wrong_layer_or_cell_is_a_one_line_400(api, body, fragment):
    assert_error(api.post("/api/subjects/digits-run/cell", json={"index": 0} | body), 400, fragment)


def test_gradcam_names_the_automatic_layer_and_its_reason(api):
    body = api.post("/api/subjects/digits-run/gradcam", json={"index": 0, "methods": ["gradcam", "saliency", "ig"]}).json()
    assert body["auto"] and body["layer"] == "pool_2" and "spatial extent" in body["reason"]
    assert set(body["pictures"]) == {"gradcam", "saliency", "ig"} and 0 <= body["probability"] <= 1
    chosen = api.post("/api/subjects/digits-run/gradcam", json={"index": 0, "layer": "conv_1", "target": 3}).json()
    assert not chosen["auto"] and chosen["target"] == 3 and chosen["layer"] == "conv_1"
    assert_error(api.post("/api/subjects/digits-run/gradcam", json={"layer": "linear_1"}), 400, "feature map")
    assert_error(api.post("/api/subjects/digits-run/gradcam", json={"target": 10}), 400, "0 to 9")
    assert_error(api.post("/api/subjects/digits-run/gradcam", json={"methods": ["lime"]}), 422, "methods")


def test_filters_and_the_effective_receptive_field(api, runs_dir):
    first = api.get("/api/subjects/digits-run/filters").json()
    assert first["layer"] == "conv_1" and first["shape"] == [4, 1, 3, 3] and first["picture"].startswith("data:image/png")
    assert api.get("/api/subjects/digits-run/filters", params={"layer": "conv_2"}).json()["shape"] == [8, 4, 3, 3]
    assert_error(api.get("/api/subjects/digits-run/filters", params={"layer": "pool_1"}), 400, "not a convolution")
    run = Run.open(runs_dir / "digits-run")
    conv_2 = next(c for c in trace(run.load_model(), run.input_shape).calls if c.name == "conv_2")
    y, x = conv_2.output_shape[1] // 2, conv_2.output_shape[2] - 1
    erf = api.post("/api/subjects/digits-run/erf", json={"index": 0, "layer": "conv_2", "y": y, "x": x}).json()
    assert erf["rf_box"] == list(conv_2.box(y, x)) and erf["erf"].startswith("data:image/png")
    assert_error(api.post("/api/subjects/digits-run/erf", json={"layer": "conv_2", "y": 99, "x": 0}), 400, "99")


def test_the_playground_computes_or_explains(model_api):
    ok = model_api.post("/api/playground", json={"input": 5, "kernel": 3, "stride": 2, "padding": "1"}).json()
    assert ok["output"] == 3 and any("= 3" in line for line in ok["formula"]) and ok["animation"]["kind"] == "conv"
    same = model_api.post("/api/playground", json={"input": 7, "kernel": 4, "padding": "same"}).json()
    assert same["output"] == 7
    up = model_api.post("/api/playground", json={"input": 3, "kernel": 3, "stride": 2, "transposed": True}).json()
    assert up["output"] == 7 and up["animation"]["kind"] == "transposed"
    assert_error(model_api.post("/api/playground", json={"input": 3, "kernel": 5}), 400, "-1")
    assert_error(model_api.post("/api/playground", json={"input": 5, "kernel": 3, "padding": "wide"}), 400, "padding")
    assert_error(model_api.post("/api/playground", json={"input": 5, "kernel": 3, "stride": 0}), 400, "stride")
    for huge in ({"input": 2**40, "kernel": 2**40}, {"input": 2000, "kernel": 1, "stride": 2000},
                 {"input": 3, "kernel": 3, "padding": "5000"}, {"input": 300, "kernel": 3, "stride": 100, "transposed": True}):
        assert_error(model_api.post("/api/playground", json=huge), 400)  # refused before anything is drawn
    assert model_api.post("/api/playground", json={"input": 5, "kernel": 3}).status_code == 200


def test_a_model_without_a_dataset_needs_an_image():
    api = client_for(Catalog.open("convnet"))
    assert_error(api.post("/api/subjects/convnet/predict", json={"index": 0}), 400, "--dataset")
    blank = png_url(np.zeros((28, 28), dtype=np.uint8))
    assert api.post("/api/subjects/convnet/predict", json={"image": blank}).status_code == 200


def test_a_foreign_host_header_is_refused(api):
    assert_error(api.get("/api/subjects", headers={"host": "evil.example:8765"}), 400, "Host header")
    assert_error(api.get("/", headers={"host": "127.0.0.1.evil.example"}), 400)
    assert api.get("/api/subjects", headers={"host": "localhost:8765"}).status_code == 200


def test_a_specific_address_checks_the_host_header_and_every_interface_needs_the_token(runs_dir):
    specific = create_app(Catalog.open(runs_dir), host="10.1.2.3", port=8765, token="t")
    with TestClient(specific, base_url="http://10.1.2.3:8765") as client:
        assert client.get("/api/subjects", headers={"x-cnnlab-token": "t"}).status_code == 200
        assert_error(client.get("/api/subjects", headers={"x-cnnlab-token": "t", "host": "evil.example"}), 400)
    everywhere = create_app(Catalog.open(runs_dir), host="0.0.0.0", port=8765, token="t")
    with TestClient(everywhere, base_url="http://192.168.7.7:8765") as client:  # the machine as a browser names it
        assert_error(client.get("/api/subjects"), 403, "token")
        assert client.get("/api/subjects", headers={"x-cnnlab-token": "t"}).status_code == 200


def test_a_token_is_needed_where_one_is_set(runs_dir):
    app = create_app(Catalog.open(runs_dir), host="0.0.0.0", port=8765, token="s3cret")
    with TestClient(app, base_url="http://0.0.0.0:8765") as open_client:
        assert_error(open_client.get("/api/subjects"), 403, "token")
        assert_error(open_client.get("/api/subjects", headers={"x-cnnlab-token": "wrong"}), 403)
        assert open_client.get("/api/subjects", headers={"x-cnnlab-token": "s3cret"}).status_code == 200
        page = open_client.get("/?token=s3cret")
        assert page.status_code == 200 and "cnnlab_token=s3cret" in page.headers["set-cookie"]
        assert open_client.get("/api/subjects").status_code == 200  # the cookie set by the page


def test_a_model_name_with_weights_serves_those_weights(tmp_path):
    from cnnlab.models import create_model

    torch.manual_seed(3)
    model = create_model("convnet").eval()
    torch.save(model.state_dict(), tmp_path / "w.pt")
    api = client_for(Catalog.open("convnet", weights=str(tmp_path / "w.pt")))
    image = np.random.default_rng(1).integers(0, 255, (28, 28), dtype=np.uint8)
    body = api.post("/api/subjects/convnet/predict", json={"image": png_url(image)}).json()
    expected = torch.softmax(model(torch.from_numpy(image).float().div(255).view(1, 1, 28, 28)), dim=1)[0]
    assert np.allclose(body["probs"], expected.tolist(), atol=1e-5)
