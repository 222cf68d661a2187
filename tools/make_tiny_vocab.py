"""Learn the tiny CLIP BPE vocabulary shipped with DreamSweep's embedded test model.

The tiny Stable Diffusion used by tests and the CPU demo needs a real ``CLIPTokenizer``
but must never download one, so we learn a small byte-level BPE (same layout as
OpenAI's CLIP vocabulary) from a built-in corpus of DreamBooth-style prompts.

Usage (offline, deterministic)::

    python tools/make_tiny_vocab.py [--out-dir DIR] [--merges N]
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path

DEFAULT_OUT_DIR = Path(__file__).resolve().parents[1] / "src/dreamsweep/assets/tiny_tokenizer"
DEFAULT_NUM_MERGES = 500
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
END_OF_WORD = "</w>"

# CLIP's pre-tokenizer, restricted to ASCII since the corpus is ASCII English.
WORD_PATTERN = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d|[a-z]+|[0-9]|[^\sa-z0-9]+")

IDENTIFIERS = ["sks", "zwx", "ohwx"]

# fmt: off
CLASS_NOUNS = [
    "dog", "cat", "toy", "person", "man", "woman", "backpack", "robot", "car", "bowl",
    "can", "candle", "clock", "sneaker", "teapot", "glasses", "boot", "vase", "cartoon",
    "stuffed animal", "plushie", "puppy", "kitten", "teddy bear", "mug", "bag", "shoe",
    "sunglasses", "monster toy", "face", "girl", "boy", "bird", "horse", "house", "chair",
]

COLOURS = [
    "red", "blue", "green", "yellow", "purple", "pink", "orange", "black", "white",
    "brown", "gray", "grey", "golden", "silver",
]
# fmt: on

# DreamBench prompt templates (object and live-subject lists) plus common variants.
TEMPLATES = [
    "a photo of {}",
    "a photo of a {}",
    "a close up photo of a {}",
    "a good photo of the {}",
    "a high quality photo of a {}",
    "a {} in the jungle",
    "a {} in the snow",
    "a {} on the beach",
    "a {} on a cobblestone street",
    "a {} on top of pink fabric",
    "a {} on top of a wooden floor",
    "a {} with a city in the background",
    "a {} with a mountain in the background",
    "a {} with a blue house in the background",
    "a {} on top of a purple rug in a forest",
    "a {} with a wheat field in the background",
    "a {} with a tree and autumn leaves in the background",
    "a {} with the eiffel tower in the background",
    "a {} floating on top of water",
    "a {} floating in an ocean of milk",
    "a {} on top of green grass with sunflowers around it",
    "a {} on top of a mirror",
    "a {} on top of the sidewalk in a crowded street",
    "a {} on top of a dirt road",
    "a {} on top of a white rug",
    "a red {}",
    "a purple {}",
    "a shiny {}",
    "a wet {}",
    "a cube shaped {}",
    "a {} wearing a red hat",
    "a {} wearing a santa hat",
    "a {} wearing a rainbow scarf",
    "a {} wearing a black top hat and a monocle",
    "a {} in a chef outfit",
    "a {} in a firefighter outfit",
    "a {} in a police outfit",
    "a {} wearing pink glasses",
    "a {} wearing a yellow shirt",
    "a {} in a purple wizard outfit",
    "a painting of a {} in the style of van gogh",
    "a watercolor painting of a {}",
    "a pencil sketch of a {}",
    "a {} sleeping on a sofa",
    "a {} sitting in a bucket",
    "a {} swimming in a pool",
    "a {} at night under the stars",
    "a {} in the desert at sunset",
    "a {} next to a {} colored wall",
]

# Style, quality and scene phrases common in fine-tuning prompts and negative prompts.
EXTRA_PROMPTS = [
    "high quality, highly detailed, photorealistic, sharp focus, studio lighting, 4k, 8k",
    "low quality, blurry, deformed, ugly, bad anatomy, disfigured, watermark, text, cropped",
    "cinematic portrait, soft light, bokeh, depth of field, dslr, professional photograph",
    "oil painting, digital art, illustration, anime style, pixel art, concept art, sketch",
    "in a kitchen, in a garden, in a library, in a park, in a museum, in space, on the moon",
    "on a wooden table, on a bed, on the grass, on a rock by the river, near a lake",
    "sunny morning, cloudy evening, foggy autumn day, rainy city street, winter landscape",
    "a small fluffy corgi puppy and a big friendly golden retriever playing together",
    "a vintage leather suitcase, a ceramic cup, a plastic figure, a metal sculpture",
    "smiling, happy, running, jumping, looking at the camera, from above, from the side",
]


def bytes_to_unicode() -> dict[int, str]:
    """Map every byte to a printable unicode char, exactly as GPT-2/CLIP do."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars), strict=True))


