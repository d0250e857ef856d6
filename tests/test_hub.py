"""Push, pull, model card and Space against a local stand-in for the Hub (tests/hub_server.py).

The CLIs run in subprocesses with HF_ENDPOINT pointing at the server, HF_TOKEN set and a fresh
HF_HOME, exactly as a user would run them; the project code does not know it is a test server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from emotion.model import build_model
from emotion.storage.model_folder import hub_config, save_model
from tests.conftest import ROOT, free_port, wait_for_port
from tests.hub_server import HubServer

TOKEN = "hf_test_write_token"
EXPECTED = {
    ".gitattributes",  # the Hub's initial commit
    "README.md",
    "config.json",
    "model.safetensors",
    "confusion_matrix.png",
    "curves.png",
    "mean_gradcam.png",
}


def make_run(folder: Path, *, seed: int, per_class: int = 4) -> Path:
    """A run folder as training.train writes it, with an untrained model (fast)."""
    from emotion.explainers.mean_maps import save_mean_gradcam
    from emotion.storage.model_folder import load_model
    from emotion.storage.runs import MEAN_GRADCAM
    from training.metrics import compute_metrics, save_confusion_matrix, save_curves
    from training.synthetic import make_dataset

    torch.manual_seed(seed)
    save_model(build_model("resnet18"), folder / "model")
    rng = np.random.default_rng(seed)
    y_true = np.repeat(np.arange(5), 2)
    metrics = compute_metrics(
        y_true, rng.integers(0, 5, size=10), ("happy", "sad", "neutral", "angry", "surprised")
    )
    history = [
        {
            "epoch": 1,
            "train_loss": 1.6,
            "val_loss": 1.6,
            "val_accuracy": 0.2,
            "val_macro_f1": 0.1,
            "lr": 0.001,
        }
    ]
    metrics.update(
        history=history, val_counts={k: 2 for k in ("happy", "sad", "neutral", "angry", "surprised")}
    )
    metrics["data"] = f"synthetic:{per_class}"
    (folder / "metrics.json").write_text(json.dumps(metrics))
    save_confusion_matrix(metrics, folder / "confusion_matrix.png")
    save_curves(history, folder / "curves.png")
    cfg = {"data": f"synthetic:{per_class}", "arch": "resnet18", "epochs": 1, "seed": 0, "val_fraction": 0.15}
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    faces = make_dataset(2, seed=seed)
    save_mean_gradcam(load_model(folder / "model"), faces.images, faces.labels, folder / MEAN_GRADCAM)
    return folder


@pytest.fixture(scope="module")
def hub():
    with HubServer(tokens={TOKEN}) as server:
        yield server


def hub_env(hub: HubServer, home: Path, *, token: str | None = TOKEN) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(
        HF_ENDPOINT=hub.url,
        HF_HOME=str(home),
        HF_HUB_DISABLE_XET="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        GRADIO_ANALYTICS_ENABLED="False",
        PYTHONPATH=str(ROOT),
    )
    if token is not None:
        env["HF_TOKEN"] = token
    return env


def run_py(
    args: list[str], env: dict[str, str], *, cwd: Path = ROOT, check: bool = True
) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    if check and proc.returncode != 0:
        pytest.fail(f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


PULL_SCRIPT = r"""
import json, sys
import numpy as np, timm, torch
from PIL import Image
from emotion import load_model
from training.synthetic import make_dataset

source, face_path = sys.argv[1], sys.argv[2]
face = np.asarray(Image.open(face_path).convert("RGB"))
ours = load_model(source, precision="fp32")
p_ours = dict(zip(ours.labels, ours.predict(face).tolist()))
repo = source.split("@")[0]
net = timm.create_model("hf_hub:" + repo, pretrained=True).eval()
cfg = timm.data.resolve_data_config({}, model=net)
x = timm.data.create_transform(**cfg)(Image.fromarray(face))[None]
with torch.no_grad():
    probs = net(x).softmax(-1)[0].tolist()
p_timm = dict(zip(net.pretrained_cfg["label_names"], probs))
out = {"ours": p_ours, "timm": p_timm, "source": ours.source}
if "@" not in source:
    from transformers import pipeline

    clf = pipeline("image-classification", model=repo)
    out["transformers"] = {d["label"]: d["score"] for d in clf(Image.fromarray(face), top_k=None)}
