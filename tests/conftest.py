"""Shared fixtures: tiny models and data made in code; nothing from the network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import data

from emotion.model import EmotionModel, build_model, load_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    return data.astronaut()


@pytest.fixture(scope="session")
def untrained_folder(tmp_path_factory) -> Path:
    """A randomly initialised resnet18 saved as a model folder: fast, for plumbing tests."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("models") / "untrained"
    build_model("resnet18").save(folder)
    return folder


@pytest.fixture(scope="session")
def untrained_model(untrained_folder) -> EmotionModel:
    return load_model(untrained_folder, precision="fp32")
