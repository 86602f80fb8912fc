"""The LoRA file format shared by training and inference: kohya/WebUI names, files, and WebUI-style application.

One LoRA module adapts one Linear (or 1x1 Conv) layer with weight W by

    ΔW = up @ down * alpha / rank        down: [rank, in] (or [rank, in, 1, 1]), up: [out, rank] (or [out, rank, 1, 1])

and everything here is defined through that product, so peft training (easyphoto.train.lora reads the trained
layers into :data:`LoraWeights`), the exported file, the WebUI's built-in Lora (which adds ``multiplier * ΔW`` at
inference), the standalone diffusers backend (:func:`apply_webui_style`) and the checkpoint merge
(easyphoto.train.merge) all agree on it.

Module keys are ``"unet.<diffusers module path>"`` and ``"text_encoder.<module path>"``, plus
``"text_encoder_2.<module path>"`` for SDXL's second text encoder (OpenCLIP bigG as transformers'
CLIPTextModelWithProjection). In the file they become kohya names, the only naming the WebUI's Lora extension
understands, and the prefixes depend on the model family (kohya sd-scripts' convention, which A1111, Forge and
diffusers all read):

    family  unet          text_encoder   text_encoder_2   ss_base_model_version
    sd15    lora_unet_    lora_te_       (none)           sd_v1
    sdxl    lora_unet_    lora_te1_      lora_te2_        sdxl_base_v1-0

(``lora_unet_down_blocks_0_attentions_0_proj_in``, ``lora_te_text_model_encoder_layers_0_self_attn_q_proj``). UNet
names keep the diffusers module path for SDXL too: A1111 converts them to its SGM layer names
(convert_diffusers_name_to_compvis) and diffusers reads them directly. Dots become underscores, so the name alone is
ambiguous ("proj_in" vs "proj.in"); the exact module keys are therefore also stored in the file's metadata
(``easyphoto_modules``), and files without them (other trainers) are decoded with a vocabulary of SD 1.5 / SDXL
names (SGM-style SDXL UNet names, "lora_unet_input_blocks_4_1_…" as kohya's SDXL trainer writes them, included).

Files are written atomically (easyphoto.store.atomic_path): an interrupted export leaves the previous file or
none, never half of one. safetensors only; metadata values are strings (a safetensors rule).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from easyphoto import __version__
from easyphoto.errors import EasyPhotoError

UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2"]
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]

MODULES_METADATA_KEY = "easyphoto_modules"
LORA_FAMILIES = ("sd15", "sdxl")  # the same names as easyphoto.generation.MODEL_FAMILIES
# kohya sd-scripts' ss_base_model_version: model_util.get_model_version_str_for_sd1_sd2 ("sd_v1") and
# sdxl_model_util.MODEL_VERSION_SDXL_BASE_V1_0; A1111's NetworkOnDisk.detect_version tests startswith("sdxl_")
BASE_MODEL_VERSIONS = {"sd15": "sd_v1", "sdxl": "sdxl_base_v1-0"}
_KOHYA_PREFIXES = {"unet": "lora_unet_", "text_encoder": "lora_te_"}
_SDXL_KOHYA_PREFIXES = {"unet": "lora_unet_", "text_encoder": "lora_te1_", "text_encoder_2": "lora_te2_"}
_FAMILY_PREFIXES = {"sd15": _KOHYA_PREFIXES, "sdxl": _SDXL_KOHYA_PREFIXES}
# kohya prefix -> module-key prefix, for decoding; none is a prefix of another ("lora_te_" is not one of "lora_te1_")
_DECODE_PREFIXES = (
    ("lora_te1_", "text_encoder"),
    ("lora_te2_", "text_encoder_2"),
    ("lora_te_", "text_encoder"),
    ("lora_unet_", "unet"),
)
_KOHYA_SUFFIXES = (".lora_down.weight", ".lora_up.weight", ".alpha")
# Module-path segments of the SD 1.5 / SDXL diffusers UNet and the CLIP text encoders that contain an underscore.
# Used to decode kohya names of files we did not write (no easyphoto_modules metadata):
# "..._transformer_blocks_0_attn1_to_out_0".
_TWO_WORD_SEGMENTS = {
    "down_blocks", "up_blocks", "mid_block", "transformer_blocks", "to_q", "to_k", "to_v", "to_out", "proj_in",
    "proj_out", "text_model", "self_attn", "q_proj", "k_proj", "v_proj", "out_proj", "final_layer_norm",
    "layer_norm1", "layer_norm2", "time_embedding", "conv_in", "conv_out", "conv_shortcut", "time_emb_proj",
    # SDXL (and parts of SD 1.5 outside the LoRA targets)
    "add_embedding", "linear_1", "linear_2", "text_projection", "token_embedding", "position_embedding",
    "conv_norm_out",
}  # fmt: skip
# SGM (ldm) names of the UNet's transformer blocks, as kohya's SDXL trainer writes them ("lora_unet_input_blocks_4_1_
# transformer_blocks_0_attn1_to_q"): input_blocks.{3i+j+1}.1 / middle_block.1 / output_blocks.{3i+j}.1 are
# down_blocks.i.attentions.j / mid_block.attentions.0 / up_blocks.i.attentions.j for two layers per block (SD 1.5 and
# SDXL both have two)
_SGM_ATTENTION = re.compile(r"^(input_blocks|output_blocks)_(\d+)_1_|^middle_block_1_")


class LoraFormatError(EasyPhotoError):
    """A LoRA file or LoRA weights that do not fit the model or the format."""

    phase = "lora"
    http_status = 422


@dataclass
class LoraModule:
    """One module's low-rank update; tensors as given (checkpoints keep float32, exports are float16)."""

    down: torch.Tensor  # [r, in] for Linear, [r, in, kh, kw] for Conv
    up: torch.Tensor  # [out, r] or [out, r, 1, 1]
    alpha: float

    @property
    def rank(self) -> int:
        return int(self.down.shape[0])

    @property
    def scale(self) -> float:
        return float(self.alpha) / self.rank

    def delta(self) -> torch.Tensor:
        """ΔW = up @ down * alpha / rank in float32, shaped like the base weight ([out, in] or [out, in, kh, kw])."""
        up = self.up.detach().float().reshape(self.up.shape[0], self.rank)
        down = self.down.detach().float().reshape(self.rank, -1)
        product = (up @ down) * self.scale
        if self.down.dim() == 4:
            return product.reshape(up.shape[0], *self.down.shape[1:])
        return product


