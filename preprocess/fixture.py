"""Build the bundled default face set: a small CelebA-layout folder made from real photos that
ship inside installed packages (nothing is downloaded).

* faces: 100 LFW crops from ``skimage.data.lfw_subset`` (upscaled to 80 px and pasted at a
  known place on textured 178×218 canvases), and CelebA-size crops of three public-domain
  portraits (skimage's astronaut and camera, matplotlib's Grace Hopper) with augmentations
  (flip, scale, ±12° rotation, darkening, colour change, JPEG quality 30), plus two full-size
  512-px photos;
* photos with no face (skimage's coffee, cat, textures, rocket, coins and LFW non-faces);
* every kind of broken or unusual file a real collection has (truncated, garbage, empty, text
  with a .jpg name, 10×10, greyscale, CMYK, alpha, 16-bit, a photo missing from the attribute
  file);
* ``list_attr_celeba.csv`` (Kaggle layout) or ``.txt`` (original layout) with deterministic
  attributes, and ``fixture_truth.json`` saying what should happen to every file (face box,
  or the skip reason) so tests can check the pipeline's answers.

``python -m preprocess fixture DIR`` builds it; ``./run demo`` runs the pipeline on it.
"""
from __future__ import annotations

import io
import json
import math
import os
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from jobs.core.files import atomic_write_json
from jobs.core.schema import CELEBA_ATTRIBUTES

W, H = 178, 218                      # CelebA's aligned photo size
FACE_CENTER = (W / 2, 0.55 * H)      # where CelebA puts the face centre
LFW_FACE_PX = 80
# Face boxes (x, y, w, h) in the source photos, annotated once (MTCNN agreed within 2 px).
PORTRAITS = {"astronaut": (182, 64, 83, 107), "camera": (197, 116, 58, 81),
             "grace_hopper": (178, 110, 173, 220)}
AUGMENTATIONS = ("plain", "flip", "scale0.8", "scale1.2", "rot+12", "rot-12", "dark", "colour",
                 "jpeg30")
ATTR_PROBABILITY = {"Attractive": 0.9, "Male": 0.4, "High_Cheekbones": 0.5, "Big_Lips": 0.35}


def _portrait(name: str) -> np.ndarray:
    import skimage.data

    if name == "grace_hopper":
        import matplotlib.cbook

        path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
        return np.asarray(Image.open(path).convert("RGB"))
    image = getattr(skimage.data, name)()
    return image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)


def _place(image: np.ndarray, src_center, scale: float, angle_deg: float, size=(W, H),
           dst_center=FACE_CENTER, fill=(0, 0, 0)) -> np.ndarray:
    """Resample ``image`` so ``src_center`` lands on ``dst_center``, scaled and rotated."""
    angle = math.radians(angle_deg)
    cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
    (sx, sy), (dx, dy) = src_center, dst_center
    data = (cos, -sin, sx - cos * dx + sin * dy, sin, cos, sy - sin * dx - cos * dy)
    out = Image.fromarray(image).transform(size, Image.Transform.AFFINE, data,
                                           resample=Image.Resampling.BICUBIC, fillcolor=fill)
    return np.asarray(out)


def _augment(image: np.ndarray, box, how: str) -> tuple[np.ndarray, tuple, int]:
    """A CelebA-size crop of a portrait; returns (photo, face box in it, JPEG quality)."""
    x, y, w, h = box
    target = 84.0  # face width in the crop, like CelebA's
    scale = target / w * {"scale0.8": 0.8, "scale1.2": 1.2}.get(how, 1.0)
    angle = {"rot+12": 12.0, "rot-12": -12.0}.get(how, 0.0)
    out = _place(image, (x + w / 2, y + h / 2), scale, angle)
    if how == "flip":
        out = out[:, ::-1]
    elif how == "dark":
        out = (out * 0.45).astype(np.uint8)
    elif how == "colour":
        out = out[..., ::-1].copy()  # swap red and blue
    fw, fh = w * scale, h * scale
    truth = (FACE_CENTER[0] - fw / 2, FACE_CENTER[1] - fh / 2, fw, fh)
    if how == "flip":
        truth = (W - truth[0] - fw, truth[1], fw, fh)
    return np.ascontiguousarray(out), truth, 30 if how == "jpeg30" else 95


def _texture(rng: np.random.Generator) -> np.ndarray:
    import skimage.data

    tex = getattr(skimage.data, rng.choice(["brick", "grass", "gravel"]))()
    y, x = rng.integers(0, tex.shape[0] - H), rng.integers(0, tex.shape[1] - W)
    patch = tex[y:y + H, x:x + W].astype(np.float32) * 0.5 + 64  # low contrast backdrop
    tint = rng.uniform(0.6, 1.0, size=3)
    return np.clip(patch[..., None] * tint, 0, 255).astype(np.uint8)


