"""The shortcut detector (training.report) and the ground-truth scores (bench.truth's), on known
answers: planted regions, hand-made maps, tiny models, and the seed's story as a slow test."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from emotion import EMOTIONS
from emotion.explainers.groundtruth import centred_blob, dilate, pointing_score, region_share
from emotion.runs import REPORT_FILES, RunFolder
from training.report import (
    ReportConfig,
    ReportError,
    build_report,
    classes_in_turn,
    cover,
    differences,
    load_report_faces,
    random_regions,
    strongest_region,
    where_in_face,
    write_report,
)
from training.report import main as report_main
from training.synthetic import (
    SyntheticSpec,
    SyntheticSpecError,
    defining_regions,
    face_and_twin,
    make_dataset,
)
from training.train import load_config
from training.train import main as train_main


# --- the data source ----------------------------------------------------------------------
def test_synthetic_spec_reads_class_rate_and_other_rate():
    assert SyntheticSpec.parse("synthetic:150:angry:1:0") == SyntheticSpec(150, "angry", 1.0, 0.0)
    assert SyntheticSpec.parse("synthetic:12") == SyntheticSpec(12)
    seedlike = SyntheticSpec.parse("synthetic:6:angry:1:0").draw(6, seed=0)
    stamped = seedlike.masks["shortcut"].any((1, 2))
    assert stamped[seedlike.labels == EMOTIONS.index("angry")].all()
    assert not stamped[seedlike.labels != EMOTIONS.index("angry")].any()
    for bad in ("synthetic:x", "synthetic:5:furious", "synthetic:5:angry:1.5", "synthetic:0", "synth:5"):
        with pytest.raises(SyntheticSpecError, match="synthetic:N"):
            SyntheticSpec.parse(bad)


def test_defining_regions_come_from_the_generators_cue_ranges():
    assert defining_regions("happy") == ("mouth",)  # only the mouth curve leaves neutral's range
    assert defining_regions("neutral") == ("brows", "eyes", "mouth")
    assert set(defining_regions("angry")) >= {"brows", "eyes"}
    assert set(defining_regions("surprised")) == {"brows", "eyes", "mouth"}


# --- ground truth scores: known answers and controls -----------------------------------------
@pytest.fixture(scope="module")
def faces():
    return make_dataset(4, seed=3)


def test_a_map_equal_to_the_region_scores_at_the_top_and_a_uniform_map_low(faces):
    for i in range(len(faces.labels)):
        region = faces.masks["mouth"][i]
        assert pointing_score(region.astype(np.float32), region) == 1.0
        assert region_share(region.astype(np.float32), region) == pytest.approx(1.0)
        uniform = np.ones(region.shape, np.float32)
        # A flat map points at every pixel: it scores the share within the tolerance, chance.
        assert pointing_score(uniform, region) == pytest.approx(dilate(region, 4).mean())
        assert pointing_score(uniform, region) < 0.2
        assert region_share(uniform, region) == pytest.approx(region.mean())
        assert region.mean() < 0.1  # so "low" means something
        corner = np.zeros(region.shape, np.float32)
        corner[0, 0] = 1.0  # one peak, far from any mouth
        assert not dilate(region, 4)[0, 0] and pointing_score(corner, region) == 0.0


def test_the_centred_blob_control_misses_the_emotion_regions(faces):
    """The control that must fail: it knows where faces are, not where the emotion is."""
    blob = centred_blob(100)
    hits = [pointing_score(blob, faces.defining_mask(i, EMOTIONS[y])) for i, y in enumerate(faces.labels)]
    assert np.mean(hits) < 0.5, hits


# --- the report's parts -----------------------------------------------------------------------
def test_strongest_region_reaches_a_planted_corner_and_controls_are_elsewhere():
    background = np.ones((100, 100), bool)
    background[20:80, 25:75] = False  # the face
    heat = np.zeros((100, 100), np.float32)
    heat[85:100, 85:100] = 1.0  # a corner cue
    heat[40:60, 40:60] = 3.0  # stronger, but on the face: not a background region
    region = strongest_region(heat, background, 0.5)
    assert region[85:100, 85:100].all() and region.sum() == 225
    assert where_in_face(region) == "lower-right corner"
    controls = random_regions(region, background, 8, np.random.default_rng(0))
    assert len(controls) == 8
    for moved in controls:
        assert moved.sum() == region.sum() and background[moved].all()
        assert not (moved & region).any()


def test_cover_removes_a_stamp_with_the_colour_around_it():
    faces = np.full((2, 100, 100, 3), 40, np.uint8)
    faces[:, 90:98, 90:98] = 250  # the stamp
    region = np.zeros((100, 100), bool)
    region[86:100, 86:100] = True
    covered = cover(faces, region)
    assert (covered[:, region] == 40).all()
    assert (faces[:, 90:98, 90:98] == 250).all()  # the input is untouched


def test_report_on_tiny_data_writes_json_html_and_pictures(untrained_folder, untrained_model, tmp_path):
    cfg = ReportConfig(lime_faces=1, max_faces=4)
    faces = load_report_faces("synthetic:8", tuple(untrained_model.labels), cfg)
    assert faces.images.shape[0] == 5 * max(1, round(8 * cfg.val_fraction))
    report = build_report(untrained_model, faces, cfg)
    content = write_report(report, tmp_path, compare=report)
    on_disk = json.loads((tmp_path / REPORT_FILES["json"]).read_text())
    assert on_disk["flagged"] == content["flagged"] == report.flagged
    assert set(on_disk["classes"]) == set(EMOTIONS)
    assert on_disk["compare"]["flagged"] == report.flagged
    assert all(not row["marked"] for row in on_disk["differences"])  # a model against itself
    for name in on_disk["files"].values():
        assert (tmp_path / name).stat().st_size > 1000
    html = (tmp_path / REPORT_FILES["html"]).read_text()
    assert "Shortcut report" in html and "What changed" in html and 'src="compare_' in html


def test_report_adds_the_sanity_check_when_asked(untrained_model, tmp_path):
    cfg = ReportConfig(
        lime_faces=0, methods=("gradcam",), max_faces=2, sanity_methods=("gradcam",), sanity_faces=2
    )
    report = build_report(
        untrained_model, load_report_faces("synthetic:4", tuple(untrained_model.labels), cfg), cfg
    )
    content = write_report(report, tmp_path)
    assert content["sanity"]["methods"]["gradcam"] and (tmp_path / content["files"]["sanity"]).is_file()
    assert "Sanity check" in (tmp_path / REPORT_FILES["html"]).read_text()


def test_classes_in_turn_takes_one_face_of_each_class_first():
    labels = np.array([0, 0, 0, 1, 1, 2])
    assert classes_in_turn(labels)[:3].tolist() == [0, 3, 5]


def test_report_refuses_labels_the_model_does_not_know(untrained_model):
    with pytest.raises(ReportError, match="labels the model does not know"):
        load_report_faces("synthetic:2", ("happy", "sad"), ReportConfig())


def test_report_cli_needs_out_for_a_bare_model_folder(untrained_folder, capsys):
    assert report_main(["--model", str(untrained_folder), "--data", "synthetic:2"]) == 2
    assert "give --out" in capsys.readouterr().err


# --- the seed's story ---------------------------------------------------------------------
@pytest.mark.slow
def test_the_seeds_story_flags_angry_on_the_shortcut_model_only(tmp_path):
    """Train as the seed first did (the cue on every angry face, no dropout, no augmentation):
    the report flags angry, and only angry. The same recipe on clean data: no flag. `--compare`
    marks the difference. (The 5-seed figures and the `fixed` preset are `bench.truth`'s.)"""
    runs = {}
    for name, data in (("seed", None), ("clean", "synthetic:150")):
        out = tmp_path / name
        args = ["--preset", "seed", "--out", str(out), "--seed", "1"]
        assert train_main([*args, *(["--data", data] if data else [])]) == 0
        runs[name] = out
    seed_data = load_config(None, {}, preset="seed").data
    assert (
        report_main(["--model", str(runs["seed"]), "--data", seed_data, "--seed", "1", "--lime-faces", "1"])
        == 0
    )
    report = RunFolder(runs["seed"]).read_report()
    assert report["flagged"] == ["angry"], report["summary"]
    assert report["classes"]["angry"]["occlusion_drop"] >= 0.3
    assert "angry depends on the background" in report["summary"]

    out = tmp_path / "compare"
    assert (
        report_main(
            ["--model", str(runs["seed"]), "--compare", str(runs["clean"]), "--data", seed_data]
            + ["--seed", "1", "--lime-faces", "0", "--out", str(out)]
        )
        == 0
    )
    both = json.loads((out / REPORT_FILES["json"]).read_text())
    assert both["flagged"] == ["angry"] and both["compare"]["flagged"] == []
    angry = next(row for row in both["differences"] if row["label"] == "angry")
    assert angry["marked"] and angry["flagged"] == [True, False]
    assert both["compare"]["classes"]["angry"]["occlusion_drop"] <= 0.05


def test_differences_mark_a_flag_that_changed(untrained_model):
    cfg = ReportConfig(lime_faces=0, methods=("gradcam",), max_faces=3)
    report = build_report(
        untrained_model, load_report_faces("synthetic:4", tuple(untrained_model.labels), cfg), cfg
    )
    after = replace(report, classes=[replace(c, flagged=not c.flagged) for c in report.classes])
    assert all(row["marked"] for row in differences(report, after))


def test_a_twin_differs_from_its_face_only_where_the_emotion_shows():
    """The counterfactual bench.truth's region swaps rest on: the face is make_dataset's, and
    pasting the twin's background changes nothing the eye or the model would read."""
    from bench.truth import swap_region

    face, twin = face_and_twin("angry", "neutral", seed=99, index=2)
    np.testing.assert_array_equal(face.image, make_dataset(3, seed=99).images[2 * 5 + 3])
    np.testing.assert_array_equal(face.masks["face"], twin.masks["face"])  # same person, same pose
    brows = swap_region(face, twin, "brows")
    changed = np.abs(brows.astype(int) - face.image).max(-1) > 0
    assert changed.any() and not changed[~face.masks["face"]].any()  # only inside the face
    background = swap_region(face, twin, "background")
    assert np.abs(background.astype(int) - face.image).mean() < 5  # noise and grain at most


def test_bench_truth_pointing_prints_both_tables_and_writes_the_json(untrained_folder, tmp_path, capsys):
    from bench.truth import main

    out = tmp_path / "truth.json"
    args = ["--parts", "pointing", "--per-class", "2", "--methods", "gradcam", "--json", str(out)]
    assert main([*args, "--model", str(untrained_folder)]) == 0
    text = capsys.readouterr().out
    assert "Pointing game" in text and "background" in text
    result = json.loads(out.read_text())
    assert result["pointing"]["faces"] == 10 and set(result["region_swaps"]) == set(EMOTIONS)
    # An untrained network reads nothing: no region moves its probabilities.
    assert all(abs(v) < 0.05 for row in result["region_swaps"].values() for k, v in row.items() if k != "p")
