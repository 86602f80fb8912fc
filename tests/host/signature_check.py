"""Compare the host double with host-api-signatures.json (AST-extracted real signatures; host-api.md 7.4).

``compare_entry(qualname, entry, obj)`` returns human-readable mismatches for one JSON entry: parameter names,
order, kinds, presence of defaults and literal default values for functions/methods/properties; own init fields
(order, init flag, literal defaults, factories) for dataclasses, pydantic models, TypedDicts and NamedTuples;
literal values of class attributes, enum members and simple module constants. Only what the double defines is
compared (absent names are the business of the required-names test).
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import importlib
import inspect
import json
import os
import sys
from pathlib import Path

JSON_PATH = Path(__file__).resolve().parent / "host-api-signatures.json"
A1111, MIKUBILL, FORGE = "AUTOMATIC1111/stable-diffusion-webui", "Mikubill/sd-webui-controlnet", \
    "lllyasviel/stable-diffusion-webui-forge"
_UNSET = object()


def load_reference(path: Path = JSON_PATH) -> dict:
    with open(path, encoding="utf8") as file:
        return {source["repo"]: source["modules"] for source in json.load(file)["sources"]}


def reference_modules(reference: dict, flavour: str) -> dict[tuple[str, str], dict]:
    """{(repo, json module path): entries} to check for a flavour (Forge: its own entries + unchanged A1111 ones)."""
    if flavour == "a1111":
        repos = [A1111, MIKUBILL]
        return {(repo, path): entries for repo in repos for path, entries in reference[repo].items()}
    forge = {(FORGE, path): entries for path, entries in reference[FORGE].items()}
    forge.update({(A1111, path): entries for path, entries in reference[A1111].items()
                  if path not in reference[FORGE]})
    return forge


# ------------------------------------------------------------------------------------------------ module lookup
def _loaded_script(path: str):
    """A module executed by script_loading.load_module (scripts/*.py, preload.py): not in sys.modules."""
    from modules import script_loading

    wanted = os.path.realpath(path)
    for key, module in script_loading.loaded_scripts.items():
        if os.path.realpath(key) == wanted:
            return module
    return None


def _import(name):
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def resolve_module(repo: str, json_path: str, flavour: str):
    """The double's module for a JSON module path (None when the double has no such module)."""
    from modules import paths_internal

    builtin, extensions = paths_internal.extensions_builtin_dir, paths_internal.extensions_dir
    if repo == MIKUBILL:
        ext = os.path.join(extensions, "sd-webui-controlnet")
        if json_path.startswith("internal_controlnet/"):
            return _import(json_path[:-3].replace("/", "."))
        return _loaded_script(os.path.join(ext, json_path))
    if json_path.startswith("extensions-builtin/"):
        parts = json_path.split("/")
        ext_name = "sd_forge_lora" if flavour == "forge" and parts[1] == "Lora" else parts[1]
        rest = parts[2:]
        if rest[0] in ("scripts", "preload.py") or rest[-1] == "preload.py":
            return _loaded_script(os.path.join(builtin, ext_name, *rest))
        return _import(".".join(rest)[:-3])
    if json_path == "webui.py":
        return None
    return _import(json_path[:-3].replace("/", "."))


def lookup(module, qualname: str):
    """Static lookup of "name" or "Class.attr" (descriptors are returned as-is); _UNSET when absent."""
    obj = module
    for part in qualname.split("."):
        holder = obj
        try:
            obj = inspect.getattr_static(holder, part)
        except AttributeError:
            return _UNSET
        if isinstance(holder, type(sys)) and not inspect.isclass(obj) and isinstance(obj, property):
            obj = getattr(holder, part)
    return obj


# ------------------------------------------------------------------------------------------------ comparisons
def _literal(text):
    try:
        return True, ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False, None


def _same_value(expected, actual) -> bool:
    if isinstance(actual, enum.Enum) and not isinstance(expected, enum.Enum):
        actual = actual.value
    if type(expected) is not type(actual):
        return False
    return expected == actual


def compare_params(qualname, expected: list[dict], func) -> list[str]:
    try:
        signature = inspect.signature(func, follow_wrapped=True)
    except (TypeError, ValueError) as e:
        return [f"{qualname}: no signature ({e})"]
    actual = list(signature.parameters.values())
    problems = []
    exp_names = [p["name"] for p in expected]
    act_names = [p.name for p in actual]
    if exp_names != act_names:
        return [f"{qualname}: parameters {act_names} != real {exp_names}"]
    for exp, act in zip(expected, actual, strict=False):
        if exp["kind"].upper() != act.kind.name:
            problems.append(f"{qualname}({act.name}): kind {act.kind.name} != real {exp['kind'].upper()}")
        has_default = act.default is not inspect.Parameter.empty
        if ("default" in exp) != has_default:
            problems.append(f"{qualname}({act.name}): default {'present' if has_default else 'missing'}, real "
                            f"{'has ' + exp['default'] if 'default' in exp else 'has none'}")
            continue
        if "default" in exp and exp.get("default_is_literal"):
            ok, value = _literal(exp["default"])
            if ok and not _same_value(value, act.default):
                problems.append(f"{qualname}({act.name}): default {act.default!r} != real {exp['default']}")
    return problems


def _raw_function(obj):
    if isinstance(obj, (staticmethod, classmethod)):
        return obj.__func__
    return obj


def compare_function(qualname, entry, obj) -> list[str]:
    if isinstance(obj, property):
        problems = compare_params(qualname, entry["params"], obj.fget)
        setters = [o for o in entry.get("overloads", []) if any(".setter" in d for d in o.get("decorators", []))]
        if setters and obj.fset is not None:
            problems += compare_params(qualname + ".setter", setters[0]["params"], obj.fset)
        return problems
    func = _raw_function(obj)
    if inspect.isclass(func) or not callable(func):
        return [f"{qualname}: is {type(obj).__name__}, real is a function"]
    return compare_params(qualname, entry["params"], func)


def _own_fields(entry) -> list[dict]:
    return [f for f in entry.get("annotated_fields", []) if not str(f.get("annotation", "")).startswith("ClassVar")]


def _field_default_ok(exp_default, has_default, default, factory) -> str | None:
    """None if the runtime default matches the JSON default text, else a description of the difference."""
    if exp_default is None:
        return None if not has_default else "has a default, real has none"
    if exp_default.startswith("factory:") or "default_factory" in exp_default:
        wanted = exp_default.split(":", 1)[1] if exp_default.startswith("factory:") else \
            exp_default.split("default_factory=")[1].rstrip(")")
        return None if getattr(factory, "__name__", None) == wanted else f"factory {factory!r} != real {wanted}"
    if not has_default:
        return f"no default, real {exp_default}"
    if isinstance(default, property):  # sd_model / mask_blur: the property object shadows the field's default
        return None
    ok, value = _literal(exp_default)
    if ok:
        return None if _same_value(value, default) else f"default {default!r} != real {exp_default}"
    if isinstance(default, enum.Enum):
        text = f"{type(default).__name__}.{default.name}"
        return None if text == exp_default else f"default {text} != real {exp_default}"
    return None  # an expression: presence is all that can be compared


def _dataclass_fields(cls):
    own = list(cls.__dict__.get("__annotations__", {}))
    fields = {f.name: f for f in dataclasses.fields(cls)}
    res = []
    for name in own:
        f = fields.get(name)
        if f is None:
            continue
        has_default = f.default is not dataclasses.MISSING
        factory = f.default_factory if f.default_factory is not dataclasses.MISSING else None
        res.append((name, f.init, has_default or factory is not None, f.default if has_default else None, factory))
    return res


def _pydantic_fields(cls):
    res = []
    for name, mf in cls.__fields__.items():
        factory = getattr(mf, "default_factory", None)
        res.append((name, True, True, mf.default, factory))
    return res


def _annotation_fields(cls):
    return [(name, True, False, None, None) for name in cls.__dict__.get("__annotations__", {})]


def compare_fields(qualname, entry, cls) -> list[str]:
    bases = entry.get("bases", [])
    decorators = entry.get("decorators", [])
    if any("dataclass" in d for d in decorators) and dataclasses.is_dataclass(cls):
        actual = _dataclass_fields(cls)
    elif "BaseModel" in bases and hasattr(cls, "__fields__"):
        actual = _pydantic_fields(cls)
    elif "TypedDict" in bases or "NamedTuple" in bases:
        actual = _annotation_fields(cls)
    else:
        return []
    expected = _own_fields(entry)
    if [f["name"] for f in expected] != [a[0] for a in actual]:
        return [f"{qualname}: fields {[a[0] for a in actual]} != real {[f['name'] for f in expected]}"]
    problems = []
    for exp, (name, init, has_default, default, factory) in zip(expected, actual, strict=False):
        if bool(exp.get("init", True)) != init:
            problems.append(f"{qualname}.{name}: init={init}, real init={exp.get('init')}")
        if "TypedDict" in bases or "NamedTuple" in bases:
            continue
        diff = _field_default_ok(exp.get("default"), has_default, default, factory)
        if diff:
            problems.append(f"{qualname}.{name}: {diff}")
    return problems


def compare_class_attributes(qualname, entry, cls) -> list[str]:
    problems = []
    for attr in entry.get("class_attributes", []):
        ok, value = _literal(attr["value"])
        if not ok:
            continue
        try:
            actual = inspect.getattr_static(cls, attr["name"])
        except AttributeError:
            continue
        if isinstance(actual, (staticmethod, classmethod, property)) or callable(actual) and not isinstance(
                actual, enum.Enum):
            continue
        if not _same_value(value, actual):
            problems.append(f"{qualname}.{attr['name']}: {actual!r} != real {attr['value']}")
    return problems


def compare_variable(qualname, entry, obj) -> list[str]:
    ok, value = _literal(entry.get("value", ""))
    if not ok or value is None:
        return []
    simple = isinstance(value, (str, int, float, bool))
    str_list = isinstance(value, (list, tuple)) and value and all(isinstance(x, str) for x in value)
    if not (simple or str_list):
        return []
    if str_list and isinstance(obj, (list, tuple)):
        return [] if list(obj) == list(value) else [f"{qualname}: {obj!r} != real {entry['value']}"]
    return [] if _same_value(value, obj) else [f"{qualname}: {obj!r} != real {entry['value']}"]


def compare_entry(qualname: str, entry: dict, obj) -> list[str]:
    kind = entry.get("type")
    if kind == "function":
        return compare_function(qualname, entry, obj)
    if kind == "class":
        if not inspect.isclass(obj):
            return [f"{qualname}: is {type(obj).__name__}, real is a class"]
        return compare_fields(qualname, entry, obj) + compare_class_attributes(qualname, entry, obj)
    if kind == "variable":
        return compare_variable(qualname, entry, obj)
    return []


def compare_module(module, entries: dict) -> tuple[list[str], int]:
    """(mismatches, number of entries compared) for every JSON entry the double's module defines."""
    problems, compared = [], 0
    for qualname, entry in entries.items():
        obj = lookup(module, qualname)
        if obj is _UNSET:
            continue
        compared += 1
        problems += compare_entry(qualname, entry, obj)
    return problems, compared
