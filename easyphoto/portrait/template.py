"""Template analysis: find the faces of a template photo and assign each chosen face to an identity.

Faces are numbered left to right (by box centre), the order the Portrait tab draws its numbers in, so "face 2" means
the same face in the UI, the API and the CLI. Without explicit numbers the N largest faces are used, left to right
(N = number of identities), which is the reference's behaviour for one person and a predictable one for several.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from easyphoto.errors import EasyPhotoError
from easyphoto.face.types import Detector, Face, largest_first
from easyphoto.imageops import to_array


class TemplateError(EasyPhotoError):
    """The template cannot be used as asked (no face, face too small, bad face numbers)."""

    phase = "template"
    http_status = 422


@dataclass
class TemplateAnalysis:
    name: str
    image: Image.Image  # RGB, upright
    faces: list[Face]  # left to right

    def describe(self) -> list[dict]:
        return [{"index": i, **face.to_dict()} for i, face in enumerate(self.faces)]


def analyse(image: Image.Image, name: str, detector: Detector) -> TemplateAnalysis:
    faces = detector.detect(to_array(image))
    return TemplateAnalysis(name, image.convert("RGB"), sorted(faces, key=lambda f: (f.box[0] + f.box[2]) / 2))


def assign(analysis: TemplateAnalysis, identity_ids: list[str], face_indices: list[int] | None,
           min_face_px: int) -> list[tuple[str, Face]]:
    """(identity id, template face) pairs in the order they are rendered."""
    if not analysis.faces:
        raise TemplateError(f"No face found in the template {analysis.name}.",
                            hint="Use a photo where each face is clearly visible and at least roughly frontal.")
    if not identity_ids:
        raise TemplateError("No identity was chosen for the portrait.", hint="Pick at least one trained identity.")
    chosen = _explicit(analysis, identity_ids, face_indices) if face_indices else _largest(analysis, identity_ids)
    for identity_id, face in chosen:
        side = min(face.width, face.height)
        if side < min_face_px:
            number = analysis.faces.index(face)
            raise TemplateError(
                f"Face {number} of the template {analysis.name} is {side:.0f} px; at least {min_face_px} px is needed "
                f"to render {identity_id}.",
                hint="Use a larger photo or one where the face is closer, or lower “min face px” in the options.",
            )
    return chosen


def _largest(analysis: TemplateAnalysis, identity_ids: list[str]) -> list[tuple[str, Face]]:
    if len(identity_ids) > len(analysis.faces):
        raise TemplateError(
            f"The template {analysis.name} has {len(analysis.faces)} face(s) for {len(identity_ids)} identities.",
            hint="Choose a template with enough faces, or fewer identities.",
        )
    picked = largest_first(analysis.faces)[: len(identity_ids)]
    in_order = [f for f in analysis.faces if any(f is p for p in picked)]
    return list(zip(identity_ids, in_order, strict=True))


def _explicit(analysis: TemplateAnalysis, identity_ids: list[str], indices: list[int]) -> list[tuple[str, Face]]:
    count = len(analysis.faces)
    if len(indices) != len(identity_ids):
        raise TemplateError(f"{len(identity_ids)} identities but {len(indices)} face numbers were given.",
                            hint="Give one face number per identity, in the same order.")
    bad = [i for i in indices if not 0 <= int(i) < count]
    if bad:
        raise TemplateError(f"Face number(s) {bad} do not exist in the template {analysis.name}, which has faces "
                            f"0–{count - 1} (numbered left to right).", hint="Pick numbers shown on the template.")
    if len(set(indices)) != len(indices):
        raise TemplateError(f"Face numbers {indices} name the same face twice.", hint="Give each identity its own face.")
    return [(identity_id, analysis.faces[int(i)]) for identity_id, i in zip(identity_ids, indices, strict=True)]


def box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
