"""Scorers as pure functions of embeddings, on hand-made vectors with known answers."""

from __future__ import annotations

import math

import pytest
import torch

from dreamsweep.metrics.clip import clip_t_per_sample
from dreamsweep.metrics.diversity import diversity
from dreamsweep.metrics.drift import prior_drift_per_sample
from dreamsweep.metrics.memorization import nearest_cosine
from dreamsweep.metrics.objective import best_cell, objective
from dreamsweep.metrics.similarity import mean_cross_cosine as subject_fidelity  # CLIP-I, DINO

E1, E2, E3 = torch.eye(3)


def rows(*vectors):
    return torch.stack(vectors)


def test_identical_images_score_one_and_orthogonal_zero():
    assert subject_fidelity(rows(E1, E1), rows(E1)) == pytest.approx(1.0)
    assert subject_fidelity(rows(E1), rows(E2, E3)) == pytest.approx(0.0)
    assert subject_fidelity(rows(E1), rows(E1, E2)) == pytest.approx(0.5)  # mean over all pairs


def test_clip_t_pairs_each_sample_with_its_own_prompt():
    assert clip_t_per_sample(rows(E1, E2), rows(E1, E2)).tolist() == [1.0, 1.0]
    assert clip_t_per_sample(rows(E1, E2), rows(E2, E1)).tolist() == [0.0, 0.0]


def test_diversity_is_zero_for_copies_and_one_for_orthogonal_samples():
    assert diversity([rows(E1, E1)]) == pytest.approx(0.0)
    assert diversity([rows(E1, E2), rows(E3, E3)]) == pytest.approx(0.5)
    assert diversity([rows(E1)]) is None  # one sample has no pairs


def test_prior_drift_compares_matched_seeds():
    assert prior_drift_per_sample(rows(E1, E2), rows(E1, E2)).tolist() == [0.0, 0.0]
    assert prior_drift_per_sample(rows(E1, E2), rows(E2, E1)).tolist() == [1.0, 1.0]
    assert prior_drift_per_sample(rows(E1, E2), rows(E1, E3)).tolist() == [0.0, 1.0]
    with pytest.raises(ValueError, match="matched"):
        prior_drift_per_sample(rows(E1), rows(E1, E2))


def test_memorization_finds_the_nearest_training_image():
    half = torch.nn.functional.normalize(E1 + E2, dim=0)
    nearest = nearest_cosine(rows(E1, half), rows(E1, E3))
    assert nearest.tolist() == pytest.approx([1.0, math.sqrt(0.5)])


def test_balanced_objective_is_a_geometric_mean_with_a_drift_penalty():
    assert objective({"dino": 0.64, "clip_t": 0.25}) == pytest.approx(0.4)
    assert objective({"dino": 0.64, "clip_t": 0.25, "prior_drift": 0.2}) == pytest.approx(0.3)
    assert objective({"clip_i": 0.81, "clip_t": 0.25}) == pytest.approx(0.45)  # no DINO
    assert objective({"dino": 0.5}) is None  # no prompt fidelity: no balanced objective
    assert objective({"dino": 0.5, "clip_t": 0.1}, "subject") == 0.5


def test_best_cell_ignores_the_step_zero_baseline():
    cells = [
        {"step": 0, "objective": 0.9},
        {"step": 10, "objective": 0.4},
        {"step": 20, "objective": 0.5},
        {"step": 30, "objective": None},
    ]
    assert best_cell(cells)["step"] == 20


def test_a_tie_goes_to_the_earlier_step_then_the_cell_name():
    """One rule everywhere (the run's best/, the report, export): the toy world's discrete
    rates make ties common."""
    cells = [
        {"step": 200, "cell": "ddim-n20-g3-raw", "objective": 0.75},
        {"step": 200, "cell": "ddim-n20-g3-ema", "objective": 0.75},
        {"step": 100, "cell": "ddim-n20-g3-raw", "objective": 0.75},
        {"step": 100, "cell": "ddim-n20-g3-ema", "objective": 0.5},
    ]
    assert best_cell(cells) == cells[2]
    assert best_cell(cells[:2]) == cells[1]


def test_feature_models_embed_in_batches_and_encode_each_prompt_once():
    """A cell of 40 samples is embedded 32 at a time, as if one by one; the prompts' CLIP
    features are computed on the first cell and reused by the next."""
    from PIL import Image

    from dreamsweep.metrics.features import IMAGE_BATCH, load_clip, load_dino

    images = [Image.new("RGB", (40, 40), (6 * i, 255 - 6 * i, 3 * i)) for i in range(40)]
    assert len(images) > IMAGE_BATCH
    clip, dino = load_clip("tiny"), load_dino("tiny")
    for features in (clip, dino):
        together = features.images(images)
        alone = torch.cat([features.images([im]) for im in images])
        assert together.shape == (40, alone.shape[1])
        torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)

    prompts = ["a sks toy on the beach", "a sks toy in the snow", "a sks toy on the beach"]
    first = clip.texts(prompts)
    assert torch.equal(first[0], first[2]) and not torch.equal(first[0], first[1])
    assert set(clip._text_features) == set(prompts)  # noqa: SLF001 -- the memo itself
    torch.testing.assert_close(clip.texts(["a sks toy in the snow"])[0], first[1])