LoraWeights = dict[str, LoraModule]


# ---------------------------------------------------------------------------------------------- names


def _check_family(family: str) -> str:
    if family not in LORA_FAMILIES:
        raise LoraFormatError(
            f"Unknown LoRA model family {family!r}.", hint=f"Use one of {LORA_FAMILIES} (the base model's family)."
        )
    return family


def kohya_name(module_key: str, family: str = "sd15") -> str:
    """``"unet.down_blocks.0.attentions.0.proj_in"`` -> ``"lora_unet_down_blocks_0_attentions_0_proj_in"``.

    `family` picks the text encoders' prefixes: "sd15" ``lora_te_``; "sdxl" ``lora_te1_`` / ``lora_te2_``."""
    prefixes = _FAMILY_PREFIXES[_check_family(family)]
    prefix, _, path = module_key.partition(".")
    if prefix not in prefixes or not path:
        allowed = " or ".join(f"'{p}.'" for p in prefixes)
        raise LoraFormatError(
            f"LoRA module key {module_key!r} must start with {allowed} for a {family} LoRA.",
            hint="Module keys are '<model>.<module path>', as module_keys(model, prefix, targets) gives them.",
        )
    return prefixes[prefix] + path.replace(".", "_")


def lora_family(keys: Iterable[str], family: str | None = None, metadata: dict[str, str] | None = None) -> str:
    """The family ("sd15" or "sdxl") of a LoRA with module `keys`: the explicit `family`, else the metadata's kohya
    ``ss_base_model_version`` ("sdxl_…" is SDXL), else "sdxl" when a key is under ``text_encoder_2.``, else "sd15".

    A LoRA of the SDXL UNet alone has no key that tells; its trainer passes ``family="sdxl"``."""
    keys = list(keys)
    has_te2 = any(key.startswith("text_encoder_2.") for key in keys)
    if family is None:
        version = str((metadata or {}).get("ss_base_model_version", ""))
        family = "sdxl" if version.startswith("sdxl_") or has_te2 else "sd15"
    _check_family(family)
    if family == "sd15" and has_te2:
        raise LoraFormatError(
            "An SD 1.5 LoRA cannot hold text_encoder_2 modules (SDXL's second text encoder).",
            hint="Save it with family='sdxl'.",
        )
    return family


