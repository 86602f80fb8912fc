"""Command line for garments and try-on (issue 13): `python -m easyphoto garment ...` and `python -m easyphoto tryon`.

    garment add --id suit photo1.jpg photo2.jpg --mask photo1.jpg=mask1.png
    garment mask --id suit photo2.jpg mask2.png          garment points --id suit photo2.jpg --point 200,310
    garment dataset --id suit --set category=upper       garment captions --id suit --set-caption train/0.png="..."
    garment train --id suit --base sd15.safetensors      garment list / garment delete --id suit
    tryon --garment suit person.jpg --out results/ --mask person-mask.png
    tryon --backend leffa --garment-image shirt.jpg person.jpg --out results/   (any garment, no training; issue 15)
    model mannequin.jpg --out results/ --garment suit --set gender=man        (the digital model, issue 14)
    model mannequin.jpg --pose-only > pose.json                               model shot.jpg --out r/ --set mode=scene

The same operations as the Try-On tab and the REST API, through the same job queue (easyphoto.common.run_job). Every
input that can be checked here is checked before a job is submitted: the garment exists (and is trained, for tryon),
its id is not an identity's, the mask source has what it needs (a mask file, clicks, the parser's or segmenter's
files).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from easyphoto import cli_common as common
from easyphoto.context import AppContext
from easyphoto.errors import EasyPhotoError

TRYON_BACKENDS = ("lora", "leffa", "catvton", "ootd")  # lora: a trained garment; the others: zero-shot (issue 15)


class CommandLineError(EasyPhotoError):
    """A command-line value that cannot be used (a malformed --point, a --mask without its file, ...)."""

    phase = "cli"
    http_status = 422


def add_tryon_commands(commands) -> None:
    """Register `garment` (with its actions) and `tryon` on cli.build_parser's subcommands; the helpers both share
    (--config/--set, run_job, the base check, tables) are in easyphoto.cli_common."""
    garment = commands.add_parser("garment", help="garments for try-on: photos, masks, dataset, captions, training")
    actions = garment.add_subparsers(dest="garment_command", metavar="ACTION", required=True)
    _add_photo_actions(actions)
    _add_dataset_actions(actions)
    _add_train_action(actions)
    listing = actions.add_parser("list", help="every garment: photos, masks, dataset images, category, LoRA")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(run=_garment_list)
    delete = actions.add_parser("delete", help="delete a garment: its folder and the LoRA EasyPhoto exported for it")
    delete.add_argument("--id", required=True, dest="garment_id", help="garment id")
    delete.set_defaults(run=_garment_delete)
    _add_tryon_command(commands)
    _add_model_command(commands)


def _add_photo_actions(actions) -> None:
    add = actions.add_parser("add", help="add photos of a garment (created when new), with masks if you have them")
    add.add_argument("--id", required=True, dest="garment_id", help="garment id (created when new)")
    add.add_argument("photos", nargs="+", metavar="PHOTO", help="photo files of the garment")
    add.add_argument("--mask", action="append", default=[], metavar="PHOTO_NAME=MASKFILE",
                     help="the garment's mask for one photo (white = garment); PHOTO_NAME is the file's name "
                          "(repeatable)")
    add.set_defaults(run=_garment_add)
    mask = actions.add_parser("mask", help="upload the garment mask of one photo (replaces an earlier one)")
    mask.add_argument("--id", required=True, dest="garment_id", help="garment id")
    mask.add_argument("photo", metavar="PHOTO_NAME", help="the photo's name in the garment")
    mask.add_argument("mask", metavar="MASKFILE", help="mask image: the garment white (or opaque), the rest black")
    mask.set_defaults(run=_garment_mask)
    points = actions.add_parser("points", help="clicks and boxes that select the garment in one photo "
                                               "(mask source 'points')")
    points.add_argument("--id", required=True, dest="garment_id", help="garment id")
    points.add_argument("photo", metavar="PHOTO_NAME", help="the photo's name in the garment")
    _add_click_options(points)
    points.set_defaults(run=_garment_points)


def _add_click_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--point", action="append", default=[], metavar="X,Y[,neg]",
                        help="a click in photo pixels; ',neg' marks a point that is NOT the garment (repeatable)")
    parser.add_argument("--box", action="append", default=[], metavar="X0,Y0,X1,Y1",
                        help="a box around the garment in photo pixels (repeatable)")


def _add_dataset_actions(actions) -> None:
    dataset = actions.add_parser("dataset", help="build the garment dataset: cut out onto white, crops, captions; "
                                                 "says which photos were kept and why the others were dropped")
    dataset.add_argument("--id", required=True, dest="garment_id", help="garment id")
    common.add_config_options(dataset, "GarmentDatasetConfig", "--set category=dress --set mask_source=mask")
    dataset.set_defaults(run=_garment_dataset)
    captions = actions.add_parser("captions", help="show the dataset's captions; edit one with --set-caption")
    captions.add_argument("--id", required=True, dest="garment_id", help="garment id")
    captions.add_argument("--set-caption", action="append", default=[], metavar="FILE=TEXT",
                          help="replace the caption of one training image, e.g. train/0.png='suit_garment, top' "
                               "(repeatable)")
    captions.set_defaults(run=_garment_captions)


def _add_train_action(actions) -> None:
    train = actions.add_parser("train", help="(re)build the dataset when out of date, then train the garment LoRA")
    train.add_argument("--id", required=True, dest="garment_id", help="garment id (created when photos are given)")
    train.add_argument("photos", nargs="*", metavar="PHOTO", help="photo files to add first (none: the garment's)")
    train.add_argument("--base", help="base checkpoint: an SD 1.5 .safetensors file or diffusers folder (default: "
                                      "the one in models/Stable-diffusion)")
    train.add_argument("--config-dir", help="diffusers config folder for a single-file base (default: shipped SD 1.5)")
    train.add_argument("--resume", action="store_true", help="continue from the garment's last checkpoint")
    train.add_argument("--dataset-config", help="JSON file with GarmentDatasetConfig values (default: the settings "
                                                "the current dataset was built with)")
    train.add_argument("--dataset-set", action="append", default=[], metavar="KEY=VALUE",
                       help="one GarmentDatasetConfig value, e.g. --dataset-set category=dress (repeatable)")
    common.add_config_options(train, "TrainConfig", "--set rank=32 --set steps_per_photo=100")
    train.set_defaults(run=_garment_train)


def _add_tryon_command(commands) -> None:
    tryon = commands.add_parser("tryon", help="put a trained garment (or, with --backend leffa|catvton|ootd, any "
                                              "garment photo) on a person photo")
    tryon.add_argument("--backend", choices=TRYON_BACKENDS, default="lora",
                       help="lora (default): the garment's trained LoRA; leffa (MIT), catvton or ootd (CC BY-NC-SA: "
                            "non-commercial only, need the opt-in setting allow_noncommercial_tryon): any garment "
                            "photo without training")
    tryon.add_argument("--garment", dest="garment_id", help="the trained garment (lora); with a zero-shot backend, "
                                                            "any stored garment whose photo is the garment")
    tryon.add_argument("--garment-image", help="zero-shot backends: the garment photo (a product shot on white works "
                                               "best); used instead of --garment's photo")
    tryon.add_argument("--category", help="the garment's category (upper, lower, dress, ...); lora: default the "
                                          "garment's own")
    tryon.add_argument("person", metavar="PERSON", help="the person photo")
    tryon.add_argument("--out", required=True, help="folder for the results")
    tryon.add_argument("--mask", help="the garment region in the person photo (white); implies mask_source 'mask'")
    _add_click_options(tryon)  # either implies mask_source 'points'
    tryon.add_argument("--base", help="lora: the SD 1.5 base model the garment was trained on (default: the one in "
                                      "models/Stable-diffusion)")
    tryon.add_argument("--config-dir", help="lora: diffusers config folder for a single-file base (default: shipped "
                                            "SD 1.5)")
    common.add_config_options(tryon, "TryOnConfig (lora) or AnyGarmentConfig (zero-shot)",
                              "--set seed=42 --set mask_source=parsing, or --set steps=20 --set work_size=512")
    tryon.set_defaults(run=_tryon)


def _add_model_command(commands) -> None:
    model = commands.add_parser("model", help="the digital model: keep a garment, regenerate the model (mannequin "
                                              "or half-body to model), the outfit, the scene or the pose")
    model.add_argument("person", metavar="PHOTO", nargs="?", help="the photo of the garment (a pose swap may go "
                                                                  "without one)")
    model.add_argument("--out", help="folder for the results (needed unless --pose-only)")
    model.add_argument("--garment", dest="garment_id", help="the garment's trained LoRA (needed for mode=pose)")
    model.add_argument("--outfit", dest="outfit_id", help="mode=outfit: the trained garment for outfit_category")
    model.add_argument("--outfit-image", help="mode=outfit with outfit_backend leffa/catvton/ootd: the other garment's "
                                              "photo (no training)")
    model.add_argument("--identity", dest="identity_id", help="a trained identity as the model (its LoRA and face)")
    model.add_argument("--skeleton", help="OpenPose JSON file: the model's pose (as --pose-only prints it, edited) "
                                          "or, with mode=pose, the new pose")
    model.add_argument("--pose-photo", help="mode=pose: take the pose of this photo")
    model.add_argument("--pose-only", action="store_true", help="print the completed pose as JSON (skeleton, joints "
                                                                "placed, padding) and generate nothing")
    model.add_argument("--mask", help="the kept garment in the photo (white); implies mask_source 'mask'")
    _add_click_options(model)
    model.add_argument("--base", help="the SD 1.5 base model (default: the one in models/Stable-diffusion)")
    model.add_argument("--config-dir", help="diffusers config folder for a single-file base (default: shipped SD 1.5)")
    common.add_config_options(model, "DigitalModelConfig", "--set mode=scene --set gender=man")
    model.set_defaults(run=_model)


# ---------------------------------------------------------------------------------------------- values


def parse_point(text: str) -> tuple[float, float, bool]:
    """'x,y' (a click on the garment) or 'x,y,neg' (a click that is not) → (x, y, positive)."""
    parts = [p.strip() for p in text.split(",")]
    flag = parts[2].lower() if len(parts) == 3 else "pos"
    if len(parts) not in (2, 3) or flag not in ("pos", "neg"):
        raise CommandLineError(f"--point {text!r}: expected X,Y or X,Y,neg.", hint="e.g. --point 120,340 or "
                               "--point 40,30,neg for a click outside the garment.")
    x, y = _numbers(parts[:2], f"--point {text!r}")
    return x, y, flag == "pos"


def parse_box(text: str) -> tuple[float, float, float, float]:
    parts = text.split(",")
    if len(parts) != 4:
        raise CommandLineError(f"--box {text!r}: expected X0,Y0,X1,Y1.", hint="e.g. --box 30,300,280,512.")
    x0, y0, x1, y1 = _numbers(parts, f"--box {text!r}")
    return x0, y0, x1, y1


def _numbers(parts: list[str], what: str) -> list[float]:
    try:
        return [float(p) for p in parts]
    except ValueError:
        raise CommandLineError(f"{what}: the coordinates must be numbers (photo pixels).",
                               hint="e.g. --point 120,340.") from None


def _pairs(values: list[str], option: str, example: str) -> list[tuple[str, str]]:
    """NAME=VALUE options split at the first '='."""
    pairs = []
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name.strip() or not rest:
            raise CommandLineError(f"{option} {value!r}: expected {example}.", hint=f"e.g. {option} {example}.")
        pairs.append((name.strip(), rest))
    return pairs


def _existing_file(path: str, what: str) -> Path:
    file = Path(path).expanduser()
    if not file.is_file():
        raise CommandLineError(f"The {what} {path} is not a file.", hint=f"Pass the path of the {what}.")
    return file.resolve()


def _config(base, config_file: str | None, pairs: list[str], command: str, option: str = "--set"):
    """`base` (a config class: its defaults; or a config made already), then the values the --config file gives,
    then each KEY=VALUE of `option`."""
    base = base() if isinstance(base, type) else base
    given = _config_file_keys(type(base), config_file)
    if given:
        loaded = common.load_config(type(base), config_file)
        base = base.updated(**{k: v for k, v in loaded.to_dict().items() if k in given})
    try:
        return common.with_overrides(base, pairs, command)
    except EasyPhotoError as exc:
        if option != "--set":  # with_overrides' message names --set: say the option the value came from
            exc.message = exc.message.replace("--set ", f"{option} ")
        raise


def _config_file_keys(cls, config_file: str | None) -> set[str]:
    """The fields a --config file sets (the others are no choice: they keep what they were); a file that is not
    a valid `cls` is one line naming it, as on every command."""
    from easyphoto.store import read_json

    if not config_file:
        return set()
    common.load_config(cls, config_file)
    return set(read_json(Path(config_file))) - {"config_version"}


# ---------------------------------------------------------------------------------------------- photos and masks


def _existing_garment(ctx: AppContext, garment_id: str):
    return ctx.garments.get(garment_id)  # InvalidGarmentId / GarmentNotFound, naming the known garments


def _new_or_existing(ctx: AppContext, garment_id: str) -> None:
    """A bad id, or an identity's id for a new garment, said before any file is read."""
    if not ctx.garments.exists(garment_id):
        ctx.garments.check_id_free(garment_id)