print("RESULT" + json.dumps(out))
"""


def pull_and_predict(source: str, env: dict[str, str], face_path: Path) -> dict[str, dict[str, float]]:
    proc = run_py(["-c", PULL_SCRIPT, source, str(face_path)], env)
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT"))
    return json.loads(line[len("RESULT") :])


@pytest.fixture(scope="module")
def face_png(tmp_path_factory) -> Path:
    from PIL import Image

    from training.synthetic import make_dataset

    path = tmp_path_factory.mktemp("face") / "face.png"
    Image.fromarray(make_dataset(1, seed=3).images[0]).save(path)
    return path


@pytest.fixture(scope="module")
def pushed(hub, tmp_path_factory) -> dict:
    """tester/emotion pushed once to main from a fake run."""
    tmp = tmp_path_factory.mktemp("push")
    run = make_run(tmp / "run", seed=0)
    proc = run_py(
        ["-m", "hub.push", str(run), "--repo", "tester/emotion", "--tag", "v1"], hub_env(hub, tmp / "hf")
    )
    return {"run": run, "stdout": proc.stdout, "tmp": tmp}


@pytest.mark.slow
def test_push_makes_one_commit_with_the_expected_files(hub, pushed):
    repo = hub.repo("tester/emotion")
    history = repo.history("main")
    assert len(history) == 2, "initial commit + exactly one push commit"
    head, first = history
    assert set(head.files) == EXPECTED
    assert set(head.files) - set(first.files) == EXPECTED - {".gitattributes"}
    # Weights and images went through LFS, as on the real Hub.
    assert {"model.safetensors", "mean_gradcam.png"} <= head.lfs
    assert repo.tags["v1"] == head.sha
    assert ("POST", "/tester/emotion.git/info/lfs/objects/batch") in hub.state.requests
    config = json.loads(head.files["config.json"])
    assert config["architecture"] == "resnet18" and config["num_classes"] == 5


@pytest.mark.slow
def test_card_parses_and_round_trips(hub, pushed):
    from huggingface_hub import ModelCard

    text = hub.repo("tester/emotion").resolve("main").files["README.md"].decode()
    card = ModelCard(text)
    data = card.data
    assert data.library_name == "timm" and data.pipeline_tag == "image-classification"
    assert "synthetic-data" in data.tags
    assert [r.metric_type for r in data.eval_results] == ["accuracy", "f1"]
    assert ModelCard(str(card)).data.to_dict() == data.to_dict()  # metadata round-trips
    for needle in (
        "happy, sad, neutral, angry, surprised",
        "confusion_matrix.png",
        "mean_gradcam.png",
        "hf_hub:tester/emotion",
        'pipeline("image-classification"',
        "synthetic drawn faces",
        "workplaces and educational institutions",
        "data: synthetic:4",
    ):
        assert needle in text, needle


@pytest.mark.slow
def test_pull_into_empty_cache_loads_the_same_everywhere(hub, pushed, tmp_path, face_png):
    out = pull_and_predict("tester/emotion", hub_env(hub, tmp_path / "hf"), face_png)
    assert set(out["ours"]) == {"happy", "sad", "neutral", "angry", "surprised"}
    for other in ("timm", "transformers"):
        assert set(out[other]) == set(out["ours"]), other
        for label, p in out["ours"].items():
            assert abs(out[other][label] - p) < 1e-4, (other, label)
    # Once cached, it loads offline.
    offline = {**hub_env(hub, tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}
    code = "from emotion import load_model; print(load_model('tester/emotion').labels)"
    assert "happy" in run_py(["-c", code], offline).stdout


@pytest.mark.slow
def test_revisions_and_card_protection(hub, pushed, tmp_path, face_png):
    """Push v1 then v2 to branch dev: @dev serves v2, main keeps v1, a hand-edited card survives."""
    from PIL import Image

    from emotion.storage.model_folder import load_model

    env = hub_env(hub, tmp_path / "hf")
    repo = hub.repo("tester/emotion")
    push_dev = ["-m", "hub.push", "--repo", "tester/emotion", "--revision", "dev"]
    run_py([*push_dev, str(pushed["run"])], env)
    repo.resolve("dev").files["README.md"] = b"---\nlicense: mit\n---\n# Edited by hand\n"
    run_v2 = make_run(tmp_path / "run2", seed=1)
    run_py([*push_dev, str(run_v2)], env)
    assert len(repo.history("dev")) == 4 and len(repo.history("main")) == 2
    assert repo.resolve("dev").files["README.md"].startswith(b"---\nlicense: mit"), "hand-edited card kept"

    p_main = pull_and_predict("tester/emotion", env, face_png)["ours"]
    p_dev = pull_and_predict("tester/emotion@dev", env, face_png)
    assert p_dev["source"] == "tester/emotion@dev"
    assert p_dev["ours"] != p_main
    face = np.asarray(Image.open(face_png).convert("RGB"))
    local_v2 = load_model(run_v2 / "model", precision="fp32")
    for label, p in zip(local_v2.labels, local_v2.predict(face), strict=True):
        assert abs(p_dev["ours"][label] - p) < 1e-5, "@dev serves the second push"

    run_py([*push_dev, str(run_v2), "--overwrite-card"], env)
    assert b"Edited by hand" not in repo.resolve("dev").files["README.md"]


def test_missing_or_rejected_token_is_a_clear_error(hub, tmp_path, untrained_folder):
    for token in (None, "hf_wrong"):
        proc = run_py(
            ["-m", "hub.push", str(untrained_folder), "--repo", "tester/nope"],
            hub_env(hub, tmp_path / "hf", token=token),
            check=False,
        )
        assert proc.returncode == 2, proc.stderr
        assert "hf auth login" in proc.stderr and "HF_TOKEN" in proc.stderr
    assert ("model", "tester/nope") not in hub.state.repos


def test_dry_run_writes_exactly_the_pushed_folder(tmp_path):
    from hub.push import PushConfig, dry_run

    run = make_run(tmp_path / "run", seed=0)
    files = dry_run(PushConfig(source=run, repo_id="tester/dry"), tmp_path / "out")
    assert set(files) == {p.name for p in (tmp_path / "out").iterdir()} == EXPECTED - {".gitattributes"}
    assert (tmp_path / "out" / "mean_gradcam.png").stat().st_size > 0


def test_pickle_only_repo_is_refused(hub, tmp_path):
    import io

    buf = io.BytesIO()
    model = build_model("resnet18")
    torch.save(model.net.state_dict(), buf)
    config = json.dumps(hub_config(model)).encode()
    hub.add_repo(
        "tester/pickled",
        {"config.json": config, "pytorch_model.bin": buf.getvalue()},
        lfs={"pytorch_model.bin"},
    )
    code = "from emotion import load_model; load_model('tester/pickled')"
    proc = run_py(["-c", code], hub_env(hub, tmp_path / "hf"), check=False)
    assert proc.returncode != 0
    assert "ModelLoadError" in proc.stderr and "pickle" in proc.stderr, proc.stderr
    assert "pytorch_model.bin" in proc.stderr


@pytest.mark.slow
def test_space_from_one_command_serves_the_pushed_model(hub, pushed, tmp_path, face_png):
    from gradio_client import Client, handle_file

    env = hub_env(hub, tmp_path / "hf")
    run_py(
        [
            "-m",
            "hub.space",
            "--repo",
            "tester/emotion-demo",
            "--model",
            "tester/emotion",
            "--hardware",
            "cpu-basic",
        ],
        env,
    )
    space = hub.repo("tester/emotion-demo", "space")
    assert space.sdk == "gradio" and space.hardware == "cpu-basic"
    files = set(space.resolve("main").files)
    assert {"space_app.py", "requirements.txt", "README.md", "app/ui.py", "emotion/model.py"} <= files
    assert not any(f.startswith("training/") for f in files)

    from huggingface_hub import SpaceCard

    card = SpaceCard(space.resolve("main").files["README.md"].decode())
    import gradio

    assert card.data.sdk == "gradio" and card.data.sdk_version == gradio.__version__
    assert card.data.app_file == "space_app.py" and card.data.models == ["tester/emotion"]

    # Download the Space like a fresh machine would and launch its entry file from the checkout.
    code = (
        "import sys; from huggingface_hub import snapshot_download; "
        "snapshot_download('tester/emotion-demo', repo_type='space', local_dir=sys.argv[1])"
    )
    run_py(["-c", code, str(tmp_path / "space")], env)
    port = free_port()
    # No PYTHONPATH: the entry file must find its own packages; no EMOTION_MODEL: it pins the model.
    space_env = {k: v for k, v in env.items() if k not in ("PYTHONPATH", "EMOTION_MODEL")}
    space_env.update(GRADIO_SERVER_PORT=str(port), GRADIO_SERVER_NAME="127.0.0.1")
    log = tmp_path / "space.log"
    with open(log, "w") as stream:
        proc = subprocess.Popen(
            [sys.executable, "space_app.py"],
            cwd=tmp_path / "space",
            env=space_env,
            stdout=stream,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(proc, port, log, name="the Space")
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        result = client.predict(handle_file(str(face_png)), 1, True, api_name="/explain")
        text = json.dumps(result, default=str)
        assert "happy" in text
        assert "tester/emotion" in log.read_text() or "tester/emotion" in text
    finally:
        proc.terminate()
        proc.wait(timeout=30)