def _sgm_to_diffusers(words: str) -> str:
    """``input_blocks_4_1_transformer…`` -> ``down_blocks_1_attentions_0_transformer…`` (see _SGM_ATTENTION)."""
    match = _SGM_ATTENTION.match(words)
    if match is None:
        return words
    rest = words[match.end() :]
    if match.group(1) is None:
        return "mid_block_attentions_0_" + rest
    index = int(match.group(2))
    if match.group(1) == "input_blocks":
        return f"down_blocks_{(index - 1) // 3}_attentions_{(index - 1) % 3}_" + rest
    return f"up_blocks_{index // 3}_attentions_{index % 3}_" + rest


def guess_module_key(name: str) -> str:
    """Best-effort inverse of :func:`kohya_name` for SD 1.5 and SDXL modules (files without easyphoto_modules)."""
    found = next(((kohya, prefix) for kohya, prefix in _DECODE_PREFIXES if name.startswith(kohya)), None)
    if found is None:
        raise LoraFormatError(
            f"{name!r} is not a kohya LoRA name ('lora_unet_…', 'lora_te_…', 'lora_te1_…' or 'lora_te2_…')."
        )
    kohya, prefix = found
    rest = name[len(kohya) :]
    if prefix == "unet":
        rest = _sgm_to_diffusers(rest)
    words = rest.split("_")
    segments: list[str] = []
    i = 0
    while i < len(words):
        pair = "_".join(words[i : i + 2])
        triple = "_".join(words[i : i + 3])
        if triple in _TWO_WORD_SEGMENTS:
            segments.append(triple)
            i += 3
        elif pair in _TWO_WORD_SEGMENTS:
            segments.append(pair)
            i += 2
        else:
            segments.append(words[i])
            i += 1
    return f"{prefix}." + ".".join(segments)


def _all_kohya_names(key: str) -> list[str]:
    """Every name `key` has in some family's files (decoding needs no family: the prefixes never collide)."""
    names = []
    for family in LORA_FAMILIES:
        try:
            names.append(kohya_name(key, family))
        except LoraFormatError:
            continue
    if not names:
        raise LoraFormatError(f"LoRA module key {key!r} must start with 'unet.', 'text_encoder.' or 'text_encoder_2.'.")
    return names


def strip_peft_wrapper(name: str) -> str:
    """Module names under peft's PeftModel wrapper carry "base_model.model."; our keys never do."""
    return name[len("base_model.model.") :] if name.startswith("base_model.model.") else name


def _matches(name: str, targets: Iterable[str]) -> bool:
    return any(name == t or name.endswith("." + t) for t in targets)


def _is_target_layer(module: torch.nn.Module) -> bool:
    """Linear or 1x1 Conv (what the WebUI's Lora patches for SD 1.5 identity LoRAs), or a peft layer around one."""
    base = getattr(module, "base_layer", module)
    if isinstance(base, torch.nn.Linear):
        return True
    return isinstance(base, torch.nn.Conv2d) and tuple(base.kernel_size) == (1, 1)