def build_corpus() -> list[str]:
    """Prompts as DreamBooth uses them: instance (with identifier) and class prompts."""
    prompts = []
    for template in TEMPLATES:
        for noun in CLASS_NOUNS:
            subjects = [noun] + [f"{ident} {noun}" for ident in IDENTIFIERS]
            for subject in subjects:
                if template.count("{}") == 2:
                    prompts += [template.format(subject, colour) for colour in COLOURS[:3]]
                else:
                    prompts.append(template.format(subject))
    prompts += [f"a {colour} {noun}" for colour in COLOURS for noun in CLASS_NOUNS]
    prompts += EXTRA_PROMPTS
    return prompts


def word_counts(corpus: list[str]) -> Counter[tuple[str, ...]]:
    """Split prompts into words and words into byte-level symbols, last one marked '</w>'."""
    byte_encoder = bytes_to_unicode()
    counts: Counter[tuple[str, ...]] = Counter()
    for text in corpus:
        for word in WORD_PATTERN.findall(text.lower()):
            symbols = [byte_encoder[b] for b in word.encode("utf-8")]
            symbols[-1] += END_OF_WORD
            counts[tuple(symbols)] += 1
    return counts


def pair_counts(words: Counter[tuple[str, ...]]) -> Counter[tuple[str, str]]:
    counts: Counter[tuple[str, str]] = Counter()
    for word, freq in words.items():
        for pair in zip(word, word[1:], strict=False):
            counts[pair] += freq
    return counts


def merge_word(word: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    out: list[str] = []
    i = 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(word[i] + word[i + 1])
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def learn_merges(words: Counter[tuple[str, ...]], num_merges: int, known: set[str]) -> list:
    """Greedy BPE; ties broken by pair text so the output never depends on dict order.

    Pairs whose merged string is already a token are skipped so every vocab entry is unique
    and ids stay contiguous, as CLIPTokenizer's vocab dict requires.
    """
    merges: list[tuple[str, str]] = []
    known = set(known)
    while len(merges) < num_merges:
        candidates = [(n, p) for p, n in pair_counts(words).items() if p[0] + p[1] not in known]
        if not candidates:
            break
        _, best = min(candidates, key=lambda item: (-item[0], item[1]))
        merges.append(best)
        known.add(best[0] + best[1])
        words = Counter({merge_word(w, best): n for w, n in words.items()})
    return merges


def build_vocab(merges: list[tuple[str, str]]) -> dict[str, int]:
    """CLIP's layout: bytes, bytes + '</w>', one token per merge, then the two specials."""
    base = list(bytes_to_unicode().values())
    tokens = base + [b + END_OF_WORD for b in base] + [a + b for a, b in merges] + [BOS, EOS]
    return {token: i for i, token in enumerate(tokens)}


def write_files(out_dir: Path, vocab: dict[str, int], merges: list[tuple[str, str]]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False) + "\n", "utf-8")
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
    (out_dir / "merges.txt").write_text("\n".join(lines) + "\n", "utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR)
    parser.add_argument("--merges", type=int, default=DEFAULT_NUM_MERGES)
    args = parser.parse_args()

    base = set(build_vocab([]))
    merges = learn_merges(word_counts(build_corpus()), args.merges, base)
    vocab = build_vocab(merges)
    write_files(args.out_dir, vocab, merges)
    print(f"wrote {len(merges)} merges, {len(vocab)} vocab entries to {args.out_dir}")


if __name__ == "__main__":
    main()
