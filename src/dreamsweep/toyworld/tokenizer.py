"""A word-level CLIP tokenizer for the toy world, in the exact file layout of OpenAI's CLIP.

``StableDiffusionPipeline`` needs a real ``CLIPTokenizer``. A BPE whose merges spell out each
world word gives one token per word (so a 64-wide text encoder learns words, not letter
pieces), while the 256 byte symbols keep any other prompt tokenizable.
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import CLIPTokenizer

from dreamsweep.toyworld.world import BACKGROUNDS, COLOURS, SHAPES

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
END_OF_WORD = "</w>"
MAX_TOKENS = 16  # the longest world prompt is 10 tokens with BOS/EOS

EXTRA_WORDS = ("a", "an", "the", "toy", "sks", "on", "background", "photo", "of", "with", "in")


def world_words() -> list[str]:
    """Every word the world's captions use, plus the DreamBooth identifier "sks"."""
    words = set(EXTRA_WORDS) | set(SHAPES) | set(COLOURS)
    for name in BACKGROUNDS:
        words.update(name.split())
    return sorted(words)


def _byte_symbols() -> list[str]:
    """GPT-2/CLIP's printable stand-ins for the 256 byte values, in CLIP's order."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    extra = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(extra))]


def _bpe(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """CLIP's BPE on one word: repeatedly apply the best-ranked merge present."""
    pieces = list(word[:-1]) + [word[-1] + END_OF_WORD]
    while len(pieces) > 1:
        pairs = [
            (ranks.get((a, b), len(ranks)), i)
            for i, (a, b) in enumerate(zip(pieces[:-1], pieces[1:], strict=True))
        ]
        rank, i = min(pairs)
        if rank == len(ranks):
            break
        pieces = pieces[:i] + [pieces[i] + pieces[i + 1]] + pieces[i + 2 :]
    return pieces


def _word_merges(words: list[str]) -> list[tuple[str, str]]:
    """Merges that turn every word into the single token word</w>.

    Each word first goes through the merges learned so far and only then gets its own
    (lower-ranked) ones, so a later word never splits an earlier one."""
    merges: dict[tuple[str, str], int] = {}
    for word in words:
        pieces = _bpe(word, merges)
        while len(pieces) > 1:
            merges.setdefault((pieces[0], pieces[1]), len(merges))
            pieces = [pieces[0] + pieces[1]] + pieces[2:]
    return list(merges)


def write_tokenizer(folder: Path) -> CLIPTokenizer:
    """Write vocab.json + merges.txt for the world's words and load them as a CLIPTokenizer."""
    symbols = _byte_symbols()
    vocab_list = symbols + [s + END_OF_WORD for s in symbols]
    merges = _word_merges(world_words())
    for left, right in merges:
        if left + right not in vocab_list:
            vocab_list.append(left + right)
    vocab_list += [BOS, EOS]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tokenizer.json").unlink(missing_ok=True)  # a stale one would win over the files
    vocab = {token: i for i, token in enumerate(vocab_list)}
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    # Loaded via from_pretrained: in transformers 5 CLIPTokenizer(vocab_file=...) ignores the
    # files. Saving again writes tokenizer_config.json with the short model_max_length.
    tokenizer = CLIPTokenizer.from_pretrained(folder, model_max_length=MAX_TOKENS)
    tokenizer.save_pretrained(folder)
    return tokenizer
