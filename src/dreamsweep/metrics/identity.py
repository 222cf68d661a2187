"""Face identity for people as subjects: face detection rate and face-embedding similarity.

Papers measure identity as the cosine of face embeddings between faces detected in samples and
in the reference photos, and report the detection rate separately: a sample without a face is
not a similarity of 0. The default embedder is dlib's ResNet (128-d, from the CC0
`face-recognition-models` package), fully offline; `FaceEmbedder` is the interface another
embedder (e.g. ArcFace) implements.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

SAME_PERSON_DISTANCE = 0.6  # dlib's rule for its 128-d descriptors (L2 distance)
FACES_EXTRA = "face identity needs the faces extra: pip install 'dreamsweep[faces]'"


class FaceEmbedder(Protocol):
    def embed_faces(self, image: Image.Image) -> list[np.ndarray]: ...

    def description(self) -> dict: ...


def _models_dir() -> Path:
    # Located by path: the package's __init__ imports pkg_resources, gone from new setuptools.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(FACES_EXTRA)
    return Path(list(spec.submodule_search_locations)[0]) / "models"


class DlibFaceEmbedder:
    """HOG face detector, 5-point landmarks, dlib ResNet descriptors (raw 128-d vectors)."""

    LANDMARKS = "shape_predictor_5_face_landmarks.dat"
    EMBEDDER = "dlib_face_recognition_resnet_model_v1.dat"

    def __init__(self, upsample: int = 1) -> None:
        try:
            import dlib
        except ImportError as err:
            raise ImportError(FACES_EXTRA) from err
        models = _models_dir()
        self.upsample = upsample
        self.detector = dlib.get_frontal_face_detector()
        self.landmarks = dlib.shape_predictor(str(models / self.LANDMARKS))
        self.embedder = dlib.face_recognition_model_v1(str(models / self.EMBEDDER))

    def description(self) -> dict:
        return {
            "detector": "dlib HOG frontal face detector",
            "upsample": self.upsample,
            "landmarks": self.LANDMARKS,
            "embedder": self.EMBEDDER,
        }

    def embed_faces(self, image: Image.Image) -> list[np.ndarray]:
        """One descriptor per detected face, largest face first."""
        pixels = np.asarray(image.convert("RGB"))
        boxes = sorted(self.detector(pixels, self.upsample), key=lambda b: -b.area())
        return [
            np.asarray(self.embedder.compute_face_descriptor(pixels, self.landmarks(pixels, box)))
            for box in boxes
        ]


def reference_faces(embedder: FaceEmbedder, images: list[Image.Image]) -> list[np.ndarray]:
    """The largest face of each reference photo (photos without a face are skipped)."""
    return [faces[0] for faces in map(embedder.embed_faces, images) if faces]


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def identity_scores(
    sample_faces: list[list[np.ndarray]], references: list[np.ndarray]
) -> dict[str, float | None]:
    """Detection rate over samples; identity over samples with a face (largest face each):
    mean cosine to every reference face, and the share within dlib's same-person distance."""
    detected = [faces[0] for faces in sample_faces if faces]
    rate = len(detected) / len(sample_faces) if sample_faces else None
    if not detected or not references:
        return {"face_detection_rate": rate, "identity": None, "identity_same_person": None}
    cosines = [_cosine(s, r) for s in detected for r in references]
    same = [min(np.linalg.norm(s - r) for r in references) < SAME_PERSON_DISTANCE for s in detected]
    return {
        "face_detection_rate": rate,
        "identity": float(np.mean(cosines)),
        "identity_same_person": float(np.mean(same)),
    }
