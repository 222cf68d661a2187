"""Face identity on public-domain photos (scikit-image) and on hand-made embeddings."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageOps

from dreamsweep.metrics.identity import identity_scores


def test_identical_faces_score_one_orthogonal_zero_and_faceless_samples_only_lower_the_rate():
    a, b = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    assert identity_scores([[a]], [a])["identity"] == pytest.approx(1.0)
    assert identity_scores([[b]], [a])["identity"] == pytest.approx(0.0)
    scores = identity_scores([[a], []], [a])
    assert scores["face_detection_rate"] == 0.5 and scores["identity"] == pytest.approx(1.0)
    assert identity_scores([[]], [a]) == {
        "face_detection_rate": 0.0,
        "identity": None,
        "identity_same_person": None,
    }


@pytest.fixture(scope="module")
def embedder():
    pytest.importorskip("dlib")
    from dreamsweep.metrics.identity import DlibFaceEmbedder

    return DlibFaceEmbedder()


def test_the_astronaut_and_her_mirror_image_are_the_same_person(embedder):
    from skimage import data

    from dreamsweep.metrics.identity import reference_faces

    photo = Image.fromarray(data.astronaut())
    references = reference_faces(embedder, [photo])
    mirrored = embedder.embed_faces(ImageOps.mirror(photo))
    scores = identity_scores([mirrored], references)
    assert scores["face_detection_rate"] == 1.0
    assert scores["identity"] > 0.9 and scores["identity_same_person"] == 1.0


def test_a_cat_has_no_face_to_compare(embedder):
    from skimage import data

    astronaut = embedder.embed_faces(Image.fromarray(data.astronaut()))
    cat = embedder.embed_faces(Image.fromarray(data.chelsea()))
    scores = identity_scores([cat], astronaut)
    assert scores["face_detection_rate"] == 0.0 and scores["identity"] is None
