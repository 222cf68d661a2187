"""The toy world, its shipped base model and its oracle, as a user would meet them.

These read as examples: draw pictures, tokenize a prompt, load the base with plain diffusers,
ask the oracle what a picture shows. All fast (seconds); the base and oracle are the committed
assets in ``src/dreamsweep/assets/toyworld/``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline
from PIL import Image
from transformers import CLIPTokenizer

from dreamsweep.toyworld import BASE_DIR, ORACLE_DIR, SUBJECT_DIR
from dreamsweep.toyworld.oracle import load_oracle, score_images, score_pixels, subject_similarity
from dreamsweep.toyworld.tokenizer import world_words
from dreamsweep.toyworld.world import (
    BACKGROUNDS,
    COLOURS,
    FORBIDDEN,
    INSTANCE_PROMPT,
    Scene,
    draw,
    random_scene,
    sample_world,
    shape_area,
    subject_images,
    subject_scene,
    to_tensor,
)


@pytest.fixture(scope="module")
def oracle():
    return load_oracle(ORACLE_DIR)


def test_the_world_is_a_pure_function_of_the_seed():
    scenes, images, captions = sample_world(16, seed=3)
    again = sample_world(16, seed=3)
    assert scenes == again[0] and captions == again[2]
    assert all(
        np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(images, again[1], strict=True)
    )
    assert sample_world(16, seed=4)[2] != captions
    assert images[0].size == (32, 32)


def _coverage(image: Image.Image, fill: tuple, background: tuple) -> float:
    """How many pixels' worth of the fill colour the picture holds (anti-aliased edges count
    by fraction)."""
    pixels = np.asarray(image, dtype=np.float64).reshape(-1, 3)
    direction = np.subtract(fill, background, dtype=np.float64)
    share = (pixels - background) @ direction / (direction @ direction)
    return float(np.clip(share, 0, 1).sum())


def test_captions_name_what_is_drawn():
    scenes, images, captions = sample_world(200, seed=0)
    for scene, image, text in zip(scenes, images, captions, strict=True):
        words = f" {text} "
        assert f" {scene.shape} " in words or " toy" in words or text == ""
        if scene.colour in words.split():
            assert text.startswith(f"a {scene.colour} ")
        if "background" in text:
            assert text.endswith(f"on a {scene.background} background")
        assert image.getpixel((0, 0)) == BACKGROUNDS[scene.background]  # corners stay empty
        drawn = _coverage(image, COLOURS[scene.colour], BACKGROUNDS[scene.background])
        assert drawn == pytest.approx(shape_area(scene), rel=0.12), (scene, text)
        assert (scene.colour, scene.background) not in FORBIDDEN


def test_the_subject_never_appears_in_the_world():
    rng = np.random.default_rng(0)
    scenes = [random_scene(rng) for _ in range(5000)]
    assert not any(scene.is_subject for scene in scenes)
    assert any(s.shape == "star" and s.colour == "green" for s in scenes)  # its nearest cousin
    subject = subject_scene(np.random.default_rng(1))
    centre = draw(subject).getpixel((round(subject.cx), round(subject.cy)))
    assert centre == COLOURS["yellow"]  # the dot that makes it unique


def test_the_tokenizer_gives_one_token_per_world_word():
    tokenizer = CLIPTokenizer.from_pretrained(BASE_DIR / "tokenizer")
    for word in world_words():
        ids = tokenizer(word).input_ids
        assert len(ids) == 3, word  # <start> word <end>
        assert tokenizer.decode(ids, skip_special_tokens=True) == word
    prompt = "a red star on a light blue background"
    ids = tokenizer(prompt).input_ids
    assert len(ids) <= tokenizer.model_max_length
    assert tokenizer.decode(ids, skip_special_tokens=True) == prompt


def test_the_shipped_base_is_a_plain_stable_diffusion_pipeline():
    pipe = StableDiffusionPipeline.from_pretrained(str(BASE_DIR), local_files_only=True)
    assert isinstance(pipe.scheduler, DDIMScheduler)
    pipe.set_progress_bar_config(disable=True)
    images = pipe(
        ["a red star on a white background", INSTANCE_PROMPT],
        num_inference_steps=2,
        guidance_scale=3.0,
        generator=torch.Generator().manual_seed(0),
    ).images
    assert [image.size for image in images] == [(32, 32), (32, 32)]


def test_the_oracle_knows_the_world(oracle):
    scenes, images, _ = sample_world(64, seed=2024)  # pictures it never saw in training
    scores = score_images(oracle, images)
    for head in ("shape", "colour", "background"):
        truth = [getattr(scene, head) for scene in scenes]
        accuracy = np.mean([a == b for a, b in zip(getattr(scores, head), truth, strict=True)])
        assert accuracy >= 0.95, head
    assert not scores.is_subject.any()


def test_the_oracle_recognises_the_shipped_instance_images(oracle):
    instances = [Image.open(path) for path in sorted(SUBJECT_DIR.glob("*.png"))]
    assert len(instances) == 5
    assert all(
        np.array_equal(np.asarray(a), np.asarray(b))
        for a, b in zip(instances, subject_images(5), strict=True)
    )
    scores = score_images(oracle, instances)
    assert scores.is_subject.all() and (scores.subject_prob > 0.9).all()
    # The same pictures as a tensor batch score the same; a fresh subject picture is closer to
    # the instances than a plain green star is.
    assert score_pixels(oracle, to_tensor(instances)).shape == scores.shape
    fresh = subject_images(1, seed=5)[0]
    star = draw(Scene("star", "green", "white", cx=16.0, cy=16.0, radius=10.0, rotation=0.0))
    similarity = subject_similarity(oracle, [fresh, star], instances)
    assert similarity[0] > similarity[1]


def test_the_scorer_reads_what_a_prompt_asks_for():
    from dreamsweep.metrics.toyworld import requested

    assert requested("a sks toy on a light blue background") == {"background": "light blue"}
    assert requested("a red toy on a black background") == {"colour": "red", "background": "black"}
    assert requested("a sks toy") == {}


def test_the_toyworld_scores_of_drawn_pictures_are_what_was_drawn(oracle):
    """Drawn pictures with known content: the subject on the requested backgrounds scores a
    subject rate and prompt fidelity of 1; world pictures as class samples drift 0. Every
    sample's decision is kept, and the cell's scores are made from them."""
    from dreamsweep.metrics.registry import Feature
    from dreamsweep.metrics.scoring import Scorer
    from dreamsweep.metrics.toyworld import reference_embedding

    instances = [Image.open(p).convert("RGB") for p in sorted(SUBJECT_DIR.glob("*.png"))]
    seen = Feature(oracle, reference_embedding(oracle, instances), "oracle")
    scorer = Scorer(["toyworld"], {"oracle": seen})
    asked = [
        "a toy on a white background",
        "a toy on a black background",
        "a toy on a gray background",
    ]
    samples = [*subject_images(4, seed=1), *subject_images(4, seed=2, background="black")]
    samples += subject_images(4, seed=3, background="white")  # asked gray, drawn on white
    scenes, world, _ = sample_world(16, seed=5)

    out = scorer.score(samples, [0] * 4 + [1] * 4 + [2] * 4, asked, world, None)

    scores, per_prompt, per_sample = out["scores"], out["per_prompt"], out["per_sample"]
    assert per_prompt["subject_rate"] == [1.0, 1.0, 1.0]
    assert per_prompt["prompt_fidelity"] == [1.0, 1.0, 0.0]  # gray was not drawn
    assert per_sample["prompt_fidelity"] == [1.0] * 8 + [0.0] * 4 + [None] * 16
    assert per_sample["prior_drift"] == [None] * 12 + [0.0] * 16
    assert min(per_prompt["subject_sim"]) > 0.8
    assert scores["prompt_fidelity"] == pytest.approx(2 / 3)
    assert scores["prior_drift"] == 0.0 and scores["damage"] == 0.0
    assert scores["class_diversity"] == len({(s.shape, s.colour) for s in scenes})
    partly = scorer.score(samples[:8], [0] * 4 + [1] * 4, ["a toy", asked[1]], [], None)
    assert partly["per_prompt"]["prompt_fidelity"] == [None, 1.0]  # prompt 0 asks for nothing
    assert partly["scores"]["prompt_fidelity"] == 1.0  # the mean over the prompts that ask