def _garment_add(ctx: AppContext, args: argparse.Namespace) -> int:
    from easyphoto.tryon import garments

    _new_or_existing(ctx, args.garment_id)
    masks = [(name, _existing_file(file, "mask")) for name, file in
             _pairs(args.mask, "--mask", "photo.jpg=photo-mask.png")]
    given = {Path(p).name for p in args.photos}
    unknown = [name for name, _ in masks if name not in given]
    if unknown and not ctx.garments.exists(args.garment_id):
        raise CommandLineError(f"--mask {unknown[0]}=...: no photo of that name is being added.",
                               hint=f"Name one of: {', '.join(sorted(given))}.")
    added = garments.add_photos(ctx, args.garment_id, args.photos)
    print(f"{args.garment_id}: {added.summary()}")
    stored = _stored_names(ctx, args.garment_id, args.photos)
    for name, file in masks:
        target = garments.add_mask(ctx, args.garment_id, stored.get(name, name), file)
        print(f"{args.garment_id}: mask of {stored.get(name, name)} stored ({target.name})")
    return 0


def _stored_names(ctx: AppContext, garment_id: str, files: list[str]) -> dict[str, str]:
    """A given file's name → the name its content is stored under (a taken name gets -2, a duplicate the first)."""
    from easyphoto.store import file_digest, photo_digests

    digests = photo_digests(ctx.garments.get(garment_id))
    return {Path(f).name: digests.get(file_digest(Path(f)), Path(f).name) for f in files}