def module_keys(model: torch.nn.Module, prefix: str, targets: Iterable[str]) -> list[str]:
    """Keys (``"<prefix>.<module path>"``) of the modules of `model` that a LoRA on `targets` adapts."""
    targets = list(targets)
    return [
        f"{prefix}.{strip_peft_wrapper(name)}"
        for name, module in model.named_modules()
        if name and _matches(name, targets) and _is_target_layer(module)
    ]


def modules_under(weights: LoraWeights, prefix: str) -> dict[str, LoraModule]:
    """The modules of `weights` under `prefix`, keyed by their path inside that model."""
    head = prefix + "."
    return {key[len(head) :]: module for key, module in weights.items() if key.startswith(head)}


# ---------------------------------------------------------------------------------------------- files


def _ranks_label(values: list[float]) -> str:
    """kohya's ss_network_dim/ss_network_alpha: the common value, or "Dynamic" when modules differ."""
    unique = sorted(set(values))
    if len(unique) != 1:
        return "Dynamic"
    value = unique[0]
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def lora_metadata(
    weights: LoraWeights, output_name: str, extra: dict[str, str] | None = None, *, family: str | None = None
) -> dict[str, str]:
    """The metadata :func:`save_lora` writes: kohya ss_* keys, our module list, then the caller's keys.

    ``ss_base_model_version`` is kohya's value for the family (:data:`BASE_MODEL_VERSIONS`); the WebUI reads it to
    tell SD 1.5 from SDXL LoRAs. The family is resolved by :func:`lora_family` (`family`, `extra`, the keys)."""
    family = lora_family(weights, family, extra)
    modules = list(weights.values())
    metadata = {
        "ss_network_module": "networks.lora",
        "ss_network_dim": _ranks_label([m.rank for m in modules]),
        "ss_network_alpha": _ranks_label([m.alpha for m in modules]),
        "ss_base_model_version": BASE_MODEL_VERSIONS[family],
        "ss_output_name": output_name,
        "easyphoto_version": __version__,
        MODULES_METADATA_KEY: json.dumps(sorted(weights), separators=(",", ":")),
    }
    for key, value in (extra or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise LoraFormatError(f"LoRA metadata must map str to str (safetensors); got {key!r}: {value!r}.")
        metadata[key] = value
    if lora_family(weights, None, metadata) != family:  # an extra ss_base_model_version contradicting `family`
        raise LoraFormatError(
            f"LoRA metadata ss_base_model_version={metadata['ss_base_model_version']!r} contradicts family {family!r}."
        )
    return metadata


_ATTENTION_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj")


def check_te2_attention(weights: LoraWeights) -> None:
    """Each text_encoder_2 attention must have LoRAs on all of q/k/v/out_proj or on none of them.

    In SDXL checkpoints the second encoder's attention is one torch MultiheadAttention (q, k, v stacked in
    in_proj_weight). A1111 attaches q/k/v LoRAs to it only when all four are present and otherwise drops them
    without a message, so a partial set would train one thing and render another."""
    attentions: dict[str, set[str]] = {}
    for key in weights:
        head, _, last = key.rpartition(".")
        if key.startswith("text_encoder_2.") and head.endswith(".self_attn") and last in _ATTENTION_PROJECTIONS:
            attentions.setdefault(head, set()).add(last)
    for head, found in sorted(attentions.items()):
        if len(found) != len(_ATTENTION_PROJECTIONS):
            missing = ", ".join(p for p in _ATTENTION_PROJECTIONS if p not in found)
            raise LoraFormatError(
                f"LoRA {head} lacks {missing}: the WebUI applies SDXL text_encoder_2 attention LoRAs only with all "
                "of q_proj, k_proj, v_proj and out_proj.",
                hint="Target all four projections of text_encoder_2 (TEXT_TARGETS does) or none of them.",
            )


def lora_state_dict(
    weights: LoraWeights, dtype: torch.dtype = torch.float16, *, family: str | None = None
) -> dict[str, torch.Tensor]:
    """kohya/WebUI tensors: ``<name>.lora_down.weight``, ``<name>.lora_up.weight``, ``<name>.alpha`` (0-d).

    Names per :func:`kohya_name` for the family that :func:`lora_family` resolves from `family` and the keys."""
    family = lora_family(weights, family)
    check_te2_attention(weights)
    tensors: dict[str, torch.Tensor] = {}
    for key in sorted(weights):
        module = weights[key]
        name = kohya_name(key, family)
        if name + ".lora_down.weight" in tensors:
            raise LoraFormatError(f"Two LoRA modules map to the same kohya name {name!r}.")
        tensors[name + ".lora_down.weight"] = module.down.detach().to("cpu", dtype).contiguous()
        tensors[name + ".lora_up.weight"] = module.up.detach().to("cpu", dtype).contiguous()
        tensors[name + ".alpha"] = torch.tensor(float(module.alpha), dtype=dtype)
    return tensors


def save_lora(
    path: Path | str,
    weights: LoraWeights,
    metadata: dict[str, str] | None = None,
    *,
    dtype: torch.dtype = torch.float16,
    family: str | None = None,
) -> Path:
    """Write `weights` as a kohya/WebUI LoRA .safetensors, atomically; float16 for exports, float32 for checkpoints.

    `family` ("sd15" or "sdxl"; default: "sdxl" when the keys include ``text_encoder_2.`` or `metadata` says
    ``ss_base_model_version`` "sdxl_…", else "sd15") picks the kohya names and ``ss_base_model_version``.

    An existing file at `path` is replaced only when EasyPhoto wrote it (store.ForeignLoraFile otherwise): the
    Lora folder is shared with the user's own LoRAs, and an identity may be named like one of them."""
    import safetensors.torch

    from easyphoto.store import atomic_path, check_lora_target

    if not weights:
        raise LoraFormatError("There are no LoRA weights to save.")
    path = Path(path)
    check_lora_target(path)
    family = lora_family(weights, family, metadata)
    tensors = lora_state_dict(weights, dtype, family=family)
    meta = lora_metadata(weights, path.stem, metadata, family=family)
    with atomic_path(path) as tmp:
        safetensors.torch.save_file(tensors, str(tmp), metadata=meta)
    return path


def read_lora_metadata(path: Path | str) -> dict[str, str]:
    """The metadata of a .safetensors file, without loading its tensors."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def load_lora(path: Path | str, *, keys: Iterable[str] | None = None) -> tuple[LoraWeights, dict[str, str]]:
    """Inverse of :func:`save_lora`: float32 weights keyed by module key, and the file's metadata.

    Kohya names are mapped back through, in order: the file's ``easyphoto_modules`` metadata, the given `keys`
    (e.g. ``module_keys(unet, "unet", UNET_TARGETS) + module_keys(text_encoder, ...)``), then the SD 1.5 / SDXL
    name vocabulary (:func:`guess_module_key`). Both families' prefixes are understood (``lora_te_`` and
    ``lora_te1_`` are ``text_encoder.``, ``lora_te2_`` is ``text_encoder_2.``); the family itself is
    ``lora_family(weights, metadata=metadata)``. A module without an ``.alpha`` tensor gets alpha = rank (scale 1).
    """
    import safetensors
    from safetensors import safe_open

    unreadable = (OSError, ValueError, RuntimeError, getattr(safetensors, "SafetensorError", RuntimeError))
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    except unreadable as exc:
        raise LoraFormatError(f"{path} is not a readable LoRA .safetensors file ({exc}).") from exc

    known: dict[str, str] = {}
    if MODULES_METADATA_KEY in metadata:
        try:
            stored = json.loads(metadata[MODULES_METADATA_KEY])
            known.update({name: k for k in stored for name in _all_kohya_names(k)})
        except (json.JSONDecodeError, TypeError, AttributeError, LoraFormatError) as exc:
            raise LoraFormatError(f"{path}: damaged {MODULES_METADATA_KEY} metadata ({exc}).") from exc
    for key in keys or ():
        for name in _all_kohya_names(key):
            known.setdefault(name, key)

    parts: dict[str, dict[str, torch.Tensor]] = {}
    for name, tensor in tensors.items():
        suffix = next((s for s in _KOHYA_SUFFIXES if name.endswith(s)), None)
        if suffix is None:
            raise LoraFormatError(
                f"{path}: tensor {name!r} is not part of a plain LoRA (LoCon/LoHa/LoKr files are not supported)."
            )
        parts.setdefault(name[: -len(suffix)], {})[suffix] = tensor

    weights: LoraWeights = {}
    for name, part in parts.items():
        if ".lora_down.weight" not in part or ".lora_up.weight" not in part:
            raise LoraFormatError(f"{path}: LoRA module {name!r} lacks its lora_down or lora_up weight.")
        key = known.get(name) or guess_module_key(name)
        down = part[".lora_down.weight"].float()
        up = part[".lora_up.weight"].float()
        alpha = float(part[".alpha"].float().item()) if ".alpha" in part else float(down.shape[0])
        weights[key] = LoraModule(down=down, up=up, alpha=alpha)
    if not weights:
        raise LoraFormatError(f"{path} holds no LoRA modules.")
    return weights, metadata


# ---------------------------------------------------------------------------------------------- baking into weights


def _base_weight(model: torch.nn.Module, path: str) -> torch.Tensor:
    try:
        module = model.get_submodule(path)
    except AttributeError as exc:
        raise LoraFormatError(f"The model has no module {path!r} for this LoRA.") from exc
    module = getattr(module, "base_layer", module)  # a peft-wrapped layer: patch the frozen base weight
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor):
        raise LoraFormatError(f"Module {path!r} has no weight to apply a LoRA to.")
    return weight


def apply_webui_style(model: torch.nn.Module, prefix: str, weights: LoraWeights, multiplier: float = 1.0) -> None:
    """``W += multiplier * up @ down * alpha / rank`` in place on every base weight under `prefix`.

    What the WebUI's built-in Lora does with ``<lora:name:multiplier>``; also how a standalone pipeline bakes a
    LoRA in (and, with :func:`unapply_webui_style`, takes it out again).
    """
    mine = modules_under(weights, prefix)
    targets = {path: _base_weight(model, path) for path in mine}  # check every module before changing any
    with torch.no_grad():
        for path, module in mine.items():
            weight = targets[path]
            delta = module.delta().to(weight.device)
            if tuple(delta.shape) != tuple(weight.shape):
                raise LoraFormatError(
                    f"LoRA {prefix}.{path} changes a {tuple(delta.shape)} weight, the model's is {tuple(weight.shape)}."
                )
            weight.copy_((weight.float() + multiplier * delta).to(weight.dtype))


def unapply_webui_style(model: torch.nn.Module, prefix: str, weights: LoraWeights, multiplier: float = 1.0) -> None:
    """Undo :func:`apply_webui_style` with the same arguments (exact up to float rounding of the weights' dtype)."""
    apply_webui_style(model, prefix, weights, -multiplier)


def total_params(weights: LoraWeights) -> int:
    return sum(m.down.numel() + m.up.numel() for m in weights.values())


def describe(weights: LoraWeights) -> str:
    """A one-line summary for logs: "264 modules (text_encoder 72, unet 192), rank 128"."""
    counts: dict[str, int] = {}
    for key in weights:
        counts[key.partition(".")[0]] = counts.get(key.partition(".")[0], 0) + 1
    ranks = _ranks_label([m.rank for m in weights.values()])
    detail = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    return f"{len(weights)} modules ({detail}), rank {ranks}"
