"""How DreamSweep reads instance/class image folders, written as examples of use."""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from dreamsweep.data.images import (
    ImageFolderError,
    Transform,
    check_folder,
    hflip,
    load_folder,
    open_rgb,
    read_caption,
    resize_and_crop,
    to_tensor,
)
from dreamsweep.data.toy import TOY_SUBJECT_DIR, draw_toy_subject


def save_image(path: Path, size: tuple[int, int] = (96, 80), mode: str = "RGB", **kw) -> Path:
    """A small noisy image, so JPEGs are a realistic number of bytes."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels, "RGB").convert(mode).save(path, **kw)
    return path


def jpeg_bytes(size: tuple[int, int] = (96, 80)) -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(1).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels, "RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture
def good_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "instance"
    folder.mkdir()
    save_image(folder / "b.png")
    save_image(folder / "a.JPG", format="JPEG")
    save_image(folder / "c.webp")
    (folder / "a.txt").write_text("a photo of sks robot\n")
    (folder / ".DS_Store").write_bytes(b"\x00junk")
    return folder


@pytest.fixture
def bad_folder(tmp_path: Path) -> Path:
    """Two good images plus one of each kind of bad file."""
    folder = tmp_path / "bad"
    folder.mkdir()
    save_image(folder / "good_1.png")
    save_image(folder / "good_2.jpg")
    (folder / "blank.png").write_bytes(b"")
    (folder / "noise.png").write_bytes(np.random.default_rng(2).bytes(500))
    data = jpeg_bytes()
    (folder / "half.jpg").write_bytes(data[: len(data) // 2])
    save_image(folder / "anim.gif")
    save_image(folder / "tiny.png", size=(40, 30))
    return folder


# --- listing and loading -------------------------------------------------------------------


def test_good_folder_loads_sorted_images_only(good_folder: Path) -> None:
    expected = ["a.JPG", "b.png", "c.webp"]
    assert [p.name for p in load_folder(good_folder, min_size=64)] == expected
    assert [p.name for p in load_folder(str(good_folder), min_size=64)] == expected


def test_every_bad_file_is_named_in_one_error(bad_folder: Path) -> None:
    with pytest.raises(ImageFolderError) as caught:
        load_folder(bad_folder, min_size=64)
    message = str(caught.value)
    print(message)
    expected_reasons = {
        "blank.png": "empty file",
        "noise.png": "corrupt",
        "half.jpg": "truncated",
        "anim.gif": "unsupported format .gif",
        "tiny.png": "40x30 px, shorter side below 64 px",
    }
    lines = message.splitlines()
    for name, reason in expected_reasons.items():
        assert any(name in line and reason in line for line in lines), (name, message)
    assert "good_1.png" not in message and "good_2.jpg" not in message
    assert "data.skip_bad=true" in message
    assert sorted(p.path.name for p in caught.value.problems) == sorted(expected_reasons)


def test_files_that_are_not_images_are_ignored_and_listed(tmp_path: Path, caplog) -> None:
    Image.new("RGB", (96, 96), "red").save(tmp_path / "dog.png")
    (tmp_path / "notes.md").write_text("shot in May")
    (tmp_path / "Thumbs.db").write_bytes(b"\x00" * 64)
    (tmp_path / ".DS_Store").write_bytes(b"\x00Bud1")
    with caplog.at_level("INFO", logger="dreamsweep"):
        assert [p.name for p in load_folder(tmp_path, min_size=64)] == ["dog.png"]
    assert "ignoring 3 file(s)" in caplog.text and "notes.md" in caplog.text


def test_a_caption_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    Image.new("RGB", (96, 96), "red").save(tmp_path / "dog.png")
    (tmp_path / "dog.txt").write_bytes("un chien \xe0 la plage".encode("latin-1"))
    with pytest.raises(ImageFolderError, match="dog.txt is not UTF-8"):
        read_caption(tmp_path / "dog.png")


def test_check_folder_splits_good_from_bad(bad_folder: Path) -> None:
    good, problems = check_folder(bad_folder, min_size=64)
    assert [p.name for p in good] == ["good_1.png", "good_2.jpg"]
    assert len(problems) == 5
    path, reason = problems[0]  # problems unpack like (path, reason)
    assert path.parent == bad_folder and reason


def test_truncated_check_does_not_change_pil_global_setting(bad_folder: Path) -> None:
    saved = ImageFile.LOAD_TRUNCATED_IMAGES
    try:
        ImageFile.LOAD_TRUNCATED_IMAGES = True
        _, problems = check_folder(bad_folder, min_size=64)
        assert "half.jpg" in [p.path.name for p in problems]
        assert ImageFile.LOAD_TRUNCATED_IMAGES is True
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = saved


def test_skip_bad_warns_and_keeps_the_good_ones(bad_folder: Path) -> None:
    with pytest.warns(UserWarning, match="half.jpg"):
        images = load_folder(bad_folder, min_size=64, skip_bad=True)
    assert [p.name for p in images] == ["good_1.png", "good_2.jpg"]


def test_skip_bad_still_fails_when_nothing_good_is_left(tmp_path: Path) -> None:
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageFolderError, match="empty.jpg"):
        load_folder(tmp_path, min_size=64, skip_bad=True)


def test_empty_folder_says_what_to_put_there(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("captions only")
    with pytest.raises(ImageFolderError, match=r"no images in .*: put jpg/png/webp/bmp"):
        load_folder(tmp_path, min_size=64)


def test_missing_folder_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "does_not_exist"
    with pytest.raises(FileNotFoundError, match="does_not_exist"):
        load_folder(missing, min_size=64)


def test_a_file_is_not_a_folder(tmp_path: Path) -> None:
    not_a_dir = save_image(tmp_path / "photo.png")
    with pytest.raises(ImageFolderError, match="not a directory"):
        load_folder(not_a_dir, min_size=64)


# --- opening as RGB ------------------------------------------------------------------------


def test_exif_rotated_jpeg_comes_out_upright(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    path = save_image(tmp_path / "phone.jpg", size=(120, 80), format="JPEG", exif=exif)
    assert Image.open(path).size == (120, 80)
    image = open_rgb(path)
    assert image.size == (80, 120)
    assert image.mode == "RGB"


def test_transparent_pixels_become_white(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 255))
    rgba.putpixel((0, 0), (0, 0, 0, 0))
    rgba.save(tmp_path / "sticker.png")
    image = open_rgb(tmp_path / "sticker.png")
    assert image.mode == "RGB"
    assert image.getpixel((0, 0)) == (255, 255, 255)
    assert image.getpixel((1, 1)) == (255, 0, 0)


@pytest.mark.parametrize("mode", ["L", "P", "1", "CMYK", "LA"])
def test_other_modes_become_rgb(tmp_path: Path, mode: str) -> None:
    path = tmp_path / ("image.jpg" if mode == "CMYK" else "image.png")
    save_image(path, mode=mode)
    image = open_rgb(path)
    assert image.mode == "RGB" and image.size == (96, 80)


def test_palette_with_transparency_is_composited_on_white(tmp_path: Path) -> None:
    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0] + [0, 0, 255] + [0, 0, 0] * 254)
    palette.putpixel((0, 0), 0)
    palette.save(tmp_path / "logo.png", transparency=0)
    image = open_rgb(tmp_path / "logo.png")
    assert image.getpixel((0, 0)) == (255, 255, 255)
    assert image.getpixel((2, 2)) == (0, 0, 255)


def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.full((8, 8), 32896, dtype=np.uint16)  # mid grey in 16 bits
    Image.fromarray(values).save(tmp_path / "scan.png")
    image = open_rgb(tmp_path / "scan.png")
    assert image.getpixel((0, 0)) == (128, 128, 128)


# --- resize, crop, tensors -----------------------------------------------------------------


@pytest.mark.parametrize("size", [(300, 200), (200, 300), (64, 64), (50, 90)])
def test_resize_and_crop_gives_a_square(size: tuple[int, int]) -> None:
    image = Image.new("RGB", size)
    assert resize_and_crop(image, 128, center_crop=True).size == (128, 128)
    assert resize_and_crop(image, 128, center_crop=False, rng=random.Random(0)).size == (128, 128)


def test_centre_crop_keeps_the_centre() -> None:
    # 300x100 landscape: red left third, green middle, blue right third.
    image = Image.new("RGB", (300, 100), (255, 0, 0))
    image.paste((0, 255, 0), (100, 0, 200, 100))
    image.paste((0, 0, 255), (200, 0, 300, 100))
    cropped = resize_and_crop(image, 100, center_crop=True)
    assert np.all(np.asarray(cropped) == (0, 255, 0))


def test_random_crop_is_reproducible_with_a_seeded_rng() -> None:
    pixels = np.random.default_rng(3).integers(0, 256, (200, 400, 3), dtype=np.uint8)
    image = Image.fromarray(pixels, "RGB")
    first = [np.asarray(resize_and_crop(image, 100, False, random.Random(7))) for _ in range(2)]
    assert np.array_equal(first[0], first[1])
    crops = {resize_and_crop(image, 100, False, random.Random(s)).tobytes() for s in range(5)}
    assert len(crops) > 1


def test_transform_applies_the_run_resolution() -> None:
    transform = Transform(resolution=64)
    assert transform(Image.new("RGB", (200, 120))).size == (64, 64)


def test_to_tensor_is_chw_in_minus_one_to_one() -> None:
    image = Image.new("RGB", (3, 2), (0, 0, 0))
    image.putpixel((2, 1), (255, 255, 255))
    t = to_tensor(image)
    assert t.shape == (3, 2, 3) and t.dtype == torch.float32
    assert t.min().item() == -1.0 and t.max().item() == 1.0
    assert torch.all(t[:, 1, 2] == 1.0)


def test_hflip_mirrors_left_right() -> None:
    t = torch.arange(6, dtype=torch.float32).reshape(1, 2, 3)
    assert hflip(t).tolist() == [[[2, 1, 0], [5, 4, 3]]]
    assert torch.equal(hflip(hflip(t)), t)


# --- captions ------------------------------------------------------------------------------


def test_a_caption_that_links_out_of_the_folder_is_named(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    (tmp_path / "secret.txt").write_text("not a caption")
    (photos / "dog.txt").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(ImageFolderError, match=r"caption .*dog\.txt is a link to .*secret\.txt"):
        read_caption(photos / "dog.png")
    (photos / "cat.txt").mkdir()
    with pytest.raises(ImageFolderError, match=r"cat\.txt is not a regular file"):
        read_caption(photos / "cat.png")
    (photos / "own.txt").write_text("a sks dog")
    (photos / "alias.txt").symlink_to(photos / "own.txt")  # a link inside the folder is fine
    assert read_caption(photos / "alias.png") == "a sks dog"


def test_read_caption_from_sidecar_txt(good_folder: Path, tmp_path: Path) -> None:
    assert read_caption(good_folder / "a.JPG") == "a photo of sks robot"
    assert read_caption(good_folder / "b.png") is None
    (good_folder / "c.txt").write_text("   \n")
    assert read_caption(good_folder / "c.webp") is None


# --- bundled toy subject -------------------------------------------------------------------


def test_bundled_toy_subject_is_a_valid_instance_folder() -> None:
    images = load_folder(TOY_SUBJECT_DIR, min_size=64)
    assert len(images) >= 5
    assert all(open_rgb(p).size == (256, 256) for p in images)
    assert all(read_caption(p) is None for p in images)


def test_toy_subject_drawing_is_deterministic(tmp_path: Path) -> None:
    first = draw_toy_subject(tmp_path / "one", n=2)
    second = draw_toy_subject(tmp_path / "two", n=2)
    assert [p.name for p in first] == ["toy_00.png", "toy_01.png"]
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
