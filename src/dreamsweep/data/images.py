"""Loading and checking the user's instance and class image folders.

Bad files are found up front, all at once, so a sweep does not die on trial 7 because of one
truncated JPEG, and the user gets one message listing everything that needs fixing.
"""

from __future__ import annotations

import logging
import random
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

if TYPE_CHECKING:  # numpy and torch are imported where arrays are made: train.py checks
    import torch  # folders before anything is loaded, and needs neither

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
# Images in a format we do not read: an error (the user meant them as photos). Any other file
# (notes.md, .DS_Store, Thumbs.db) is ignored and listed in one line.
OTHER_IMAGE_EXTENSIONS = (".gif", ".tif", ".tiff", ".heic", ".heif", ".avif", ".jxl", ".raw")
TYPICAL_MAX_IMAGES = 50  # DreamBooth is meant for 3-30 photos of one subject
log = logging.getLogger("dreamsweep")
CAPTION_EXTENSION = ".txt"
SKIP_BAD_HINT = "fix or remove them, or set data.skip_bad=true to skip them"
WHITE = (255, 255, 255)


@dataclass(frozen=True)
class ImageProblem:
    """One unusable file and why, worded for the user."""

    path: Path
    reason: str

    def __iter__(self) -> Iterator[Path | str]:
        """Unpack like a (path, reason) tuple."""
        return iter((self.path, self.reason))


class ImageFolderError(ValueError):
    """One error listing every bad file in a folder and why."""

    def __init__(self, message: str, problems: list[ImageProblem] | None = None) -> None:
        super().__init__(message)
        self.problems: list[ImageProblem] = list(problems or [])


def _is_hidden(path: Path) -> bool:
    return path.name.startswith(".")


@contextmanager
def _strict_decoding() -> Iterator[None]:
    """Make PIL fail on truncated files for the duration, then restore the global setting."""
    saved = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = saved


def _unsupported_reason(suffix: str) -> str:
    shown = suffix or "(no extension)"
    return f"unsupported format {shown}; use jpg, jpeg, png, webp or bmp"


def _decode_problem(path: Path, min_size: int) -> str | None:
    """Why this image file cannot be used, or None if it decodes fully and is big enough."""
    if path.stat().st_size == 0:
        return "empty file (0 bytes)"
    try:
        with _strict_decoding(), Image.open(path) as image:
            image.load()
            width, height = image.size
    except UnidentifiedImageError:
        return "corrupt: not an image PIL can read"
    except Image.DecompressionBombError as exc:
        return f"too large to decode safely ({exc})"
    except (OSError, ValueError, SyntaxError) as exc:
        if "truncated" in str(exc).lower():
            return f"truncated, cannot fully decode ({exc})"
        return f"corrupt or truncated, cannot decode ({exc})"
    if min(width, height) < min_size:
        return f"{width}x{height} px, shorter side below {min_size} px"
    return None


def ignored_files(folder: Path) -> list[Path]:
    """Files of the folder that are neither images nor captions: skipped, never an error."""
    known = (*IMAGE_EXTENSIONS, *OTHER_IMAGE_EXTENSIONS, CAPTION_EXTENSION)
    return sorted(
        p
        for p in Path(folder).iterdir()
        if p.is_file() and (_is_hidden(p) or p.suffix.lower() not in known)
    )


def check_folder(folder: Path, min_size: int) -> tuple[list[Path], list[ImageProblem]]:
    """Fully decode every image file in folder; return (good images, problems). Files that
    are not images at all (ignored_files) are neither."""
    good: list[Path] = []
    problems: list[ImageProblem] = []
    skipped = set(ignored_files(folder))
    for path in sorted(Path(folder).iterdir()):
        if not path.is_file() or path in skipped:
            continue
        suffix = path.suffix.lower()
        if suffix == CAPTION_EXTENSION:
            continue
        if suffix not in IMAGE_EXTENSIONS:
            reason: str | None = _unsupported_reason(suffix)
        else:
            reason = _decode_problem(path, min_size)
        if reason is None:
            good.append(path)
        else:
            problems.append(ImageProblem(path, reason))
    return good, problems


def _describe(folder: Path, problems: list[ImageProblem]) -> str:
    """Multi-line listing: a header, one line per bad file, and what to do about it."""
    lines = [f"{len(problems)} unusable file(s) in {folder}:"]
    lines += [f"  {p.path.name}: {p.reason}" for p in problems]
    return "\n".join(lines)


