"""Face identity: hand-made embeddings, then real faces in public-domain photos (scikit-image)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image, ImageOps

pytest.importorskip("dlib")
data = pytest.importorskip("skimage.data")

from dreamsweep.metrics.identity import (  # noqa: E402
    DlibFaceEmbedder,
    FacesExtraMissing,
    identity_scores,
    reference_faces,
)


def test_identical_faces_score_one_orthogonal_zero_and_faceless_samples_only_lower_the_rate():
    a, b = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    assert identity_scores([[a]], [a]) == {
        "face_detection_rate": 1.0,
        "identity": pytest.approx(1.0),
        "identity_same_person_rate": 1.0,
    }
    orthogonal = identity_scores([[b]], [a])
    assert orthogonal["identity"] == pytest.approx(0.0)
    assert orthogonal["identity_same_person_rate"] == 0.0  # L2 distance sqrt(2) > 0.6

    # Half the samples have no face: the rate halves, the identity of the other half stands.
    scores = identity_scores([[a], []], [a])
    assert scores["face_detection_rate"] == 0.5
    assert scores["identity"] == pytest.approx(1.0)

    # Only the first (largest) face of a sample counts: a bystander does not lower identity.
    assert identity_scores([[a, b]], [a])["identity"] == pytest.approx(1.0)
    # Each sample face is compared with every reference face, and the cosines averaged.
    assert identity_scores([[a]], [a, b])["identity"] == pytest.approx(0.5)


def test_nothing_to_compare_gives_none_not_zero():
    a = np.array([1.0, 0.0])
    nothing = {"identity": None, "identity_same_person_rate": None}
    assert identity_scores([[]], [a]) == {"face_detection_rate": 0.0, **nothing}
    assert identity_scores([[a]], []) == {"face_detection_rate": 1.0, **nothing}
    assert identity_scores([], [a]) == {"face_detection_rate": None, **nothing}
    with pytest.raises(ValueError, match="same FaceEmbedder"):
        identity_scores([[np.ones(128)]], [np.ones(512)])


def test_a_missing_faces_extra_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "dlib", None)  # makes `import dlib` fail
    with pytest.raises(FacesExtraMissing, match=r"pip install 'dreamsweep\[faces\]'"):
        DlibFaceEmbedder()


@pytest.fixture(scope="module")
def embedder() -> DlibFaceEmbedder:
    return DlibFaceEmbedder()


def test_the_astronaut_and_her_mirror_image_are_the_same_person(embedder):
    photo = Image.fromarray(data.astronaut())
    references = reference_faces(embedder, [photo])
    mirrored = embedder.embed_faces(ImageOps.mirror(photo))

    scores = identity_scores([mirrored], references)

    assert scores["face_detection_rate"] == 1.0
    assert scores["identity"] > 0.9  # measured 0.99
    assert scores["identity_same_person_rate"] == 1.0  # L2 distance measured 0.19
    assert embedder.description()["embedder"] == "dlib_face_recognition_resnet_model_v1.dat"


def test_a_cat_has_no_face_to_compare(embedder):
    astronaut = reference_faces(embedder, [Image.fromarray(data.astronaut())])
    cat = embedder.embed_faces(Image.fromarray(data.chelsea()))

    scores = identity_scores([cat], astronaut)

    assert scores == {
        "face_detection_rate": 0.0,
        "identity": None,
        "identity_same_person_rate": None,
    }
