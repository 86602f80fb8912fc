"""Loading the try-on backends' published weights safely: safetensors, or a pickle converted to safetensors once.

    state = read_weights(path)                         # .safetensors read directly; .pth/.bin/.ckpt → converted once
    check_keys(state, module.state_dict(), "Leffa virtual_tryon.pth")   # names missing / unexpected / misshapen keys

Some backends publish only a torch pickle (Leffa's `virtual_tryon.pth`, 7 GB). A pickle can run code when it is
unpickled, so it is read with `torch.load(weights_only=True)` (torch's restricted unpickler: tensors, dicts, lists
and numbers only; any other Python object is refused before it is built), every value must then be a tensor, and
the result is written next to the pickle as `<name>.safetensors` with a sidecar `<name>.safetensors.json` that
records both files' sha256. Later runs read the safetensors file, after checking that the pickle it came from is
unchanged (size and modification time recorded with its hash; the hash is recomputed only when those differ).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from easyphoto.errors import EasyPhotoError
from easyphoto.store import atomic_path, atomic_write_json, read_json

PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
LISTED_KEYS = 8  # key names quoted per kind in an error; the rest are counted
CONVERTER = "easyphoto.tryon.zeroshot.checkpoints"


class CheckpointError(EasyPhotoError):
    """A try-on checkpoint that is not what its backend publishes: refused before any weight is used."""

    phase = "models"
    http_status = 422


def read_weights(path: Path | str):
    """The tensors of one weight file, as {name: tensor} on the CPU (safetensors; a pickle is converted once)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"The weight file {path} does not exist.",
                              hint="Fetch the backend's models (EasyPhoto → Models, or `python -m easyphoto models "
                                   "fetch --group tryon-any`).")
    if path.suffix.lower() in PICKLE_SUFFIXES:
        path = converted(path)
    elif path.suffix.lower() != ".safetensors":
        raise CheckpointError(f"{path.name}: unknown weight format {path.suffix!r}.",
                              hint="Use the .safetensors (or the published .pth/.bin) file of the backend.")
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own SafetensorError and OSError for a truncated file
        raise CheckpointError(f"{path.name} is not a readable .safetensors file ({exc}).",
                              hint="The download may be incomplete: `python -m easyphoto models verify`, then fetch "
                                   "it again.") from exc


def converted(pickle_path: Path) -> Path:
    """The safetensors copy of a pickled state dict, made on first use (see the module docstring)."""
    target = pickle_path.with_name(pickle_path.stem + ".safetensors")
    record_file = target.with_name(target.name + ".json")
    stat = pickle_path.stat()
    if target.is_file() and record_file.is_file():
        record = read_json(record_file)
        same_file = record.get("source_size") == stat.st_size and record.get("source_mtime_ns") == stat.st_mtime_ns
        if same_file or record.get("source_sha256") == sha256_of(pickle_path):
            return target
    state = load_pickled_state(pickle_path)
    from safetensors.torch import save_file

    with atomic_path(target) as tmp:
        save_file({name: tensor.contiguous() for name, tensor in state.items()}, str(tmp),
                  metadata={"converted_from": pickle_path.name})
    atomic_write_json(record_file, {
        "source": pickle_path.name, "source_sha256": sha256_of(pickle_path), "source_size": stat.st_size,
        "source_mtime_ns": stat.st_mtime_ns, "sha256": sha256_of(target), "tensors": len(state),
        "converted_by": CONVERTER,
    })
    return target


def load_pickled_state(path: Path) -> dict:
    """A torch pickle read with the restricted unpickler; refused unless it is a flat {name: tensor} mapping (or
    one nested under "state_dict"/"model", as training scripts save it)."""
    import torch

    try:
        loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for a refused global, RuntimeError/EOFError for a damaged file: all
        # mean "not a plain weight file", and nothing from it was built
        raise CheckpointError(
            f"{path.name} holds Python objects other than tensors, or is not a torch file, and is not loaded: "
            f"{_first_line(exc)}",
            hint="Only plain weight files are read (a pickle can run code when loaded). Use the backend's published "
                 "file, or convert a trusted one to .safetensors yourself.") from exc
    state = _unwrap(loaded)
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path.name} holds a {type(state).__name__}, not a mapping of weight names to tensors.",
                              hint="Use the backend's published weight file.")
    foreign = [str(name) for name, value in state.items() if not isinstance(name, str) or not torch.is_tensor(value)]
    if foreign:
        raise CheckpointError(
            f"{path.name} holds {len(foreign)} entries that are not tensors: {_listed(foreign)}.",
            hint="A weight file holds tensors only; this one is something else (a training state, or tampered with).")
    return dict(state)


def _unwrap(loaded):
    if isinstance(loaded, Mapping):
        for key in ("state_dict", "model"):
            if set(loaded) == {key} and isinstance(loaded[key], Mapping):
                return loaded[key]
    return loaded


def check_keys(state: Mapping, expected: Mapping, what: str) -> None:
    """Refuse `state` unless it has exactly `expected`'s keys with the same shapes; the error names them."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    misshapen = [f"{k} {tuple(state[k].shape)} ≠ {tuple(expected[k].shape)}" for k in expected
                 if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing ({_listed(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected ({_listed(unexpected)})")
    if misshapen:
        problems.append(f"{len(misshapen)} of another shape ({_listed(misshapen)})")
    if problems:
        raise CheckpointError(f"{what} does not fit its model: keys {'; '.join(problems)}.",
                              hint="The file is for another model or version, or damaged. Fetch the backend's "
                                   "published file again (`python -m easyphoto models fetch --group tryon-any`).")


def sha256_of(path: Path) -> str:
    from easyphoto.downloads import sha256_file

    return sha256_file(path)


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:LISTED_KEYS])
    return f"{shown}, … {len(names) - LISTED_KEYS} more" if len(names) > LISTED_KEYS else shown


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


__all__ = ["CheckpointError", "check_keys", "converted", "load_pickled_state", "read_weights", "sha256_of"]