def _lfw_on_canvas(face: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, tuple]:
    canvas = _texture(rng)
    grey = Image.fromarray((face * 255).astype(np.uint8)).resize(
        (LFW_FACE_PX, LFW_FACE_PX), Image.Resampling.LANCZOS)
    skin = np.asarray(grey, dtype=np.float32)[..., None] * rng.uniform([0.95, 0.8, 0.65],
                                                                      [1.05, 0.9, 0.8])
    px = int(rng.integers(10, W - LFW_FACE_PX - 10))
    py = int(rng.integers(20, H - LFW_FACE_PX - 20))
    canvas[py:py + LFW_FACE_PX, px:px + LFW_FACE_PX] = np.clip(skin, 0, 255).astype(np.uint8)
    return canvas, (px, py, LFW_FACE_PX, LFW_FACE_PX)


def _no_face_photos(rng: np.random.Generator, lfw_negatives: np.ndarray) -> list[np.ndarray]:
    import skimage.data

    out = []
    for name in ("coffee", "chelsea", "brick", "grass", "gravel", "rocket", "coins"):
        img = getattr(skimage.data, name)()
        img = img if img.ndim == 3 else np.repeat(img[..., None], 3, axis=2)
        out.append(np.asarray(Image.fromarray(img[..., :3]).resize((W, H))))
    for neg in lfw_negatives:
        canvas = _texture(rng)
        patch = np.asarray(Image.fromarray((neg * 255).astype(np.uint8)).resize((80, 80)))
        canvas[60:140, 50:130] = patch[..., None]
        out.append(canvas)
    return out


