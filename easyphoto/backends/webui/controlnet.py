"""The host's ControlNet behind one small interface, the flavour chosen once (`controlnet_adapter`).

A1111 runs Mikubill's sd-webui-controlnet extension (`internal_controlnet.external_code` since 1.1.448,
`scripts.external_code` before); Forge ships its own `lib_controlnet` (host-api.md §4, §6). Both are driven the same
way: an alwayson script titled "ControlNet" whose argument slots take one `ControlNetUnit` each. What differs (the
modules, the name of the "no preprocessor" module, how a model name is resolved, the advice when it is missing) is
in the two adapters below, so the generator never asks which host it runs on.
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from types import ModuleType

from easyphoto.backends.webui.host import cmd_opt

CONTROL_MODE_LABELS = {"balanced": "Balanced", "prompt": "My prompt is more important",
                       "control": "ControlNet is more important"}  # ControlNet's string enum values
CONTROL_RESIZE_MODE = "Just Resize"  # the condition images are prepared at the request's size
NOT_ACTIVE = "ControlNet is loaded but not active in this WebUI session (disabled, or the UI is not built yet)"


@dataclasses.dataclass(frozen=True)
class HostControlNet:
    """The host's ControlNet as loaded now: its modules and the alwayson script of one ScriptRunner."""

    external_code: ModuleType
    global_state: ModuleType | None  # Forge's lib_controlnet.global_state; None on A1111
    script: object

    @property
    def slots(self) -> int:
        """ControlNet units the script takes ("Multi-ControlNet: ControlNet unit number" at UI build time)."""
        return max(int(self.script.args_to) - int(self.script.args_from), 0)


def controlnet_script(runner):
    """The ControlNet alwayson script of a ScriptRunner (title "ControlNet" on both hosts), or None."""
    for script in getattr(runner, "alwayson_scripts", None) or []:
        try:
            if str(script.title()).lower() == "controlnet":
                return script
        except Exception:  # another extension's broken title() is not our failure
            continue
    return None


def name_stem(name: str) -> str:
    """'control_v11p_sd15_canny [d14c016b]' -> 'control_v11p_sd15_canny' (the host's "name [hash8]" form)."""
    return name.rsplit(" [", 1)[0] if name.endswith("]") and " [" in name else name


class ControlNetAdapter:
    """What the generator needs from a host's ControlNet; one subclass per flavour."""

    flavour = ""
    none_module = "none"  # the preprocessor that passes the condition image through unchanged
    not_loaded = ""  # why ControlNet cannot be used when its modules are not importable
    hint = ""  # what the user does about it

    def modules(self) -> tuple[ModuleType, ModuleType | None] | None:
        """(external_code, global_state or None), None when the host's ControlNet is not loaded."""
        raise NotImplementedError

    def usable(self, runner) -> tuple[HostControlNet | None, str | None]:
        """(the host's ControlNet, None) when it can take units for `runner`, else (None, why); `hint` says what to
        do about it."""
        modules = self.modules()
        script = controlnet_script(runner)
        if script is not None and (script.args_from is None or script.args_to is None):
            script = None  # its UI (and so its argument slots) was never built
        if modules is None:
            return None, self.not_loaded
        if script is None:
            return None, NOT_ACTIVE
        return HostControlNet(*modules, script), None

    def model_names(self, cn: HostControlNet) -> list[str]:
        """The host's ControlNet models as "name [hash8]", rescanned now (a file downloaded a minute ago counts)."""
        raise NotImplementedError

    def resolve_model(self, names: list[str], stem: str) -> str | None:
        """The exact name the host will accept for the file stem `stem`, None when it has no such model: the exact
        name, the stem of a "name [hash]", the lower-cased stem; subclasses may add looser matches."""
        if stem in names:
            return stem
        by_stem: dict[str, str] = {}
        for name in names:
            by_stem.setdefault(name_stem(name), name)
        if stem in by_stem:
            return by_stem[stem]
        lowered: dict[str, str] = {}
        for key, name in by_stem.items():
            lowered.setdefault(key.lower(), name)
        if stem.lower() in lowered:
            return lowered[stem.lower()]
        return self._loose_match(lowered, stem.lower())

    def _loose_match(self, lowered: dict[str, str], stem: str) -> str | None:
        return None

    def unit(self, cn: HostControlNet, control, model: str):
        """One ControlNetUnit for a `generation.Control` whose image is the prepared condition map."""
        import numpy as np

        fields = {
            "enabled": True,
            "module": self.none_module,  # the prepared map is used as is
            "model": model,
            "image": np.ascontiguousarray(np.asarray(control.image.convert("RGB"), dtype=np.uint8)),
            "weight": float(control.weight),
            "guidance_start": float(control.start),
            "guidance_end": float(control.end),
            "control_mode": CONTROL_MODE_LABELS[control.mode],  # string enums only: ints fail validation
            "resize_mode": CONTROL_RESIZE_MODE,
            "processor_res": 512,
            "pixel_perfect": False,
            "save_detected_map": False,  # no detected maps in processed.images
        }
        return cn.external_code.ControlNetUnit(**fields)

    # The host's face preprocessors per training-free method, in unit order (easyphoto.identity_modes.IDENTITY_MODELS
    # lists the models in the same order); None where the host's ControlNet has no such method.
    identity_modules: dict[str, tuple[str, ...] | None] = {}
    identity_refusal = ""  # why a method with no preprocessors cannot run on this host

    def identity_unit(self, cn: HostControlNet, identity, module: str, model: str, image):
        """One unit of a training-free identity method: the host's face preprocessor on `image` (the reference face;
        for InstantID's keypoints unit, the picture whose face position and pose are kept)."""
        import numpy as np

        fields = {
            "enabled": True,
            "module": module,
            "model": model,
            "image": np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8)),
            "weight": float(identity.weight),
            "guidance_start": float(identity.start),
            "guidance_end": float(identity.end),
            # the reference's SDXL InstantID units run with control mode 2 (reference §3.6 "SDXL differences");
            # the IP-Adapter preprocessors ignore the mode (no_control_mode)
            "control_mode": CONTROL_MODE_LABELS["control"],
            "resize_mode": CONTROL_RESIZE_MODE,
            "processor_res": 512,
            "pixel_perfect": False,
            "save_detected_map": False,
        }
        return cn.external_code.ControlNetUnit(**fields)

    @staticmethod
    def models_dir() -> Path:
        """Where the host's ControlNet looks for models (--controlnet-dir, else models/ControlNet)."""
        from modules import paths_internal

        return Path(cmd_opt("controlnet_dir") or Path(paths_internal.models_path) / "ControlNet")


