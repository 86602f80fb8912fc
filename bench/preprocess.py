"""Seconds per photo of Train part 1 (check + dataset) on 20 real photos, offline stack (goal ≤ 0.5 s/photo).

The 20 photos are built from the real photos the tests use (face_recognition 1.3.0's test images and
scikit-image's astronaut): each of five single-person photos as shot, mirrored, scaled to 70 % and rotated 8°.
Both stages run in this one process; model loading is timed apart from the per-photo cost. When the insightface
ONNX weights are in the models folder, the same run is repeated with them.

    python bench/preprocess.py [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PIL import Image, ImageOps  # noqa: E402

from easyphoto.config import TrainConfig  # noqa: E402
from easyphoto.face import stacks  # noqa: E402
from easyphoto.store import Paths  # noqa: E402
from easyphoto.train.dataset import prepare_dataset  # noqa: E402
from easyphoto.train.photos import list_photos, select_photos  # noqa: E402
from tests.kit.cache import SourceUnavailable  # noqa: E402
from tests.kit.photos import fetch_astronaut, fetch_face_recognition_images  # noqa: E402

GOAL = 0.5


def twenty_photos(folder: Path, cache: Path) -> list[Path]:
    sources = [*fetch_face_recognition_images(cache).values(), fetch_astronaut()]
    variants = {
        "shot": lambda im: im,
        "mirrored": ImageOps.mirror,
        "scaled": lambda im: im.resize((int(im.width * 0.7), int(im.height * 0.7)), Image.LANCZOS),
        "rotated": lambda im: im.rotate(8, resample=Image.BICUBIC, expand=True, fillcolor=(255, 255, 255)),
    }
    for source in sources:
        image = Image.open(source).convert("RGB")
        for name, make in variants.items():
            make(image).save(folder / f"{source.stem}_{name}.jpg", quality=92)
    return list_photos(folder)


def run(stack_name: str, paths: Paths, photos: list[Path], work: Path) -> None:
    start = time.perf_counter()
    stack = stacks.load(stack_name, paths)
    warm = photos[0]
    select_photos([warm], stack, TrainConfig(identity_check=False))  # first call loads the models
    load_s = time.perf_counter() - start
    config = TrainConfig(identity_check=False)  # five people on purpose: time every photo through the dataset step
    t0 = time.perf_counter()
    report = select_photos(photos, stack, config)
    t1 = time.perf_counter()
    items = prepare_dataset(report, photos[0].parent, work / f"dataset-{stack_name}", stack, config)
    t2 = time.perf_counter()
    per_photo = (t2 - t0) / len(photos)
    print(
        f"{stack_name}: {len(photos)} photos, {len(report.kept)} kept, {len(items)} dataset images | "
        f"check {(t1 - t0) / len(photos):.3f} s/photo + dataset {(t2 - t1) / max(len(items), 1):.3f} s/image "
        f"= {per_photo:.3f} s/photo overall | goal {GOAL} s/photo → ratio {per_photo / GOAL:.2f} "
        f"({'meets' if per_photo <= GOAL else 'misses'} the goal) | model load {load_s:.2f} s once"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="standalone data dir whose models/easyphoto may hold insightface weights")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "photos").mkdir()
        try:
            photos = twenty_photos(work / "photos", work / "cache")
        except SourceUnavailable as exc:
            print(f"cannot build the photo set: {exc}")
            return 1
        paths = Paths.standalone(args.data_dir or work / "data")
        run("dlib", paths, photos, work)
        ready, why = stacks.insightface_ready(paths)
        if ready:
            run("insightface", paths, photos, work)
        else:
            reason = why.splitlines()[0].rstrip(":")
            print(f"insightface ONNX: not measured ({reason}; `python -m easyphoto models list` says where they go)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