def load_folder(folder: Path | str, *, min_size: int, skip_bad: bool = False) -> list[Path]:
    """Validated, sorted list of usable images in folder; raises naming every bad file."""
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"image folder not found: {folder}")
    if not folder.is_dir():
        raise ImageFolderError(f"image folder is not a directory: {folder}")
    good, problems = check_folder(folder, min_size)
    if ignored := ignored_files(folder):
        names = ", ".join(p.name for p in ignored[:10]) + (", ..." if len(ignored) > 10 else "")
        log.info("ignoring %d file(s) that are not images in %s: %s", len(ignored), folder, names)
    if not good and not problems:
        raise ImageFolderError(f"no images in {folder}: put jpg/png/webp/bmp files there")
    if not problems:
        return good
    if not good:
        message = f"{_describe(folder, problems)}\nno usable images left; fix or replace them"
        raise ImageFolderError(message, problems)
    if not skip_bad:
        raise ImageFolderError(f"{_describe(folder, problems)}\n{SKIP_BAD_HINT}", problems)
    warnings.warn(
        f"{_describe(folder, problems)}\nskipping them, using {len(good)} good image(s)",
        UserWarning,
        stacklevel=2,
    )
    return good


def _on_white(image: Image.Image) -> Image.Image:
    """Composite a transparent image on white so see-through areas do not turn black."""
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, WHITE + (255,))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _high_bit_depth_to_rgb(image: Image.Image) -> Image.Image:
    """Scale 16/32-bit grayscale to 8 bits instead of letting PIL clip it to white."""
    import numpy as np

    values = np.asarray(image, dtype=np.float64)
    if values.size and values.max() > 255:
        values = values / 257.0  # 16-bit range down to 8-bit
    gray = Image.fromarray(values.clip(0, 255).round().astype(np.uint8), "L")
    return gray.convert("RGB")


def open_rgb(path: Path) -> Image.Image:
    """Open an image upright (EXIF orientation applied) as 8-bit RGB."""
    with Image.open(path) as opened:
        image = ImageOps.exif_transpose(opened)
        has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
            image.mode == "P" and "transparency" in image.info
        )
        if has_alpha:
            return _on_white(image)
        if image.mode.startswith("I") or image.mode == "F":
            return _high_bit_depth_to_rgb(image)
        return image.convert("RGB")


def resize_and_crop(
    image: Image.Image,
    resolution: int,
    center_crop: bool,
    rng: random.Random | None = None,
) -> Image.Image:
    """Resize the shorter side to resolution, then crop a resolution-square (centre or random).

    A random crop uses rng, falling back to the global random module (seeded by the trainer).
    """
    return resized_crop(image, resolution, center_crop, rng)[0]


def resized_crop(
    image: Image.Image,
    resolution: int,
    center_crop: bool,
    rng: random.Random | None = None,
) -> tuple[Image.Image, int, int, int]:
    """:func:`resize_and_crop`, and where the crop is: (image, top, left, resized width), the
    crop's top-left in the resized picture as SDXL's micro-conditioning records it."""
    width, height = image.size
    scale = resolution / min(width, height)
    new_size = (max(resolution, round(width * scale)), max(resolution, round(height * scale)))
    resample = Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BICUBIC
    if new_size != image.size:
        image = image.resize(new_size, resample)
    spare_x, spare_y = new_size[0] - resolution, new_size[1] - resolution
    if center_crop:
        left, top = spare_x // 2, spare_y // 2
    else:
        source = rng if rng is not None else random
        left, top = source.randint(0, spare_x), source.randint(0, spare_y)
    return image.crop((left, top, left + resolution, top + resolution)), top, left, new_size[0]


@dataclass(frozen=True)
class Transform:
    """The image preprocessing a run applies: square resize-and-crop at its resolution."""

    resolution: int
    center_crop: bool = True

    def __call__(self, image: Image.Image, rng: random.Random | None = None) -> Image.Image:
        return resize_and_crop(image, self.resolution, self.center_crop, rng)


def to_tensor(image: Image.Image) -> torch.Tensor:
    """float32 CHW tensor in [-1, 1], the range the SD VAE encoder expects."""
    import numpy as np
    import torch

    pixels = np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))


def hflip(t: torch.Tensor) -> torch.Tensor:
    """Mirror a CHW (or NCHW) tensor left-right."""
    import torch

    return torch.flip(t, dims=[-1])


def read_caption(image_path: Path) -> str | None:
    """The sidecar caption '<stem>.txt' next to an image, or None if missing or blank. It must
    be a regular file inside the photo folder: a symlink out of it (`photo.txt ->
    /etc/passwd`) would make any readable file a training prompt, a FIFO would block."""
    caption_path = Path(image_path).with_name(Path(image_path).stem + CAPTION_EXTENSION)
    if not caption_path.exists() and not caption_path.is_symlink():
        return None
    folder, target = caption_path.parent.resolve(), caption_path.resolve()
    if target.parent != folder or not target.is_file():
        where = f"a link to {target}" if caption_path.is_symlink() else "not a regular file"
        raise ImageFolderError(
            f"caption {caption_path} is {where}: a caption must be a regular file in the "
            "photo folder; put the text in that file, or remove it"
        )
    try:
        text = caption_path.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError as err:
        raise ImageFolderError(
            f"caption {caption_path} is not UTF-8 text (byte {err.start}): save it as UTF-8, "
            "or set data.captions=false to use data.prompt for every photo"
        ) from None
    return text or None
