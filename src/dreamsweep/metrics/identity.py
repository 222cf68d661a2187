"""Face identity for people as subjects: face detection rate and face-embedding similarity.

Papers measure identity as the cosine of face embeddings between the face detected in each
sample and the faces of the reference photos, and report the detection rate separately: a
sample without a face is not a similarity of 0, it only lowers the detection rate. The default
embedder is dlib's ResNet (128-d, CC0 weights from `face-recognition-models`), fully offline;
`FaceEmbedder` is the interface another embedder (e.g. ArcFace) implements.

Embeddings are kept raw (dlib's descriptors have norm ~1.45, not 1) because dlib's same-person
rule is an L2 distance < 0.6 on those raw vectors; the cosine is computed here, where it is used.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from dreamsweep.metrics.registry import CellImages, Scored

SAME_PERSON_DISTANCE = 0.6  # dlib's rule for its raw 128-d descriptors (L2 distance)
FACES_EXTRA = "face identity needs the faces extra: pip install 'dreamsweep[faces]'"


class FacesExtraMissing(ImportError):
    """dlib or the face-recognition-models weights are missing; raised when the scorer is built."""


class FaceEmbedder(Protocol):
    """What the identity scorer needs from a face model."""

    name: str

    def embed_faces(self, image: Image.Image) -> list[np.ndarray]:
        """One embedding per detected face, the largest (the subject) first; [] when none."""
        ...

    def description(self) -> dict[str, object]:
        """Everything that changes the numbers, recorded with every score."""
        ...


def _models_dir(*files: str) -> Path:
    # Found by path, not imported: the package's __init__ imports pkg_resources, which new
    # setuptools no longer ships.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FacesExtraMissing(FACES_EXTRA)
    models = Path(list(spec.submodule_search_locations)[0]) / "models"
    missing = [f for f in files if not (models / f).is_file()]
    if missing:
        raise FacesExtraMissing(f"{FACES_EXTRA} (missing {', '.join(missing)} in {models})")
    return models


class DlibFaceEmbedder:
    """HOG face detector, 5-point landmarks (face alignment), dlib ResNet descriptors."""

    name = "dlib_resnet_v1"
    DETECTOR = "dlib.get_frontal_face_detector (HOG + linear SVM, frontal faces)"
    LANDMARKS = "shape_predictor_5_face_landmarks.dat"
    EMBEDDER = "dlib_face_recognition_resnet_model_v1.dat"

    def __init__(self, upsample: int = 1, min_score: float = 0.0) -> None:
        """upsample: times the image is doubled before detection (1 finds faces down to ~40 px);
        min_score: HOG detection threshold (dlib's default 0; higher drops false positives)."""
        try:
            import dlib
        except ImportError as err:
            raise FacesExtraMissing(FACES_EXTRA) from err
        models = _models_dir(self.LANDMARKS, self.EMBEDDER)
        self.upsample = upsample
        self.min_score = min_score
        self._dlib_version = dlib.__version__
        self._detector = dlib.get_frontal_face_detector()
        self._landmarks = dlib.shape_predictor(str(models / self.LANDMARKS))
        self._embedder = dlib.face_recognition_model_v1(str(models / self.EMBEDDER))

    def description(self) -> dict[str, object]:
        return {
            "name": self.name,
            "detector": self.DETECTOR,
            "upsample": self.upsample,
            "min_score": self.min_score,
            "landmarks": self.LANDMARKS,
            "embedder": self.EMBEDDER,
            "face": "largest detected face per image",
            "similarity": "cosine of raw 128-d descriptors",
            "same_person": f"L2 distance < {SAME_PERSON_DISTANCE}",
            "versions": {
                "dlib": self._dlib_version,
                "face-recognition-models": importlib.metadata.version("face-recognition-models"),
            },
        }

    def embed_faces(self, image: Image.Image) -> list[np.ndarray]:
        """Raw 128-d descriptors, one per detected face, largest face first."""
        pixels = np.ascontiguousarray(np.asarray(image.convert("RGB")))
        boxes, _, _ = self._detector.run(pixels, self.upsample, self.min_score)
        boxes = sorted(boxes, key=lambda box: box.area(), reverse=True)
        return [
            np.asarray(self._embedder.compute_face_descriptor(pixels, self._landmarks(pixels, box)))
            for box in boxes
        ]


def reference_faces(embedder: FaceEmbedder, images: list[Image.Image]) -> list[np.ndarray]:
    """The largest face of each reference photo; photos without a face are skipped, so an empty
    list (identity None) means no reference photo had a detectable face."""
    return [faces[0] for faces in map(embedder.embed_faces, images) if faces]


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def identity_per_sample(
    sample_faces: list[list[np.ndarray]],
    reference_faces: list[np.ndarray],
    same_person_distance: float = SAME_PERSON_DISTANCE,
) -> dict[str, list[float | None]]:
    """Per sample (sample_faces[i] is `embed_faces` of sample i): `face_detection_rate` 1/0
    (a face found or not); `identity`, the mean cosine of its first (largest) face with every
    reference face; `identity_same_person_rate` 1/0, its face within `same_person_distance`
    (L2, dlib's 0.6 by default; another embedder passes its own) of the nearest reference face.
    The last two are None for a sample without a face, or for all without a reference face: a
    missing face lowers the detection rate, it is never counted as a similarity of 0."""
    n = len(sample_faces)
    out: dict[str, list[float | None]] = {
        "face_detection_rate": [float(len(faces) > 0) for faces in sample_faces],
        "identity": [None] * n,
        "identity_same_person_rate": [None] * n,
    }
    found = [i for i, faces in enumerate(sample_faces) if len(faces)]
    if not found or not reference_faces:
        return out
    samples = np.stack([sample_faces[i][0] for i in found]).astype(np.float64)
    references = np.stack(reference_faces).astype(np.float64)
    if samples.shape[1] != references.shape[1]:
        raise ValueError(
            f"sample faces are {samples.shape[1]}-d but reference faces {references.shape[1]}-d:"
            " embed both with the same FaceEmbedder"
        )
    cosines = (_unit(samples) @ _unit(references).T).mean(axis=1)
    distances = np.linalg.norm(samples[:, None] - references[None], axis=-1).min(axis=1)
    for j, i in enumerate(found):
        out["identity"][i] = float(cosines[j])
        out["identity_same_person_rate"][i] = float(distances[j] < same_person_distance)
    return out


def identity_scores(
    sample_faces: list[list[np.ndarray]],
    reference_faces: list[np.ndarray],
    same_person_distance: float = SAME_PERSON_DISTANCE,
) -> dict[str, float | None]:
    """The cell's identity scores: each per-sample score's mean over the samples it applies to
    (`identity_per_sample`); None where it applies to none."""
    from dreamsweep.metrics.aggregate import as_array, as_float, cell_value

    per_sample = identity_per_sample(sample_faces, reference_faces, same_person_distance)
    return {k: as_float(cell_value(k, as_array(v), [])) for k, v in per_sample.items()}


def score_identity(cell: CellImages) -> Scored:
    """Per sample: face detection, identity cosine and same-person rate (identity_per_sample)."""
    faces = cell.features["faces"]
    sample_faces = [faces.model.embed_faces(image) for image in cell.samples]
    return Scored(identity_per_sample(sample_faces, faces.reference))
