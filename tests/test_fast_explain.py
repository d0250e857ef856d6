"""The fast paths give the same explanations as the slow ones (issue 5).

Grad-CAM from the classification forward equals pytorch-grad-cam called per class; LIME's paired
sampling makes the same kind of faces lime_image makes and agrees with a 1000-sample reference
about as well as a second reference does; folding BatchNorm changes no probability; the video
path gives the photo path's answers. Speed is measured by bench/, never asserted here; the
benchmarks run in a short mode below so they cannot rot.
"""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch
from lime import lime_image

from emotion.evaluation.agreement import lime_agreement, map_correlation, rank_correlation, top_k_overlap
from emotion.evaluation.groundtruth import dilate
from emotion.explainers.lime import (
    LimeConfig,
    hidden_face,
    lime_fit,
    lime_kernel_weights,
    orthogonal_patterns,
    perturbed_faces,
    perturbed_probabilities,
    segment_face,
    weighted_ridge,
)
from emotion.explainers.saliency import GRADCAM_LAST
from emotion.model import build_model
from emotion.storage.model_folder import load_model
from training.synthetic import make_dataset


def _gradcam_per_class(model, face) -> np.ndarray:
    from bench.explain import Baseline  # pytorch-grad-cam called once per class, as documented

    return Baseline(model, layer=model.last_stage_layer_name).gradcams(face)


@pytest.fixture(scope="module")
def demo_model_fp32(demo_folder):
    return load_model(demo_folder, precision="fp32")


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    return make_dataset(1, seed=31).images  # one face of each emotion, unseen in training


def test_gradcam_from_the_forward_equals_pytorch_grad_cam_per_class(demo_folder, demo_model_fp32, faces):
    exact = demo_model_fp32
    # bf16 asked for, not "auto": a CPU without AMX or AVX512-BF16 would pick fp32.
    demo_bf16 = load_model(demo_folder, precision="bf16")
    assert exact.has_pooled_linear_head and demo_bf16.precision == "bf16"
    bf16_correlations = []
    for face in faces:
        slow = _gradcam_per_class(exact, face)
        fast = GRADCAM_LAST.for_face(exact, face)
        fast_bf16 = GRADCAM_LAST.for_face(demo_bf16, face)
        for c, label in enumerate(exact.labels):
            np.testing.assert_allclose(fast[label], slow[c], atol=1e-4)  # the same arithmetic
            # bf16 features: the same maps up to rounding.
            bf16_correlations.append(map_correlation(fast_bf16[label], slow[c]))
            assert np.abs(fast_bf16[label] - slow[c]).max() < 0.1, label
    # What the README promises ("What the maps read"), for every face and label. Measured on an
    # AVX2 CPU (bf16 emulated): the lowest of 25 maps 0.99959 on this model, 0.99868 on another
    # demo model; the mean 0.99994.
    assert min(bf16_correlations) >= 0.998, sorted(bf16_correlations)[:5]


def test_gradcam_falls_back_to_backprop_for_other_heads(faces):
    torch.manual_seed(0)
    model = build_model("resnet18", drop_rate=0.0, model_args={"output_stride": 16, "global_pool": "max"})
    assert not model.has_pooled_linear_head
    face = faces[0]
    maps = GRADCAM_LAST.for_face(model, face)
    slow = _gradcam_per_class(model, face)
    for c, label in enumerate(model.labels):
        assert map_correlation(maps[label], slow[c]) > 0.999


