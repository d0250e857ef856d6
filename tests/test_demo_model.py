"""The shipped demo model's bookkeeping: how its recipe holds across seeds, on the page."""

from __future__ import annotations

import json

import pytest

from bench.seeds import main as seeds_main
from bench.seeds import meets_targets, row_line, spread
from emotion.evaluation.shortcut_view import seeds_markdown
from training.demo import recipe_seeds


def _row(
    seed: int,
    precision: str,
    face_seed: int,
    gradcam: float,
    lime: float = 0.95,
    accuracy: float = 1.0,
    cpu: str = "CPU A",
):
    return {
        "seed": seed, "precision": precision, "face_seed": face_seed, "accuracy_large": accuracy,
        "built_on": cpu,
        "per_class": {"gradcam": {"happy": gradcam}, "lime": {"happy": lime}},
        "pointing": {"gradcam": gradcam, "lime": lime, "blob": 0.38},
    }  # fmt: skip


def test_a_seed_meets_the_targets_only_on_every_face_seed():
    rows = [
        _row(0, "fp32", 41, 0.96), _row(0, "fp32", 42, 0.93),
        _row(1, "fp32", 41, 0.96), _row(1, "fp32", 42, 0.89),  # one face seed under 90 %
        _row(2, "fp32", 41, 0.96, accuracy=0.985), _row(2, "fp32", 42, 0.96),  # under 99 % accurate
        _row(0, "bf16", 41, 0.60, lime=0.62),  # 90 % but not 25 points above the blob's 38 %
        _row(1, "fp32", 41, 0.96, cpu="CPU B"),  # seed 1 built on another CPU: another model
    ]  # fmt: skip
    assert spread(rows) == {
        "bf16 on CPU A": {"meet": [], "of": [0]},
        "fp32 on CPU A": {"meet": [0], "of": [0, 1, 2]},
        "fp32 on CPU B": {"meet": [1], "of": [1]},
    }
    assert not meets_targets(_row(0, "fp32", 41, 0.91, lime=0.60))


def test_a_row_from_another_machine_is_judged_on_its_pointing_faces_accuracy():
    row = {**_row(0, "fp32", 41, 0.96), "accuracy": 0.98}
    assert meets_targets(row)  # 1000 faces: 100 %
    del row["accuracy_large"]
    assert not meets_targets(row)  # only the 150 pointing faces were measured: 98 %
    assert "98.0%*" in row_line(row)


def test_the_model_report_says_how_many_seeds_meet_the_target_and_where_this_one_stands(tmp_path):
    table = tmp_path / "demo-seeds.json"
    table.write_text(json.dumps({
        "precisions": {
            "fp32 on CPU A": {"meet": [0], "of": [0, 1, 2]},
            "bf16 on CPU A": {"meet": [0, 2], "of": [0, 1, 2]},
        },
        "target": 0.9, "above_blob": 0.25, "accuracy_target": 0.99, "face_seeds": 3, "per_class": 30,
        "table": "bench/results/demo-seeds.txt", "rows": [],
    }))  # fmt: skip
    spread_of_seed_1 = recipe_seeds(table, {"seed": 1, "precision": "fp32", "cpu": "CPU A"})
    assert spread_of_seed_1["this_meets"] is False
    text = seeds_markdown(
        {"recipe_seeds": recipe_seeds(table, {"seed": 0, "precision": "fp32", "cpu": "CPU A"})}
    )
    assert "1 of 3 in fp32 on CPU A, 2 of 3 in bf16 on CPU A training seeds" in text
    assert "seed 0 (fp32 on CPU A), which meets it" in text and "bench/results/demo-seeds.txt" in text
    assert "does not meet" in seeds_markdown({"recipe_seeds": spread_of_seed_1})
    assert seeds_markdown({}) == "" and seeds_markdown(None) == ""


def test_face_seeds_that_were_trained_on_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        seeds_main(["--workdir", str(tmp_path), "--seeds", "0,1", "--face-seeds", "1,41"])
    assert "face seeds [1] are also training seeds" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_first_times_a_newcomers_first_explanation_with_nothing_trained(tmp_path, capsys):
    from bench.first import main

    assert main(["--runs", "1", "--json", str(tmp_path / "first.json")]) == 0
    result = json.loads((tmp_path / "first.json").read_text())
    run = result["runs"][0]
    assert not run["trained"] and 0 < run["page_s"] < run["first_explanation_s"]
    assert run["explain_s"] < run["first_explanation_s"] and result["bare_images_per_s"] > 0
    assert "First explanation: median" in capsys.readouterr().out
