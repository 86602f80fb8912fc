"""Real photographs taken from PyPI packages at test time (never committed to this repository).

Why: face detection, alignment and identity code must be exercised on real faces, and model
hubs / image sites are unreachable. Three packages ship suitable, redistributable test photos:

* ``insightface`` 2.1: ``insightface/data/images/t1.jpg`` - a group photo of six people. Read from
  the installed package when there is one (located with ``importlib.util.find_spec``, which does
  not execute insightface's ``__init__``), else extracted from the wheel fetched with
  ``pip download --no-deps insightface==2.1``.
* ``scikit-image``: ``skimage/data/astronaut.png`` - one portrait (Eileen Collins), shipped in the
  wheel (no pooch download needed).
* ``face_recognition`` 1.3.0 sdist: ``tests/test_images/obama.jpg``, ``obama2.jpg``, ``obama3.jpg``
  (one man, three photos) and ``biden.jpg`` (another person), extracted from the sdist fetched
  with ``pip download --no-deps --no-binary :all: face_recognition==1.3.0``.

Every public helper returns :class:`~pathlib.Path` objects inside the kit cache. When a source
cannot be had, it calls :func:`skip_or_fail`: a skip on a developer machine, a hard failure
when ``CI`` is set, so that CI can never go green by silently skipping.
"""

from __future__ import annotations

import importlib.util
import os
import tarfile
import zipfile
from pathlib import Path

from .cache import SourceUnavailable, cached_dir, pip_download

INSIGHTFACE_SPEC = "insightface==2.1"
INSIGHTFACE_MEMBER = "insightface/data/images/t1.jpg"
FACE_RECOGNITION_SPEC = "face_recognition==1.3.0"
FACE_RECOGNITION_DIR = "face_recognition-1.3.0/tests/test_images/"
SAME_MAN = ("obama.jpg", "obama2.jpg", "obama3.jpg")
OTHER_PERSON = "biden.jpg"
CI_TRUTHY = {"1", "true", "yes", "on"}


def in_ci() -> bool:
    """True when the ``CI`` environment variable is set to a true value (as CI runners do)."""
    return os.environ.get("CI", "").strip().lower() in CI_TRUTHY


def skip_or_fail(message: str):
    """Skip the requesting test locally; fail it in CI, where a missing source is a setup bug."""
    import pytest

    if in_ci():
        pytest.fail(f"{message} (CI is set, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(message)


def _installed_package_file(package: str, relative: str) -> Path | None:
    """Path of a data file inside an installed package, found without importing the package."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location, relative)
        if candidate.is_file():
            return candidate
    return None


def fetch_t1(cache_root: Path) -> Path:
    """insightface's t1.jpg; raises :class:`SourceUnavailable` when neither install nor wheel has it."""
    installed = _installed_package_file("insightface", "data/images/t1.jpg")
    if installed is not None:
        return installed

    def extract(tmp: Path) -> None:
        wheel = pip_download(INSIGHTFACE_SPEC, cache_root / "downloads")
        with zipfile.ZipFile(wheel) as archive:
            (tmp / "t1.jpg").write_bytes(archive.read(INSIGHTFACE_MEMBER))

    try:
        return cached_dir(cache_root / "photos" / "insightface", extract) / "t1.jpg"
    except (KeyError, zipfile.BadZipFile) as exc:
        raise SourceUnavailable(f"{INSIGHTFACE_SPEC} wheel has no {INSIGHTFACE_MEMBER}: {exc}") from exc


def fetch_astronaut() -> Path:
    """scikit-image's astronaut.png as shipped inside the installed package."""
    found = _installed_package_file("skimage", "data/astronaut.png")
    if found is None:
        raise SourceUnavailable("scikit-image with skimage/data/astronaut.png is not installed")
    return found


def fetch_face_recognition_images(cache_root: Path) -> dict[str, Path]:
    """The four face_recognition test photos we use, keyed by file name."""
    names = (*SAME_MAN, OTHER_PERSON)

    def extract(tmp: Path) -> None:
        sdist = pip_download(FACE_RECOGNITION_SPEC, cache_root / "downloads", sdist=True)
        with tarfile.open(sdist, "r:gz") as archive:
            for name in names:
                member = archive.extractfile(FACE_RECOGNITION_DIR + name)
                if member is None:
                    raise SourceUnavailable(f"{sdist.name} has no regular file {FACE_RECOGNITION_DIR}{name}")
                (tmp / name).write_bytes(member.read())

    try:
        folder = cached_dir(cache_root / "photos" / "face_recognition", extract)
    except (KeyError, tarfile.TarError) as exc:
        raise SourceUnavailable(f"{FACE_RECOGNITION_SPEC} sdist lacks the test photos: {exc}") from exc
    return {name: folder / name for name in names}


def _or_skip(fetch, package_hint: str, *args):
    """Run a fetcher; turn :class:`SourceUnavailable` into :func:`skip_or_fail` naming the install command."""
    try:
        return fetch(*args)
    except SourceUnavailable as exc:
        message = f"{exc}. Needs {package_hint}"
    return skip_or_fail(message)  # outside the handler: no chained traceback in the report


def photo_t1(cache_root: Path) -> Path:
    """insightface t1.jpg (six people)."""
    return _or_skip(fetch_t1, f"`pip install --no-deps {INSIGHTFACE_SPEC}` (or PyPI access)", cache_root)


def photo_astronaut() -> Path:
    """scikit-image astronaut.png (one face)."""
    return _or_skip(fetch_astronaut, "`pip install scikit-image` (see requirements/test.txt)")


def photos_same_man(cache_root: Path) -> list[Path]:
    """Three photos of one man (face_recognition's obama*.jpg)."""
    hint = f"PyPI access for `pip download --no-deps --no-binary :all: {FACE_RECOGNITION_SPEC}`"
    images = _or_skip(fetch_face_recognition_images, hint, cache_root)
    return [images[name] for name in SAME_MAN]


def photo_other_person(cache_root: Path) -> Path:
    """A photo of a different man (face_recognition's biden.jpg)."""
    hint = f"PyPI access for `pip download --no-deps --no-binary :all: {FACE_RECOGNITION_SPEC}`"
    return _or_skip(fetch_face_recognition_images, hint, cache_root)[OTHER_PERSON]