def _garment_mask(ctx: AppContext, args: argparse.Namespace) -> int:
    from easyphoto.tryon import garments

    _existing_garment(ctx, args.garment_id)
    target = garments.add_mask(ctx, args.garment_id, args.photo, _existing_file(args.mask, "mask"))
    print(f"{args.garment_id}: mask of {args.photo} stored ({target})")
    return 0


def _garment_points(ctx: AppContext, args: argparse.Namespace) -> int:
    from easyphoto.segment.types import Point
    from easyphoto.tryon import garments

    _existing_garment(ctx, args.garment_id)
    points = [Point(*parse_point(p)) for p in args.point]
    boxes = [parse_box(b) for b in args.box]
    if not any(p.positive for p in points) and not boxes:
        raise CommandLineError("Give at least one --point on the garment (X,Y) or a --box around it.",
                               hint="e.g. --point 200,310 --box 30,300,280,512.")
    prompts = garments.set_points(ctx, args.garment_id, args.photo, points, boxes)
    print(f"{args.garment_id}: {len(prompts.points)} click(s) and {len(prompts.boxes)} box(es) for {args.photo}")
    return 0


# ---------------------------------------------------------------------------------------------- dataset, captions


def _garment_dataset(ctx: AppContext, args: argparse.Namespace) -> int:
    from easyphoto.tryon.dataset import GarmentDatasetConfig

    layout = _existing_garment(ctx, args.garment_id)
    config = _config(GarmentDatasetConfig, args.config, args.set, "garment dataset")
    try:
        result = common.run_job(ctx, "garment_dataset", {"garment_id": args.garment_id, "dataset": config.to_dict()})
    except EasyPhotoError:
        _print_report(layout)  # nothing kept: the report says why each photo was dropped
        raise
    _print_report(layout)
    print(f"\n{result['kept']} of {result['total']} photos kept; dataset in {layout.dataset}; "
          f"captions: {result.get('tagger') or 'trigger and category words'}")
    return 0