def test_folded_batchnorm_gives_the_same_probabilities_and_follows_training(faces):
    torch.manual_seed(0)
    model = build_model("resnet18")
    model.precision = "fp32"
    for bn in (m for m in model.net.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        torch.nn.init.uniform_(bn.running_mean, -0.5, 0.5)  # BatchNorm that is not the identity
        torch.nn.init.uniform_(bn.running_var, 0.5, 2.0)
    with torch.inference_mode():
        unfolded = torch.softmax(model.net(model.to_tensor(faces)), 1).numpy()
    np.testing.assert_allclose(model.predict(faces), unfolded, atol=1e-5)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.inference_net.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.net.modules())  # saved weights intact

    before = model.predict(faces)
    optimizer = torch.optim.SGD(model.net.parameters(), lr=0.5)
    model.net.train()
    loss = torch.nn.functional.cross_entropy(model.net(model.to_tensor(faces)), torch.arange(len(faces)))
    loss.backward()
    optimizer.step()
    model.net.eval()
    with torch.inference_mode():
        after_step = torch.softmax(model.net(model.to_tensor(faces)), 1).numpy()
    assert np.abs(after_step - before).max() > 1e-3
    np.testing.assert_allclose(model.predict(faces), after_step, atol=1e-5)  # no stale copy


def test_orthogonal_patterns_are_balanced_complementary_and_uniform():
    data = orthogonal_patterns(1 + 4 * 128, 40, np.random.RandomState(0))
    assert data.shape == (513, 40) and set(np.unique(data)) == {0, 1}
    assert data[0].all()  # the face itself first, as lime_image does
    body = data[1:]
    np.testing.assert_array_equal(body[1::2], 1 - body[0::2])  # complementary pairs
    for block in body.reshape(4, 128, 40):
        assert (block.mean(0) == 0.5).all()  # each segment on exactly half the time
        centred = 2 * block[0::2] - 1
        np.testing.assert_array_equal(centred.T @ centred, 64 * np.eye(40))  # segments independent
    # Over many blocks every pattern is uniform: each cell on half the time, no row bias.
    many = orthogonal_patterns(1 + 200 * 128, 40, np.random.RandomState(1))[1:]
    assert np.abs(many.reshape(200, 128, 40)[:, 5].mean(0) - 0.5).max() < 0.15
    rows = np.random.RandomState(2).randint(0, 2, (20000, 40))
    assert abs(np.std(many.sum(1)) - np.std(rows.sum(1))) < 0.2  # the same spread of "on" counts


def _perturbed(face, fill, segments, data) -> np.ndarray:
    """`perturbed_faces` on numpy arrays, as lime_image's faces are."""
    return perturbed_faces(*map(torch.from_numpy, (face, fill, segments, data))).numpy()