class MikubillControlNet(ControlNetAdapter):
    """A1111 with the sd-webui-controlnet extension (Mikubill)."""

    flavour = "a1111"
    none_module = "none"
    not_loaded = "the sd-webui-controlnet extension is not installed"
    hint = ("Install sd-webui-controlnet (Extensions → Available, or Install from URL "
            "https://github.com/Mikubill/sd-webui-controlnet) and restart the WebUI.")

    def modules(self):
        # cached in sys.modules by ControlNet's own scripts once they loaded
        for name in ("internal_controlnet.external_code", "scripts.external_code"):
            try:
                return importlib.import_module(name), None
            except ImportError:
                continue
        return None

    # scripts/preprocessor/legacy/preprocessor_compiled.py (instant_id_*, ip-adapter_face_id_plus) and
    # scripts/preprocessor/pulid.py (ip-adapter_pulid) of sd-webui-controlnet 1.1.455; InstantID's IP-Adapter unit
    # must come right before its ControlNet unit (scripts/controlnet.py asserts it).
    identity_modules = {
        "instantid": ("instant_id_face_embedding", "instant_id_face_keypoints"),
        "faceid": ("ip-adapter_face_id_plus",),
        "pulid": ("ip-adapter_pulid",),
    }

    def model_names(self, cn):
        return list(cn.external_code.get_models(update=True))

    def _loose_match(self, lowered, stem):
        # build_control_model's last resort (host-api.md §4.6): the shortest stem containing the name
        containing = sorted((key for key in lowered if stem in key), key=len)
        return lowered[containing[0]] if containing else None


class ForgeControlNet(ControlNetAdapter):
    """Forge's built-in extensions-builtin/sd_forge_controlnet (lib_controlnet): a plain dict lookup of the exact
    "name [hash]", so nothing looser than the stem matches."""

    flavour = "forge"
    none_module = "None"
    not_loaded = "Forge's built-in ControlNet (extensions-builtin/sd_forge_controlnet) is disabled"
    hint = "Enable sd_forge_controlnet in Extensions → Installed and restart the WebUI."

    def modules(self):
        try:
            from lib_controlnet import external_code, global_state
        except ImportError:
            return None
        return external_code, global_state

    # extensions-builtin/sd_forge_ipadapter/scripts/forge_ipadapter.py registers "InsightFace (InstantID)" and
    # "InsightFace+CLIP-H (IPAdapter)"; forge_legacy_preprocessors keeps "instant_id_face_keypoints" (its
    # instant_id_face_embedding and plain ip-adapter_face_id are commented out). Forge has no PuLID at all.
    identity_modules = {
        "instantid": ("InsightFace (InstantID)", "instant_id_face_keypoints"),
        "faceid": ("InsightFace+CLIP-H (IPAdapter)",),
        "pulid": None,
    }
    identity_refusal = ("PuLID needs A1111's ControlNet extension (sd-webui-controlnet ≥ 1.1.441); Forge's built-in "
                        "ControlNet has no PuLID preprocessor")

    def model_names(self, cn):
        cn.global_state.update_controlnet_filenames()
        return [n for n in cn.global_state.get_all_controlnet_names() if n != "None"]


def controlnet_adapter(flavour: str) -> ControlNetAdapter:
    """The adapter of the host flavour ("a1111" or "forge", `host.detect_flavour()`)."""
    return ForgeControlNet() if flavour == "forge" else MikubillControlNet()