def _print_report(layout) -> None:
    from easyphoto.store import read_json

    if not layout.report.is_file():
        return
    photos = read_json(layout.report).get("photos", [])
    rows = [(p["file"], "kept" if p["kept"] else "dropped", p.get("mask_source") or "",
             "" if p.get("garment_fraction") is None else f"{p['garment_fraction']:.1%}",
             "; ".join(filter(None, [p.get("reason", ""), *p.get("notes", [])])))
            for p in photos]
    common.print_table(("photo", "decision", "mask", "garment", "reason / notes"), rows)


def _garment_captions(ctx: AppContext, args: argparse.Namespace) -> int:
    from easyphoto.tryon.dataset import captions, set_caption

    layout = _existing_garment(ctx, args.garment_id)
    edits = _pairs(args.set_caption, "--set-caption", "train/0.png='suit_garment, top'")
    entries = captions(layout)  # no dataset yet: said before any edit
    for name, text in edits:
        set_caption(layout, name, text)
    if edits:
        entries = captions(layout)
    common.print_table(("image", "caption"), entries)
    return 0


# ---------------------------------------------------------------------------------------------- training


def _garment_train(ctx: AppContext, args: argparse.Namespace) -> int:
    from easyphoto.config import TrainConfig
    from easyphoto.store import check_lora_target
    from easyphoto.tryon import garments

    if args.photos:
        _new_or_existing(ctx, args.garment_id)
    else:
        _existing_garment(ctx, args.garment_id)
    layout = ctx.garments.layout(args.garment_id)
    check_lora_target(layout.lora_file, args.garment_id)  # another tool's LoRA of that name: said now, not later
    config = _config(TrainConfig, args.config, args.set, "garment train")
    dataset = _config(_recorded_dataset_config(layout), args.dataset_config, args.dataset_set, "garment train",
                      "--dataset-set")
    base = common.resolve_base(ctx, args.base, "train")
    if args.photos:
        added = garments.add_photos(ctx, args.garment_id, args.photos)
        print(f"{args.garment_id}: {added.summary()}", file=sys.stderr)
    params = {"garment_id": args.garment_id, "dataset": dataset.to_dict(), "config": config.to_dict(),
              "base": str(base), "resume": args.resume,
              "config_dir": str(Path(args.config_dir).resolve()) if args.config_dir else None}  # GarmentTrainParams
    result = common.run_job(ctx, "garment_train", params)
    _print_report(layout)
    print(json.dumps(result, indent=2))
    return 0