def _jpeg(image: np.ndarray, quality: int = 95, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).convert(mode).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def build_entries(seed: int = 0, lfw_faces: int = 100, lfw_negatives: int = 10) -> list[dict]:
    """Every file of the fixture as {data, ext, truth}, in a deterministic shuffled order."""
    import skimage.data

    rng = np.random.default_rng(seed)
    lfw = skimage.data.lfw_subset()
    entries: list[dict] = []

    def face(data: bytes, box, ext=".jpg", **extra):
        entries.append({"data": data, "ext": ext,
                        "truth": {"expect": "face", "box": [round(float(v), 1) for v in box],
                                  **extra}})

    def skip(data: bytes, reason: str, ext=".jpg", **extra):
        entries.append({"data": data, "ext": ext,
                        "truth": {"expect": "skip", "reason": reason, **extra}})

    for name, box in PORTRAITS.items():
        photo = _portrait(name)
        for how in AUGMENTATIONS:
            image, truth, quality = _augment(photo, box, how)
            face(_jpeg(image, quality), truth, source=f"{name}/{how}")
    for name in ("astronaut", "grace_hopper"):  # full-size photos: a second size bucket
        face(_jpeg(_portrait(name)), PORTRAITS[name], source=f"{name}/full")
    for i in range(lfw_faces):
        canvas, box = _lfw_on_canvas(lfw[i], rng)
        face(_jpeg(canvas), box, source=f"lfw/{i}")
    for i, image in enumerate(_no_face_photos(rng, lfw[100:100 + lfw_negatives])):
        skip(_jpeg(image), "no_face", source=f"noface/{i}")

    # Unusual but usable: converted, and the face is still found.
    astro, astro_box = _augment(_portrait("astronaut"), PORTRAITS["astronaut"], "plain")[:2]
    camera, camera_box = _augment(_portrait("camera"), PORTRAITS["camera"], "plain")[:2]
    face(_jpeg(camera, mode="L"), camera_box, converted="greyscale", source="camera/grey")
    face(_jpeg(astro, mode="CMYK"), astro_box, converted="cmyk", source="astronaut/cmyk")
    rgba = Image.fromarray(astro).convert("RGBA")
    rgba.putalpha(Image.fromarray(np.full((H, W), 255, np.uint8)))
    face(_png(rgba), astro_box, ext=".png", converted="alpha", source="astronaut/alpha")
    deep = Image.fromarray(camera[..., 0].astype(np.uint16) * 257)  # 16-bit greyscale
    face(_png(deep), camera_box, ext=".png", converted="16-bit", source="camera/16bit")

    # Broken: each must be skipped with this reason, and never stop a shard.
    good = _jpeg(astro)
    skip(good[: len(good) // 2], "corrupt", source="truncated")
    skip(good[:20] + rng.bytes(4000), "not_an_image", source="JPEG marker then garbage")
    skip(b"", "empty_file", source="zero bytes")
    skip(b"name,value\nthis is not an image\n", "not_an_image", source="text")
    skip(_jpeg(np.full((10, 10, 3), 128, np.uint8)), "too_small", source="10x10")
    skip(good, "missing_attributes", source="not in attribute file", no_attributes=True)

    order = rng.permutation(len(entries))
    return [entries[i] for i in order]


def _attributes(rng: np.random.Generator) -> np.ndarray:
    probs = np.array([ATTR_PROBABILITY.get(a, 0.3) for a in CELEBA_ATTRIBUTES])
    return (rng.random(len(CELEBA_ATTRIBUTES)) < probs).astype(np.int8)


def build(out_dir: str | Path, layout: str = "kaggle", seed: int = 0, lfw_faces: int = 100,
          lfw_negatives: int = 10) -> Path:
    """Write the fixture into ``out_dir`` (CelebA ``layout``: kaggle or original)."""
    out_dir = Path(out_dir)
    image_dir = out_dir / "img_align_celeba"
    if layout == "kaggle":
        image_dir = image_dir / "img_align_celeba"
    image_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed + 1)
    truth, rows = {}, []
    for i, entry in enumerate(build_entries(seed, lfw_faces, lfw_negatives), start=1):
        name = f"{i:06d}{entry['ext']}"
        (image_dir / name).write_bytes(entry["data"])
        attrs = _attributes(rng)
        info = dict(entry["truth"])
        if info["expect"] == "skip":  # labels are checked first: make its own reason show
            attrs[CELEBA_ATTRIBUTES.index("Attractive")] = 1
        if not info.pop("no_attributes", False):
            rows.append((name, attrs))
            info["attributes"] = {a: int(v) for a, v in zip(CELEBA_ATTRIBUTES, attrs)}
        truth[name] = info
    if layout == "kaggle":
        lines = ["image_id," + ",".join(CELEBA_ATTRIBUTES)]
        lines += [name + "," + ",".join("1" if v else "-1" for v in a) for name, a in rows]
        (out_dir / "list_attr_celeba.csv").write_text("\n".join(lines) + "\n")
    else:
        lines = [str(len(rows)), " ".join(CELEBA_ATTRIBUTES)]
        lines += [name + " " + " ".join(f"{1 if v else -1:>2}" for v in a) for name, a in rows]
        (out_dir / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    atomic_write_json(out_dir / "fixture_truth.json", truth)
    return out_dir


def load_truth(out_dir: str | Path) -> dict:
    return json.loads((Path(out_dir) / "fixture_truth.json").read_text())


def _huge_png_header(side: int = 100_000) -> bytes:
    """A PNG whose header claims side x side pixels (10^10 for the default) and holds none."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (len(data).to_bytes(4, "big") + kind + data +
                zlib.crc32(kind + data).to_bytes(4, "big"))
    header = side.to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def write_hostile_photos(folder: str | Path) -> dict[str, dict]:
    """Files a real photo folder throws at preprocessing, written into ``folder``, each with
    what must become of it: ``{"expect": "face", "box": ..., "converted": note}`` or
    ``{"expect": "skip", "reason": ...}``. ``unreadable.jpg`` (mode 000) is unreadable only to
    a process without CAP_DAC_OVERRIDE: run the preprocessing without it to see its skip."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    face, box = _augment(_portrait("astronaut"), PORTRAITS["astronaut"], "plain")[:2]
    noise = np.random.default_rng(0).integers(0, 255, face.shape, dtype=np.uint8)
    frames = [Image.fromarray(face), Image.fromarray(noise)]
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": the pixels lie on their side
    Image.fromarray(np.rot90(face)).save(folder / "exif_rotated.jpg", quality=95, exif=exif)
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:],
                   duration=100, loop=0)
    frames[0].save(folder / "multipage.tif", save_all=True, append_images=frames[1:])
    frames[0].save(folder / "photo.webp", quality=95)
    (folder / "page.jpg").write_bytes(b"<!DOCTYPE html><html><body>404 Not Found</body></html>")
    (folder / "huge.png").write_bytes(_huge_png_header())
    (folder / "loop.jpg").symlink_to("loop.jpg")
    (folder / "dangling.jpg").symlink_to("deleted-long-ago.jpg")
    os.mkfifo(folder / "pipe.jpg")
    (folder / "unreadable.jpg").write_bytes(_jpeg(face))
    (folder / "unreadable.jpg").chmod(0)
    found = {"expect": "face", "box": [round(float(v), 1) for v in box]}
    return {"exif_rotated.jpg": {**found, "converted": "exif_rotated"},
            "animated.gif": {**found, "converted": "first_frame"},
            "multipage.tif": {**found, "converted": "first_frame"},
            "photo.webp": dict(found),
            "page.jpg": {"expect": "skip", "reason": "not_an_image"},
            "huge.png": {"expect": "skip", "reason": "too_large"},
            "loop.jpg": {"expect": "skip", "reason": "unreadable"},
            "dangling.jpg": {"expect": "skip", "reason": "unreadable"},
            "pipe.jpg": {"expect": "skip", "reason": "not_a_file"},
            "unreadable.jpg": {"expect": "skip", "reason": "unreadable"}}
