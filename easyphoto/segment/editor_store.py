"""Photos handed to the browser's mask editor and the masks it sends back, keyed by the photo's pixel key
(easyphoto.segment.sam.pixel_key), so a tab and the editor page find the same photo without any JavaScript in the
tab: the tab stores its photo and shows the editor for that key; the editor sends its mask under the same key; the
tab takes it from there.

The pose editor works the same way with skeletons (OpenPose JSON): the tab stores the pose it previewed, the editor
sends the dragged one back. Files: <data>/editor/photos/<key>.png, masks/<key>.png, poses/<key>.json, written
atomically; the oldest photos and masks are removed beyond KEEP of each.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
from PIL import Image

from easyphoto.errors import InvalidRequest, NotFound
from easyphoto.store import Paths, atomic_write_bytes

KEY = re.compile(r"^[0-9a-f]{64}$")
KEEP = 50


def editor_dir(paths: Paths) -> Path:
    return paths.data_root / "editor"


def check_key(key: str) -> str:
    if not isinstance(key, str) or not KEY.match(key):
        raise InvalidRequest(f"{key!r} is not a photo key (64 lowercase hex digits).", phase="segment",
                             hint="Use the key POST /segment/embedding answered (X-EasyPhoto-Image-Key).")
    return key


def store_photo(paths: Paths, pixels: np.ndarray) -> str:
    """Keep the photo for the editor; its key."""
    from easyphoto.segment.sam import pixel_key

    key = pixel_key(pixels)
    _write(editor_dir(paths) / "photos" / f"{key}.png", Image.fromarray(pixels, "RGB"))
    return key


def photo_file(paths: Paths, key: str) -> Path:
    path = editor_dir(paths) / "photos" / f"{check_key(key)}.png"
    if not path.is_file():
        raise NotFound("No photo with this key is waiting for the editor.", phase="segment",
                       hint="Open the photo in the tab again (it hands the photo to the editor).")
    return path


def store_mask(paths: Paths, key: str, data: bytes) -> Path:
    """Keep the editor's mask (any image; white or opaque = in the mask) as a 0/255 PNG; InvalidRequest when it is
    no image or marks nothing."""
    check_key(key)
    try:
        with Image.open(io.BytesIO(data)) as opened:
            band = opened.getchannel("A") if opened.mode in ("RGBA", "LA") and opened.getextrema()[-1][0] < 255 \
                else opened.convert("L")
            mask = np.asarray(band) > 127
    except (OSError, ValueError) as exc:
        raise InvalidRequest(f"mask: not an image ({exc}).", phase="segment", hint="Send a PNG.") from None
    if not mask.any():
        raise InvalidRequest("The mask is empty: nothing is selected.", phase="segment",
                             hint="Click on the garment in the editor before sending the mask.")
    return _write(editor_dir(paths) / "masks" / f"{key}.png", Image.fromarray((mask * 255).astype(np.uint8), "L"))


def mask_file(paths: Paths, key: str) -> Path | None:
    path = editor_dir(paths) / "masks" / f"{check_key(key)}.png"
    return path if path.is_file() else None


def store_pose(paths: Paths, key: str, skeleton: dict | str) -> Path:
    """Keep a skeleton (OpenPose JSON, checked) for the photo `key`: the tab's preview, or the pose editor's edit."""
    import json

    from easyphoto.pose.skeleton import skeleton_from_json, skeleton_to_json

    bodies, size = skeleton_from_json(skeleton)
    text = json.dumps(skeleton_to_json(bodies, size))
    path = editor_dir(paths) / "poses" / f"{check_key(key)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_bytes(path, text.encode())


def pose_file(paths: Paths, key: str) -> Path | None:
    path = editor_dir(paths) / "poses" / f"{check_key(key)}.json"
    return path if path.is_file() else None


def _write(path: Path, image: Image.Image) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    written = atomic_write_bytes(path, buffer.getvalue())
    kept = sorted(path.parent.glob("*.png"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in kept[KEEP:]:
        old.unlink(missing_ok=True)
    return written