def _recorded_dataset_config(layout):
    """The settings the garment's dataset was built with (so that training does not rebuild it with defaults), or
    the defaults when there is none."""
    from easyphoto.store import read_json
    from easyphoto.tryon.dataset import GarmentDatasetConfig

    record = layout.dataset / "dataset.json"
    if not record.is_file():
        return GarmentDatasetConfig()
    settings = read_json(record).get("settings") or {}
    known = GarmentDatasetConfig().to_dict()
    try:
        return GarmentDatasetConfig.from_dict({k: v for k, v in settings.items() if k in known})
    except ValueError:  # written by another version: start from the defaults
        return GarmentDatasetConfig()


# ---------------------------------------------------------------------------------------------- list, delete


def _garment_list(ctx: AppContext, args: argparse.Namespace) -> int:
    rows = [garment_summary(ctx, garment_id) for garment_id in ctx.garments.list()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    common.print_table(("id", "photos", "masks", "dataset", "category", "trained", "fidelity"),
                 [(r["id"], r["photos"], r["masks"], r["dataset_images"], r["category"] or "",
                   "yes" if r["trained"] else "no", "" if r["fidelity"] is None else f"{r['fidelity']:.3f}")
                  for r in rows])
    if not rows:
        print("\nno garments yet: `python -m easyphoto garment add --id ID PHOTO...`")
    return 0


def garment_summary(ctx: AppContext, garment_id: str) -> dict:
    """What `garment list` shows of one garment (read from its files; nothing loads)."""
    from easyphoto.store import photo_files, read_json
    from easyphoto.train.runner import dataset_images
    from easyphoto.tryon.garments import uploaded_masks

    layout = ctx.garments.layout(garment_id)
    info = read_json(layout.garment_json) if layout.garment_json.is_file() else {}
    report = read_json(layout.report) if layout.report.is_file() else {}
    scores = read_json(layout.validation / "scores.json") if (layout.validation / "scores.json").is_file() else {}
    values = [s.get("score") for s in scores.values() if isinstance(s, dict) and s.get("score") is not None]
    return {"id": garment_id, "photos": len(photo_files(layout.photos)), "masks": len(uploaded_masks(layout)),
            "dataset_images": len(dataset_images(layout.dataset)),
            "category": info.get("category") or (report.get("settings") or {}).get("category"),
            "trained": bool(info) and layout.lora_file.is_file(), "lora_file": str(layout.lora_file),
            "fidelity": max(values) if values else None}


def _garment_delete(ctx: AppContext, args: argparse.Namespace) -> int:
    for note in ctx.garments.delete(args.garment_id):
        print(f"note: {note}", file=sys.stderr)
    print(f"{args.garment_id}: deleted")
    return 0


# ---------------------------------------------------------------------------------------------- try-on


def _tryon(ctx: AppContext, args: argparse.Namespace) -> int:
    from easyphoto.config import TryOnConfig
    from easyphoto.tryon.run import require_trained_garment

    if args.backend != "lora":
        return _tryon_any(ctx, args)
    if args.garment_image or not args.garment_id:
        raise CommandLineError("--backend lora (the default) puts a trained garment on: give --garment ID"
                               + (", not --garment-image." if args.garment_image else "."),
                               hint="For a garment photo without training use --backend leffa --garment-image FILE.")
    info, _ = require_trained_garment(ctx, args.garment_id)  # unknown or untrained: before anything else
    person = _existing_file(args.person, "person photo")
    config = tryon_config(_tryon_config_of(TryOnConfig, args), args, info)
    points = [parse_point(p) for p in args.point]
    boxes = [parse_box(b) for b in args.box]
    mask = str(_existing_file(args.mask, "mask")) if args.mask else None
    _check_mask_source(ctx, config.mask_source, mask, points, boxes)
    params = {"garment_id": args.garment_id, "person": str(person), "mask": mask, "points": points, "boxes": boxes,
              "config": config.to_dict(), "out": str(Path(args.out).resolve()),
              "base": str(common.resolve_base(ctx, args.base, "tryon")),
              "config_dir": str(Path(args.config_dir).resolve()) if args.config_dir else None}  # TryOnParams
    print(json.dumps(common.run_job(ctx, "tryon", params), indent=2))
    return 0


def _category_pairs(args: argparse.Namespace) -> list[str]:
    """--set's KEY=VALUE pairs, with --category as one more."""
    return [*args.set, *([f"category={args.category}"] if getattr(args, "category", None) else [])]


def _tryon_config_of(cls, args: argparse.Namespace):
    """`cls` from --config, --set and --category; a bad --category is said naming --category."""
    try:
        return _config(cls, args.config, _category_pairs(args), "tryon")
    except EasyPhotoError as exc:
        if args.category:
            exc.message = exc.message.replace(f"--set category={args.category}", f"--category {args.category}")
        raise


def tryon_config(config, args: argparse.Namespace, garment: dict):
    """What --mask / --point / --box and the garment imply, unless --config, --set or --category chose it:
    mask_source 'mask' with --mask, 'points' with clicks; the category the garment was trained as."""
    chosen = {pair.partition("=")[0] for pair in _category_pairs(args)} | _config_file_keys(type(config), args.config)
    implied = {}
    if "mask_source" not in chosen and (args.mask or args.point or args.box):
        implied["mask_source"] = "mask" if args.mask else "points"
    if "category" not in chosen and garment.get("category"):
        implied["category"] = garment["category"]
    return config.updated(**implied) if implied else config


def _tryon_any(ctx: AppContext, args: argparse.Namespace) -> int:
    """A zero-shot try-on (tryon_any): the backend's licence line first (on stderr: stdout is the result's JSON),
    then every check (the licence opt-in, the garment, the photos, the mask source) before the job."""
    from easyphoto.job_params import AnyGarmentParams
    from easyphoto.tryon.zeroshot.registry import backend_info
    from easyphoto.tryon.zeroshot.run import check_request

    info = backend_info(args.backend)
    print(f"Licence: {info.describe_licence()}", file=sys.stderr, flush=True)
    if args.base or args.config_dir:
        raise CommandLineError(f"--base and --config-dir are for --backend lora; {args.backend} reads its own files.",
                               hint="Leave them out.")
    config = _any_garment_config(args)
    person = _existing_file(args.person, "person photo")
    garment = str(_existing_file(args.garment_image, "garment photo")) if args.garment_image else None
    points, boxes = [parse_point(p) for p in args.point], [parse_box(b) for b in args.box]
    mask = str(_existing_file(args.mask, "mask")) if args.mask else None
    params = AnyGarmentParams.checked({
        "person": str(person), "garment_image": garment, "garment_id": args.garment_id, "mask": mask,
        "points": points, "boxes": boxes, "config": config.to_dict(), "out": str(Path(args.out).resolve())})
    check_request(ctx, params)  # the opt-in for a non-commercial backend, a garment given and known
    _check_mask_source(ctx, config.mask_source, mask, points, boxes)
    print(json.dumps(common.run_job(ctx, "tryon_any", params), indent=2))
    return 0


def _any_garment_config(args: argparse.Namespace):
    """AnyGarmentConfig from --config, --set and --category, the backend from --backend (a --set or --config file
    naming another one is refused), the mask source implied by --mask or clicks."""
    from easyphoto.config import AnyGarmentConfig

    config = _tryon_config_of(AnyGarmentConfig, args)
    chosen = {pair.partition("=")[0] for pair in args.set} | _config_file_keys(AnyGarmentConfig, args.config)
    if "backend" in chosen and config.backend != args.backend:
        raise CommandLineError(f"The config says backend {config.backend!r} but --backend is {args.backend!r}.",
                               hint="Choose the backend with --backend only.")
    return tryon_config(config.updated(backend=args.backend), args, {})


def _check_mask_source(ctx: AppContext, source: str, mask: str | None, points: list, boxes: list) -> None:
    """The mask source has what it needs, said before the job: its input, and the model files it loads."""
    if source == "mask" and not mask:
        raise CommandLineError("mask_source is 'mask' but no --mask was given.",
                               hint="Pass --mask FILE (white = the garment region), or --set mask_source=parsing.")
    if mask and source != "mask":
        raise CommandLineError(f"--mask is used with mask_source 'mask', not {source!r}.",
                               hint="Leave out --set mask_source (a --mask implies 'mask'), or leave out --mask.")
    if source == "points" and not (any(p[2] for p in points) or boxes):
        raise CommandLineError("mask_source is 'points' but no --point on the garment or --box was given.",
                               hint="Pass --point X,Y on the garment (or --box X0,Y0,X1,Y1), or use another source.")
    if (points or boxes) and source != "points":
        raise CommandLineError(f"--point / --box are used with mask_source 'points', not {source!r}.",
                               hint="Leave out --set mask_source (clicks imply 'points'), or leave out the clicks.")
    from easyphoto.segment import load_parser, load_segmenter  # light: files are looked at, nothing loads

    if source == "parsing":
        load_parser(ctx.paths)  # MissingWeights naming the files and `models fetch`
    elif source == "points":
        load_segmenter(ctx.paths)


# ---------------------------------------------------------------------------------------------- digital model


def _model(ctx: AppContext, args: argparse.Namespace) -> int:
    from easyphoto.config import DigitalModelConfig
    from easyphoto.tryon.model_run import check_request

    config = _config(DigitalModelConfig, args.config, args.set, "model")
    chosen = {pair.partition("=")[0] for pair in args.set} | _config_file_keys(DigitalModelConfig, args.config)
    if "mask_source" not in chosen and (args.mask or args.point or args.box):
        config = config.updated(mask_source="mask" if args.mask else "points")
    skeleton = _existing_file(args.skeleton, "skeleton").read_text(encoding="utf-8") if args.skeleton else None
    person = str(_existing_file(args.person, "photo")) if args.person else None
    if args.pose_only:
        return _pose_only(person, config, skeleton)
    if not args.out:
        raise CommandLineError("--out is needed: the folder for the results.", hint="e.g. --out results/")
    points, boxes = [parse_point(p) for p in args.point], [parse_box(b) for b in args.box]
    mask = str(_existing_file(args.mask, "mask")) if args.mask else None
    if person:
        _check_mask_source(ctx, config.mask_source, mask, points, boxes)
    outfit_image = str(_existing_file(args.outfit_image, "outfit photo")) if args.outfit_image else None
    params = {"person": person, "garment_id": args.garment_id, "outfit_id": args.outfit_id, "outfit_image": outfit_image,
              "identity_id": args.identity_id, "mask": mask, "points": points, "boxes": boxes, "skeleton": skeleton,
              "pose_photo": str(_existing_file(args.pose_photo, "pose photo")) if args.pose_photo else None,
              "config": config.to_dict(), "out": str(Path(args.out).resolve()),
              "config_dir": str(Path(args.config_dir).resolve()) if args.config_dir else None}
    from easyphoto.job_params import DigitalModelParams

    zero_shot = config.mode == "outfit" and config.outfit_backend != "lora"
    if zero_shot:  # the backend's licence before any check, as `tryon --backend` prints it
        from easyphoto.tryon.zeroshot.registry import backend_info

        print(f"Licence: {backend_info(config.outfit_backend).describe_licence()}", file=sys.stderr, flush=True)
    check_request(ctx, DigitalModelParams.checked(params))  # untrained garments, a bad skeleton: before the job
    if not zero_shot:  # a zero-shot backend brings its own weights: no SD 1.5 base
        params["base"] = str(common.resolve_base(ctx, args.base, "digital_model"))
    print(json.dumps(common.run_job(ctx, "digital_model", params), indent=2))
    return 0


def _pose_only(person: str | None, config, skeleton: str | None) -> int:
    from easyphoto.imageops import load_photo
    from easyphoto.tryon.model_run import pose_preview

    if not person:
        raise CommandLineError("--pose-only needs the photo.", hint="python -m easyphoto model PHOTO --pose-only")
    preview = pose_preview(load_photo(Path(person)).image, config, skeleton)
    print(json.dumps({k: v for k, v in preview.items() if k != "image"}, indent=2))
    return 0
