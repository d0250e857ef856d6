"""The cascading model-randomisation sanity check (emotion/evaluation/sanity.py).

Known answers: a map correlates 1 with itself and ~0 with a shuffled copy; randomising the
weights changes Grad-CAM; the caller's model is never touched; the flag rule reads the stage and
threshold of its config. On the trained demo model, Grad-CAM passes and guided backprop fails, as
Adebayo et al. (2018) found on ImageNet networks.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from emotion.evaluation.sanity import (
    STEM,
    SanityCheckError,
    SanityConfig,
    SanityResult,
    cascade_stages,
    cascading_randomisation,
    randomisation_cascade,
    save_sanity_plot,
    spearman_map_correlation,
)
from emotion.model import EmotionModel, build_model
from training.synthetic import make_dataset

STAGES = ("fc", "layer4", "layer3", "layer2", "layer1", STEM)


@pytest.fixture(scope="module")
def tiny() -> EmotionModel:
    torch.manual_seed(0)
    return build_model("resnet10t")


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    return make_dataset(1, seed=99).images  # one face per emotion


def _state(model: EmotionModel) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.net.state_dict().items()}


def _same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------------------------------------
# The correlation


def test_map_correlates_one_with_itself_and_zero_with_a_shuffled_copy():
    rng = np.random.default_rng(0)
    a = rng.random((100, 100)).astype(np.float32)
    assert spearman_map_correlation(a, a) == pytest.approx(1.0)
    assert abs(spearman_map_correlation(a, rng.permutation(a.ravel()).reshape(a.shape))) < 0.05
    # Ranks, not values: any increasing transform of the map is the same ranking.
    assert spearman_map_correlation(a, a**3) == pytest.approx(1.0)
    assert spearman_map_correlation(a, 1 - a) == pytest.approx(-1.0)


def test_flat_maps_follow_the_compare_convention():
    flat, ramp = np.zeros((10, 10)), np.arange(100.0).reshape(10, 10)
    assert spearman_map_correlation(flat, flat) == 1.0
    assert spearman_map_correlation(flat, ramp) == 0.0  # collapsed to a constant: changed
    with pytest.raises(SanityCheckError, match="different sizes"):
        spearman_map_correlation(flat, np.zeros((5, 5)))


# ---------------------------------------------------------------------------------------------
# The cascade


def test_stages_run_top_down_from_the_head_to_the_stem(tiny):
    assert cascade_stages(tiny) == STAGES


def test_cascade_randomises_cumulatively_on_copies_and_leaves_the_model_alone(tiny, faces):
    before = _state(tiny)
    probs = tiny.predict(faces)
    copies = list(randomisation_cascade(tiny, seed=0))
    assert [stage for stage, _ in copies] == list(STAGES)
    assert _same_state(before, _state(tiny))
    np.testing.assert_array_equal(tiny.predict(faces), probs)

    for k, (_, randomised) in enumerate(copies):
        state = randomised.net.state_dict()
        random_prefixes = ("fc.", "layer4.", "layer3.", "layer2.", "layer1.", "conv1.")[: k + 1]
        for key, value in before.items():
            # Convolution and linear weights: an untrained model's BatchNorm already holds the
            # values a reset gives (weight 1, bias 0, mean 0, variance 1).
            if value.dim() < 2:
                continue
            changed = not torch.equal(state[key], value)
            assert changed == key.startswith(random_prefixes), (k, key)
        # The BatchNorm-folded copy predict() uses is rebuilt, not the trained one carried over.
        assert not np.allclose(randomised.predict(faces), probs, atol=1e-4)
    # Cumulative: the head drawn at step 0 is kept at every later step.
    head = copies[0][1].net.fc.weight
    assert all(torch.equal(m.net.fc.weight, head) for _, m in copies)


def test_cascade_is_seeded(tiny):
    first = dict(randomisation_cascade(tiny, seed=3))
    again = dict(randomisation_cascade(tiny, seed=3))
    other = dict(randomisation_cascade(tiny, seed=4))
    assert _same_state(_state(first[STEM]), _state(again[STEM]))
    assert not torch.equal(
        first["layer4"].net.layer4[0].conv1.weight, other["layer4"].net.layer4[0].conv1.weight
    )


def test_cascading_randomisation_gives_one_value_per_face_and_stage(tiny, faces):
    before = _state(tiny)
    seen = []
    result = cascading_randomisation(tiny, faces, ["gradcam"], progress=lambda f, _: seen.append(f))
    assert _same_state(before, _state(tiny))
    assert result.methods == ("gradcam",) and result.stages == STAGES and result.faces == len(faces)
    for stage in STAGES:
        values = result.rank_correlation["gradcam"][stage]
        assert len(values) == len(faces) and all(-1.0 <= v <= 1.0 for v in values)
        assert len(result.ssim["gradcam"][stage]) == len(faces)
    assert seen[-1] == 1.0 and seen == sorted(seen)
    payload = json.loads(json.dumps(result.to_dict()))
    assert payload["methods"]["gradcam"]["stages"]["layer3"]["rank_correlation_mean"] == pytest.approx(
        result.mean("gradcam", "layer3")
    )
    assert payload["rule"]["stage"] == "layer3" and payload["rule"]["threshold"] == 0.5
    assert "Grad-CAM" in result.describe()


def test_all_labels_compares_every_label_of_every_face(tiny, faces):
    result = cascading_randomisation(tiny, faces[:2], ["gradcam"], labels="all")
    assert len(result.rank_correlation["gradcam"]["fc"]) == 2 * len(tiny.labels)


def test_bad_inputs_say_what_to_pass(tiny, faces):
    with pytest.raises(SanityCheckError, match="N ≥ 1"):
        cascading_randomisation(tiny, faces[:0], ["gradcam"])
    with pytest.raises(SanityCheckError, match="'predicted' or 'all'"):
        cascading_randomisation(tiny, faces, ["gradcam"], labels="top")


# ---------------------------------------------------------------------------------------------
# The flag rule and the outputs


def _hand_made(config: SanityConfig = SanityConfig()) -> SanityResult:
    """'steady' barely changes; 'drops' falls to ~0 at once; 'late' stays high until layer3."""
    curves = {
        "steady": (0.95, 0.9, 0.8, 0.7, 0.6, 0.5),
        "drops": (0.1, 0.05, 0.0, 0.0, 0.0, 0.0),
        "late": (0.9, 0.8, 0.3, 0.2, 0.1, 0.0),
    }
    rank = {m: {s: [v - 0.05, v + 0.05] for s, v in zip(STAGES, c, strict=True)} for m, c in curves.items()}
    return SanityResult(
        methods=tuple(curves),
        stages=STAGES,
        rank_correlation=rank,
        ssim=rank,
        faces=2,
        architecture="resnet10t",
        config=config,
    )


def test_flag_rule_reads_the_configured_stage_and_threshold():
    result = _hand_made()
    assert result.flag_stage == "layer3"  # the head + the two top stages
    assert result.mean("steady", "layer3") == pytest.approx(0.8)
    assert result.spread("steady", "layer3") == pytest.approx(0.05)
    assert result.flagged_methods() == ("steady",)
    # One stage earlier, 'late' has not changed enough yet either.
    assert _hand_made(SanityConfig(after_blocks=1)).flagged_methods() == ("steady", "late")
    # A stricter threshold flags 'late' at layer3 (0.3), never 'drops' (0.0).
    assert _hand_made(SanityConfig(threshold=0.25)).flagged_methods() == ("steady", "late")
    # More blocks than the network has: the last stage (the stem) is read.
    assert _hand_made(SanityConfig(after_blocks=99)).flag_stage == STEM
    assert "FAILS" in result.describe().splitlines()[2]  # 'steady', the first method row


def test_plot_is_written_atomically(tmp_path):
    path = save_sanity_plot(_hand_made(), tmp_path / "sanity.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["sanity.png"]


# ---------------------------------------------------------------------------------------------
# On the trained demo model


@pytest.mark.slow
def test_gradcam_passes_on_the_demo_model(demo_model):
    """Grad-CAM changes with the weights: measured on these 10 faces with the cached demo model,
    rank correlation 0.35 ± 0.41 with the head random and 0.23 ± 0.21 down to layer3, against 1.0 for
    the trained model with itself."""
    faces = make_dataset(2, seed=99).images
    before = _state(demo_model)
    result = cascading_randomisation(demo_model, faces, ["gradcam"])
    assert _same_state(before, _state(demo_model))
    assert not result.flagged("gradcam")
    assert result.mean("gradcam", "layer3") < 0.5
    assert all(result.mean("gradcam", s) < 0.6 for s in STAGES)


@pytest.mark.slow
def test_guided_backprop_fails_on_the_demo_model(demo_model):
    """Guided backprop barely changes, as Adebayo et al. found: measured on 10 faces
    (make_dataset(2, seed=99)) with the cached demo model, rank correlation 0.97 (head random),
    0.94 (+layer4), 0.87 (+layer3), 0.77 (+layer2), 0.78 (+layer1), and only 0.44 with the stem
    random too (spread ≤ 0.06, so 2 faces suffice). It is the slowest method here: about 2.6 s
    per face per network copy on 2 cores, far more when they are busy."""
    faces = make_dataset(1, seed=99).images[:2]
    result = cascading_randomisation(demo_model, faces, ["gradcam", "guided_backprop"])
    assert result.flagged("guided_backprop")
    assert result.mean("guided_backprop", "layer3") > 0.7
    assert result.mean("guided_backprop", "layer3") > result.mean("gradcam", "layer3") + 0.3