def test_the_model_is_asked_about_the_faces_the_patterns_describe(faces):
    face = faces[0]
    segments = segment_face(face)
    data = orthogonal_patterns(400, int(segments.max()) + 1, np.random.RandomState(0))
    recorder = _Recorder()
    probs = perturbed_probabilities(recorder, face, face // 2, segments, data, batch_size=128)
    assert probs.shape == (400, 2)
    assert [len(b) for b in recorder.batches] == [128, 128, 128, 16]
    expected = _perturbed(face, face // 2, segments, data)
    np.testing.assert_array_equal(np.concatenate(recorder.batches), expected)


def test_vectorised_masking_makes_the_faces_lime_image_makes(faces):
    face = faces[1]
    segments = segment_face(face)
    fudged = np.zeros_like(face)
    made = []

    def classify(batch):
        made.append(batch)
        return np.zeros((len(batch), 5))

    explainer = lime_image.LimeImageExplainer(random_state=3)
    data, _ = explainer.data_labels(face, fudged, segments, classify, 50, batch_size=25)
    np.testing.assert_array_equal(_perturbed(face, fudged, segments, data), np.concatenate(made))


def test_agreement_measures_mean_what_they_say():
    a = np.array([[5.0, 4, 3, 2, 1, 0, -1]])
    assert top_k_overlap(a[0], a[0]) == 1.0 and rank_correlation(a[0], a[0]) == pytest.approx(1.0)
    assert top_k_overlap(a[0], -a[0]) == pytest.approx(0.6)  # 5 of 7: three shared by any two
    assert rank_correlation(a[0], -a[0]) == pytest.approx(-1.0)
    assert lime_agreement(a, a) == {"top_k_overlap": 1.0, "rank_correlation": pytest.approx(1.0)}
    with pytest.raises(ValueError, match="one segmentation"):
        lime_agreement(a, a[:, :5])
    assert map_correlation(np.zeros((4, 4)), np.zeros((4, 4))) == 1.0


@pytest.fixture(scope="module")
def bench_explain(demo_folder, tmp_path_factory) -> dict:
    from bench.explain import main

    out = tmp_path_factory.mktemp("bench") / "explain.json"
    assert main(["--quick", "--model", str(demo_folder), "--json", str(out)]) == 0
    return json.loads(out.read_text())


def test_bench_explain_times_every_part_of_both_paths(bench_explain):
    for side in ("baseline", "project"):
        for part in ("detect", "classify", "gradcam", "lime", "total"):
            stats = bench_explain["ms"][side][part]
            assert 0 <= stats["min"] <= stats["median"] <= stats["max"], (side, part)
    assert bench_explain["lime"]["reference_samples"] == 1000
    assert bench_explain["faces"] == 3


@pytest.mark.slow
def test_bench_explain_times_the_lime_settings_it_is_given(untrained_model, monkeypatch):
    import bench.explain as bench
    from emotion.explainers.lime import LimeConfig

    real_explain = bench.explain
    asked = []

    def explain(*args, **kwargs):
        asked.append(kwargs.get("lime"))
        return real_explain(*args, **kwargs)

    class Baseline:  # the off-the-shelf side is not what this checks
        def report(self, photo, detect):
            face = real_explain(untrained_model, photo, methods=(), whole_image="if_no_face").faces[0].face
            return dict.fromkeys(bench.PARTS, 0.0), face, None

    monkeypatch.setattr(bench, "explain", explain)
    config = LimeConfig(num_samples=16, batch_size=16)
    bench.time_reports(untrained_model, Baseline(), bench.bench_photos(1), repeats=1, config=config)
    # `--lime-samples` must change what is timed, not only the agreement figures.
    assert asked == [config]


@pytest.mark.slow
def test_bench_explain_times_from_face_crops_where_opencv_has_no_cascade(untrained_model, monkeypatch):
    """A lent GPU machine has OpenCV 5, without CascadeClassifier: the benchmark then times both
    paths from the face crops instead of failing, and detection says what to install."""
    import cv2

    import bench.explain as bench
    from emotion.explainers.lime import LimeConfig
    from emotion.photo import faces as faces_module

    monkeypatch.delattr(cv2, "CascadeClassifier")
    monkeypatch.setattr(faces_module, "_per_thread", threading.local())  # no cascade loaded yet
    with pytest.raises(RuntimeError, match="opencv-python-headless<5"):
        faces_module.detect_faces(np.zeros((64, 64, 3), np.uint8))
    crops = bench.bench_faces(2)
    assert [c.shape for c in crops] == [(100, 100, 3)] * 2
    config = LimeConfig(num_samples=16, batch_size=16)
    times, cut = bench.time_reports(
        untrained_model, bench.Baseline(untrained_model), crops[:1], repeats=1, config=config, detect=False
    )
    np.testing.assert_array_equal(cut[0]["face"], crops[0])  # both paths explained the crop itself
    assert times["project"]["lime"][0] > 0 and times["baseline"]["lime"][0] > 0


def test_fast_lime_agrees_with_the_1000_sample_reference_as_well_as_another_reference(
    demo_model, demo_model_fp32
):
    from bench.explain import bench_photos, lime_reference_agreement
    from emotion import explain
    from emotion.explainers.lime import LimeConfig

    reference = demo_model_fp32
    # Faces no choice was made on: the 128-sample default was chosen on seeds 23 and 41 (issue
    # 5's sweep), bench.explain runs seed 11 and the demo model trains on seed 0, so seed 47; and
    # without the astronaut, who heads every bench_photos list and so was in the sweep too.
    photos = bench_photos(9, seed=47)[1:]
    faces = [
        explain(demo_model, photo, methods=(), whole_image="if_no_face").faces[0].face for photo in photos
    ]
    mean = lime_reference_agreement(demo_model, reference, faces, LimeConfig())["mean"]
    # Two independent 1000-sample LIME runs themselves agree only so far (about 0.7 on these
    # faces), so agreement is held to that noise floor rather than to a fixed number.
    for metric in ("top_k_overlap", "rank_correlation"):
        assert mean["reference_vs_reference"][metric] > 0.5, mean  # the reference is not noise
        assert mean["relative_to_reference_noise"][metric] >= 0.9, mean


def test_bench_grad_cam_matches_the_library(bench_explain):
    assert bench_explain["gradcam_agreement"]["min"] >= 0.99


def test_video_path_gives_the_photo_paths_answers(demo_model):
    from bench.video import synthetic_stream
    from emotion.photo.faces import crop_face
    from emotion.video.frames import VIDEO_DETECT, analyze_frame, annotate_frame

    frame = synthetic_stream(3).frames[1]
    result = analyze_frame(demo_model, frame)
    assert len(result.boxes) >= 1 and result.probabilities.shape == (len(result.boxes), 5)
    assert result.last_stage_gradcams.shape == (len(result.boxes), 5, 100, 100)
    for box, probs, cams in zip(result.boxes, result.probabilities, result.last_stage_gradcams, strict=True):
        crop = crop_face(frame, box, margin=VIDEO_DETECT.margin)
        np.testing.assert_allclose(probs, demo_model.predict(crop), atol=1e-3)
        photo_maps = GRADCAM_LAST.for_face(demo_model, crop)
        for c, label in enumerate(demo_model.labels):
            assert map_correlation(cams[c], photo_maps[label]) > 0.999
    drawn = annotate_frame(frame, result, demo_model.labels)
    assert drawn.shape == frame.shape and not np.array_equal(drawn, frame)
    empty = analyze_frame(demo_model, np.full((480, 640, 3), 90, np.uint8))
    assert empty.boxes == [] and empty.last_stage_gradcams.shape == (0, 5, 100, 100)


def test_bench_video_runs(demo_folder, tmp_path):
    from bench.video import main

    out = tmp_path / "video.json"
    assert main(["--frames", "4", "--model", str(demo_folder), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["frames"] == 4 and result["frame_size"] == [640, 480]
    for side in ("baseline", "project"):
        found = result["detection"][side]
        assert found["planted"] == 8 and found["hits"] + found["misses"] == 8, side
        # Measured on this stream: 6 of 8 by either path, no box off a face.
        assert found["hits"] >= 4 and found["false_positives"] == 0, (side, found)
    # Both paths make the same maps: the baseline's pytorch-grad-cam at the project's layer.
    assert result["gradcam_layer"] == "layer4"
    assert result["gradcam_agreement"]["maps"] > 0 and result["gradcam_agreement"]["min"] >= 0.99
    assert all(result["fe_per_frame"][side] > 0 for side in ("baseline", "project"))


def test_bench_video_counts_only_boxes_on_planted_faces_as_found():
    from bench.video import match_faces
    from emotion.photo.faces import Box
    from emotion.video.identity import iou

    face, other = Box(100, 100, 80, 100), Box(400, 50, 90, 90)
    near = Box(100, 110, 80, 80)  # inside `face`: IoU 0.8
    assert iou(face, face) == 1.0 and iou(face, other) == 0.0
    assert iou(near, face) == pytest.approx(80 * 80 / (80 * 100))
    assert match_faces([near], [face, other]) == {"hits": 1, "misses": 1, "false_positives": 0}
    # Counting boxes would call each of these two faces found.
    backdrop = Box(300, 300, 60, 60)
    assert match_faces([near, backdrop], [face, other]) == {"hits": 1, "misses": 1, "false_positives": 1}
    assert match_faces([face, near], [face]) == {"hits": 1, "misses": 0, "false_positives": 1}
    grazing = Box(150, 150, 80, 100)  # overlaps `face` at IoU 0.10 only
    assert match_faces([grazing], [face]) == {"hits": 0, "misses": 1, "false_positives": 1}


def test_video_command_writes_every_frame_annotated(demo_folder, tmp_path):

    from bench.video import synthetic_stream, write_clip
    from emotion.__main__ import main
    from emotion.video.frames import read_frames

    source = write_clip(tmp_path / "clip.avi", synthetic_stream(6).frames, fps=10)
    out = tmp_path / "annotated.avi"
    assert main(["video", str(source), "--out", str(out), "--model", str(demo_folder)]) == 0
    frames = list(read_frames(out))
    originals = list(read_frames(source))
    assert len(frames) == len(originals) == 6
    assert all(np.abs(a.astype(int) - b).mean() > 1 for a, b in zip(frames, originals, strict=True))
    missing = tmp_path / "missing.avi"
    assert main(["video", str(missing), "--out", str(tmp_path / "x.avi"), "--model", str(demo_folder)]) == 2
    assert not (tmp_path / "x.avi").exists()


def _lime_image_fill(face: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """What lime_image shows for a hidden segment by default (hide_color=None): its mean colour."""
    explainer = lime_image.LimeImageExplainer(random_state=0)
    shown = []

    def capture(image, fudged_image, *_args, **_kwargs):
        shown.append(fudged_image)
        raise StopIteration  # the fill is all this needs

    explainer.data_labels = capture
    with pytest.raises(StopIteration):
        explainer.explain_instance(face, lambda b: np.zeros((len(b), 5)), segmentation_fn=lambda _: segments)
    return shown[0]


def _feature_contrast_left(face: np.ndarray, shown: np.ndarray, feature: np.ndarray, skin: np.ndarray):
    """How much of a feature's colour contrast with the skin around it survives in `shown`."""

    def contrast(image: np.ndarray) -> float:
        pixels = image.astype(np.float64)
        return float(np.linalg.norm(pixels[feature].mean(0) - pixels[skin].mean(0)))

    return contrast(shown) / contrast(face)


def _hides(contrast_left: list[float]) -> bool:
    return float(np.mean(contrast_left)) <= 0.25 and max(contrast_left) <= 0.4


def test_a_hidden_segment_hides_the_feature_and_lime_images_mean_fill_does_not():
    """LIME asks what a segment is worth by hiding it. SLIC draws a mouth or a brow as a segment
    of its own, so lime_image's fill (the segment's mean colour) redraws much of the feature;
    the default fill must make brows, eyes and mouth vanish into the skin around them. Measured
    on these 10 faces, the share of the contrast left: brows 0.21 / 0.50 (ours / lime_image's),
    eyes 0.11 / 0.58, mouth 0.03 / 0.69."""
    drawn = make_dataset(2, seed=37)
    for region in ("brows", "eyes", "mouth"):
        ours, control = [], []
        for i, face in enumerate(drawn.images):
            feature = drawn.masks[region][i].astype(bool)
            skin = dilate(feature, 4) & ~feature & drawn.masks["face"][i].astype(bool)
            ours.append(_feature_contrast_left(face, hidden_face(face), feature, skin))
            mean_fill = _lime_image_fill(face, segment_face(face))
            control.append(_feature_contrast_left(face, mean_fill, feature, skin))
        assert _hides(ours), (region, ours)
        assert not _hides(control), (region, control)


class _Recorder:
    """A two-label model that keeps every batch of faces it is asked about (N×H×W×3 uint8)."""

    labels = ("a", "b")
    device = torch.device("cpu")

    def __init__(self) -> None:
        self.batches: list[np.ndarray] = []

    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        self.batches.append(batch.permute(0, 2, 3, 1).numpy())
        return torch.full((len(batch), 2), 0.5)


def test_the_hide_setting_reaches_the_perturbed_faces(faces):
    face = faces[0]
    segments = segment_face(face)
    expected = {"median": hidden_face(face), "mean": _lime_image_fill(face, segments)}
    seen = {}
    for hide, fill in expected.items():
        recorder = _Recorder()
        lime_fit(recorder, face, segments, LimeConfig(num_samples=16, hide=hide))
        seen[hide] = np.concatenate(recorder.batches)
        # Where a segment is off, the faces show the median-filtered face, or lime_image's fill.
        off = seen[hide] != face
        assert off.any()
        np.testing.assert_array_equal(seen[hide][off], np.broadcast_to(fill, seen[hide].shape)[off])
    assert not np.array_equal(seen["median"], seen["mean"])


class _BandModel:
    """Five labels, each the brightness of one horizontal band of the face (softmax): a model
    whose answers move clearly when segments are hidden, so weights are far from zero."""

    labels = ("a", "b", "c", "d", "e")
    device = torch.device("cpu")

    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        bands = batch.float().mean(dim=(1, 3)).reshape(len(batch), 5, -1).mean(dim=2)
        return torch.softmax(bands / 10.0, dim=1)


def _lime_base_fits(data, labels, kernel_width: float) -> tuple[np.ndarray, np.ndarray]:
    """(C×S weights, C scores) of lime_image's own pipeline on given patterns and answers: cosine
    distance to the first pattern, lime_image's kernel at `kernel_width`, lime_base's ridge per
    label."""
    import sklearn.metrics
    from lime import lime_base

    distances = sklearn.metrics.pairwise_distances(data, data[:1], metric="cosine").ravel()
    kernel = lambda d: np.sqrt(np.exp(-(d**2) / kernel_width**2))  # noqa: E731 (lime_image's)
    base = lime_base.LimeBase(kernel, random_state=0)
    weights, scores = np.zeros((labels.shape[1], data.shape[1])), np.zeros(labels.shape[1])
    for label in range(labels.shape[1]):
        _, pairs, scores[label], _ = base.explain_instance_with_data(
            data, labels, distances, label, data.shape[1], feature_selection="none"
        )
        for segment, weight in pairs:
            weights[label, segment] = weight
    return weights, scores


def test_lime_weights_are_lime_images_on_the_same_patterns(faces, monkeypatch):
    """Only the sampling is the project's: on the patterns it drew and the model's answers, the
    weights and the fits' R² are those of lime_image's own pipeline (cosine distance to the whole
    face, its default kernel of width 0.25, lime_base's ridge per label), to 1e-6, though the
    project makes the faces, classifies them and fits all labels at once in torch on the
    model's device."""
    import emotion.explainers.lime as lime_module

    face = faces[2]
    segments = segment_face(face)
    drawn = []
    classify = lime_module.perturbed_probabilities

    def recorded(model, face, fill, segments, data, *args):
        probs = classify(model, face, fill, segments, data, *args)
        drawn.append((data, probs.numpy()))
        return probs

    monkeypatch.setattr(lime_module, "perturbed_probabilities", recorded)
    ours, r2 = lime_fit(_BandModel(), face, segments, LimeConfig())
    (data, labels), n_features = drawn[0], int(segments.max()) + 1
    assert data.shape == (LimeConfig().num_samples, n_features)

    reference, scores = _lime_base_fits(data, labels, 0.25)
    np.testing.assert_allclose(ours, reference, atol=1e-6)
    np.testing.assert_allclose(r2, scores, atol=1e-6)
    assert np.abs(reference).max() > 1e-2  # weights that say something, not all zero
    # The control: another kernel on the same patterns gives other weights, so 1e-6 is a real bar.
    assert np.abs(_lime_base_fits(data, labels, 0.5)[0] - ours).max() > 1e-3


def test_the_ridge_fit_is_scikit_learns_where_samples_are_few_or_a_label_is_constant():
    """Fewer samples than segments (scikit-learn then solves the dual), and a label whose
    probability never moves (R² by r2_score's convention)."""
    rng = np.random.RandomState(4)
    data = rng.randint(0, 2, (12, 30))
    data[0] = 1
    labels = np.column_stack([rng.rand(12), np.full(12, 0.25)])
    weights = torch.from_numpy(lime_kernel_weights(data))
    coef, r2 = weighted_ridge(torch.from_numpy(data).double(), torch.from_numpy(labels), weights)
    reference, scores = _lime_base_fits(data, labels, 0.25)
    np.testing.assert_allclose(coef.numpy(), reference, atol=1e-6)
    np.testing.assert_allclose(r2.numpy(), scores, atol=1e-6)
