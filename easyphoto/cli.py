"""Command line: `python -m easyphoto <command>`. The same operations as the UI and the API, for batch work.

Errors the user can act on (EasyPhotoError) print as one message with a hint and exit with status 2; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from easyphoto import __version__
from easyphoto.cli_common import (  # shared with cli_tryon (garments, try-on)
    add_config_options,
    load_config,
    print_table,
    resolve_base,
    run_job,
    with_overrides,
)
from easyphoto.context import AppContext, standalone_context
from easyphoto.errors import EasyPhotoError
from easyphoto.identity_modes import TRAINING_FREE


def build_parser() -> argparse.ArgumentParser:
    from easyphoto.weights import BASE_ID, GROUPS  # the manifest module is light: no network or model imports

    groups = ", ".join(GROUPS)
    parser = argparse.ArgumentParser(
        prog="python -m easyphoto",
        description="EasyPhoto: identity LoRA training and studio portraits (standalone and batch use).",
    )
    parser.add_argument("--version", action="version", version=f"EasyPhoto {__version__}")
    _add_global_options(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser("serve", help="start the web UI and REST API without the WebUI")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=7861, help="port; 0 picks a free one (default: 7861)")
    serve.add_argument("--no-ui", action="store_true", help="REST API only")
    serve.add_argument("--token", help="require 'Authorization: Bearer TOKEN' on API calls")
    serve.add_argument("--smoke", action="store_true",
                       help="start, query /health and run one queued UI event, print them and exit (1 if either fails)")
    serve.set_defaults(run=_serve)

    info = commands.add_parser("info", help="show version, folders and which optional components are installed")
    info.set_defaults(run=_info)

    photos = commands.add_parser("photos", help="check which photos of a person are usable for training")
    photos_commands = photos.add_subparsers(dest="photos_command", metavar="ACTION", required=True)
    check = photos_commands.add_parser("check", help="decide, for each photo in DIR, kept or dropped and why")
    check.add_argument("folder", metavar="DIR", help="folder of photos (read only; nothing is written there)")
    check.add_argument("--face-stack", choices=["auto", "insightface", "dlib", "mediapipe"], default=None,
                       help="face models to use (default: the setting, normally auto)")
    check.add_argument("--max-photos", type=int, default=None, help="keep at most this many")
    add_config_options(check, "TrainConfig", "--set min_face_px=96 --set identity_check=false")
    check.add_argument("--json", action="store_true", help="print the full report as JSON")
    check.set_defaults(run=_photos_check)
    remove = photos_commands.add_parser("remove", help="delete photos of an identity by their names in its report")
    remove.add_argument("--id", required=True, dest="identity_id", help="identity id")
    remove.add_argument("names", nargs="+", metavar="NAME", help="photo names as the report shows them")
    remove.set_defaults(run=_photos_remove)

    train = commands.add_parser("train", help="add photos to an identity, check them, prepare the dataset, train")
    train.add_argument("--id", required=True, dest="identity_id", help="identity id (created when new)")
    train.add_argument("photos", nargs="*", metavar="PHOTO", help="photo files to add (none: use the identity's)")
    train.add_argument("--base", help="base checkpoint: an SD 1.5 .safetensors file or diffusers folder (default: "
                                      f"models/Stable-diffusion/v1-5-pruned-emaonly.safetensors, `models fetch {BASE_ID}`)")
    train.add_argument("--config-dir", help="diffusers config folder for a single-file base (default: shipped SD 1.5)")
    train.add_argument("--resume", action="store_true", help="continue from the identity's last checkpoint")
    add_config_options(train, "TrainConfig", "--set rank=64 --set low_vram=true")
    train.set_defaults(run=_train)

    portrait = commands.add_parser("portrait", help="make portraits of identities from template photos")
    portrait.add_argument("--id", required=True, action="append", dest="identity_ids",
                          help="identity to render (repeat for several people in one template)")
    portrait.add_argument("templates", nargs="+", metavar="TEMPLATE",
                          help="template photo files, or gallery names such as user/studio.png")
    portrait.add_argument("--face", type=int, action="append", dest="face_indices", metavar="N",
                          help="template face number (left to right, from 0) per --id, in the same order "
                               "(default: the largest faces)")
    portrait.add_argument("--out", required=True, help="folder for the results")
    portrait.add_argument("--base", help="the SD 1.5 base model the identities were trained on (default: the one in "
                                         "models/Stable-diffusion, as for train)")
    portrait.add_argument("--config-dir", help="diffusers config folder for a single-file base (default: shipped SD 1.5)")
    add_config_options(portrait, "PortraitConfig", "--set seed=42 --set second_pass=false")
    portrait.set_defaults(run=_portrait)

    compare = commands.add_parser("portrait-compare", help="one template rendered with an identity's LoRA and "
                                                           "training-free, both likeness scores side by side")
    compare.add_argument("--id", required=True, dest="identity_id", help="a trained identity")
    compare.add_argument("template", metavar="TEMPLATE", help="a template photo file, or a gallery name")
    compare.add_argument("--face", type=int, dest="face_index", metavar="N",
                         help="template face number (left to right, from 0; default: the largest)")
    compare.add_argument("--mode", dest="training_free_mode", choices=TRAINING_FREE,
                         help="the training-free method (CompareConfig.training_free_mode; default faceid)")
    compare.add_argument("--identity-weight", type=float, help="weight of its unit(s) (default 0.8)")
    compare.add_argument("--out", required=True, help="folder for both portraits")
    compare.add_argument("--base", help="the base model the identity was trained on (standalone)")
    compare.add_argument("--config-dir", help="diffusers config folder for a single-file base")
    add_config_options(compare, "PortraitConfig", "--set seed=42")
    compare.set_defaults(run=_portrait_compare)

    models = commands.add_parser("models", help="model files: what is present and where missing ones go")
    models_commands = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    listing = models_commands.add_parser("list", help="list every model file: the feature that needs it, its state")
    listing.add_argument("--group", help=f"only this group ({groups})")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(run=_models_list)
    fetching = models_commands.add_parser("fetch", help="download missing model files (resumable, checksum-verified)")
    fetching.add_argument("ids", nargs="*", metavar="ID", help="model ids (default: every model, or --group's)")
    fetching.add_argument("--group", help=f"only this group ({groups})")
    fetching.add_argument("--json", action="store_true", help="machine-readable output")
    fetching.set_defaults(run=_models_fetch)
    verifying = models_commands.add_parser("verify", help="hash model files on disk and compare with the manifest")
    verifying.add_argument("ids", nargs="*", metavar="ID", help="model ids (default: every model, or --group's)")
    verifying.add_argument("--group", help=f"only this group ({groups})")
    verifying.add_argument("--json", action="store_true", help="machine-readable output")
    verifying.set_defaults(run=_models_verify)
    from easyphoto.cli_tryon import add_tryon_commands  # garment and tryon (issue 13), with this module's helpers

    add_tryon_commands(commands)
    from easyphoto.cli_design import add_design_commands  # design from a layout (issue 16)

    add_design_commands(commands)
    from easyphoto.cli_worker import add_worker_command  # distributed workers (issue 18)

    add_worker_command(commands)
    _accept_global_options_after_commands(parser)
    return parser


_GLOBAL_OPTIONS = (
    ("--data-dir", {"help": "data folder (default: $EASYPHOTO_DATA_DIR or ~/easyphoto)"}),
    ("--models-dir", {"help": "models folder (default: <data dir>/models)"}),
    ("--offline", {"action": "store_true", "help": "never touch the network"}),
    ("--broker", {"help": "Redis URL of a distributed job queue, e.g. redis://host:6379/0 (default: $EASYPHOTO_BROKER;"
                          " none: jobs run in this process; see docs/scale-out.md)"}),
)


def _add_global_options(parser: argparse.ArgumentParser, suppress: bool = False) -> None:
    for flag, options in _GLOBAL_OPTIONS:
        # SUPPRESS on subcommands: an option not given there leaves the value parsed before the command alone.
        parser.add_argument(flag, **options, **({"default": argparse.SUPPRESS} if suppress else {}))


def _accept_global_options_after_commands(parser: argparse.ArgumentParser) -> None:
    """`serve --data-dir X` as well as `--data-dir X serve` (run-standalone.sh passes its arguments after `serve`);
    given in both places, the later one wins. Walks every (nested) subcommand, so new ones get them too."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases share one parser
                _add_global_options(sub, suppress=True)
                _accept_global_options_after_commands(sub)


def main(argv: Sequence[str] | None = None) -> int:
    from easyphoto.cli_design import with_default_action

    args = build_parser().parse_args(with_default_action(list(sys.argv[1:] if argv is None else argv)))
    ctx = standalone_context(args.data_dir, args.models_dir, args.offline, args.broker)
    try:
        return int(args.run(ctx, args) or 0)
    except EasyPhotoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if getattr(exc, "report", ""):  # a job failed with a bug (run_job): what to paste into an issue
            print(f"\nThis is a bug in EasyPhoto; copy this report into an issue:\n\n{exc.report}", file=sys.stderr)
        return 2


def _serve(ctx: AppContext, args: argparse.Namespace) -> int:
    from easyphoto.app import serve

    return serve(ctx, host=args.host, port=args.port, with_ui=not args.no_ui, token=args.token, smoke=args.smoke)


def _info(ctx: AppContext, _args: argparse.Namespace) -> int:
    import importlib.util

    components = ["torch", "diffusers", "peft", "gradio", "onnxruntime", "dlib", "mediapipe", "cv2"]
    found = {name: importlib.util.find_spec(name) is not None for name in components}
    print(json.dumps({**ctx.describe(), "components": found}, indent=2))
    return 0


def _photos_check(ctx: AppContext, args: argparse.Namespace) -> int:
    from pathlib import Path

    from easyphoto.config import TrainConfig
    from easyphoto.face import stacks
    from easyphoto.train.photos import IMAGE_SUFFIXES, list_photos, looks_like_image, select_photos

    folder = Path(args.folder)
    if not folder.is_dir():
        raise EasyPhotoError(f"{folder} is not a folder.", hint="Pass the folder that holds the photos.", phase="photos")
    config = _command_config(TrainConfig, args)
    config = _options_config(config, {"max_photos": ("--max-photos", args.max_photos)})
    files = list_photos(folder)
    if not any(looks_like_image(f) for f in files):
        found = f"{len(files)} other file{'s' if len(files) != 1 else ''}" if files else "it is empty"
        raise EasyPhotoError(f"no image files in {folder} ({found}).", phase="photos",
                             hint=f"Supported extensions: {', '.join(sorted(IMAGE_SUFFIXES))}.")
    stack = stacks.load(args.face_stack or ctx.settings.face_stack, ctx.paths)
    report = select_photos(files, stack, config, max_megapixels=ctx.settings.max_upload_megapixels)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    rows = [
        (d.file, "kept" if d.kept else "dropped", "" if d.similarity is None else f"{d.similarity:.2f}",
         f"{d.quality.face_px:.0f}" if d.quality else "", "; ".join(filter(None, [d.reason, *d.notes])))
        for d in report.decisions
    ]
    print_table(("photo", "decision", "similarity", "face px", "reason / notes"), rows)
    print(f"\n{len(report.kept)} of {len(report.decisions)} kept; reference face: {report.reference or 'none'}; "
          f"face stack: {stack.name}")
    return 0 if report.kept else 1


def _options_config(config, options: dict):
    """`config` with command-line options {field: (flag, value)}; a rejected value is one line naming the flag."""
    values = {name: value for name, (_, value) in options.items() if value is not None}
    try:
        return config.updated(**values)
    except ValueError as exc:  # pydantic's ValidationError on both major versions
        errors = exc.errors() if hasattr(exc, "errors") else []
        first = errors[0] if errors else {"loc": (), "msg": str(exc)}
        name = next((str(part) for part in first.get("loc", ()) if str(part) in options), None)
        flag, value = options[name] if name else ("an option", None)
        raise EasyPhotoError(f"{flag} {value}: {first.get('msg', 'invalid value')}.", phase="photos",
                             hint="See `python -m easyphoto photos check --help`.") from None


def _photos_remove(ctx: AppContext, args: argparse.Namespace) -> int:
    from easyphoto.store import photo_files
    from easyphoto.train import prepare

    removed = prepare.remove_photos(ctx, args.identity_id, args.names)
    left = len(photo_files(ctx.identities.get(args.identity_id).photos))
    print(f"{args.identity_id}: removed {', '.join(removed)}; {left} photo{'' if left == 1 else 's'} left")
    return 0


def _command_config(cls, args: argparse.Namespace):
    """The command's config: defaults, then the --config file, then each --set."""
    command = " ".join(filter(None, (args.command, getattr(args, "photos_command", None))))
    return with_overrides(load_config(cls, args.config), args.set, command)


def _train(ctx: AppContext, args: argparse.Namespace) -> int:
    from pathlib import Path

    from easyphoto.config import TrainConfig
    from easyphoto.train import prepare

    ctx.identities.layout(args.identity_id)  # a bad id is the first thing to say, before any file is looked at
    config = _command_config(TrainConfig, args)
    base = resolve_base(ctx, args.base, "train")  # before photos are copied or a job runs: it fails fast
    if args.photos:
        added = prepare.add_photos(ctx, args.identity_id, args.photos)
        print(f"{args.identity_id}: {added.summary()}", file=sys.stderr)
    # Plain dicts of job_params fields: submit validates them once, into PrepareDatasetParams / TrainParams.
    params = {"identity_id": args.identity_id, "config": config.to_dict()}
    if not args.resume:
        dataset = run_job(ctx, "prepare_dataset", params)
        print(f"{args.identity_id}: {dataset['images']} training images in "
              f"{ctx.identities.get(args.identity_id).dataset}")
    config_dir = str(Path(args.config_dir).resolve()) if args.config_dir else None
    result = run_job(ctx, "train", {**params, "base": str(base), "resume": args.resume, "config_dir": config_dir})
    print(json.dumps(result, indent=2))
    return 0


def _portrait(ctx: AppContext, args: argparse.Namespace) -> int:
    from pathlib import Path

    from easyphoto.config import PortraitConfig

    config = _command_config(PortraitConfig, args)
    from easyphoto.portrait.run import require_ready

    for identity_id in args.identity_ids:
        require_ready(ctx, identity_id, config.identity_mode)  # unknown or not ready: before any job or model load
    templates = [t if not Path(t).exists() and "/" in t and not Path(t).is_absolute() else str(Path(t).resolve())
                 for t in args.templates]  # gallery names stay names
    params = {"identity_ids": args.identity_ids, "templates": templates, "face_indices": args.face_indices,
              "config": config.to_dict(), "out": str(Path(args.out).resolve()),
              "base": str(resolve_base(ctx, args.base, "portrait")),
              "config_dir": str(Path(args.config_dir).resolve()) if args.config_dir else None}  # PortraitParams
    print(json.dumps(run_job(ctx, "portrait", params), indent=2))
    return 0


def _portrait_compare(ctx: AppContext, args: argparse.Namespace) -> int:
    from pathlib import Path

    from easyphoto.config import CompareConfig, PortraitConfig
    from easyphoto.job_params import ComparePortraitParams
    from easyphoto.portrait.compare import check_request

    config = _command_config(PortraitConfig, args)
    template = args.template if not Path(args.template).exists() and "/" in args.template \
        and not Path(args.template).is_absolute() else str(Path(args.template).resolve())  # a gallery name stays
    given = {"training_free_mode": args.training_free_mode, "identity_weight": args.identity_weight}
    compare = CompareConfig.from_dict({k: v for k, v in given.items() if v is not None})  # its defaults otherwise
    params = ComparePortraitParams.checked({
        "identity_id": args.identity_id, "template": template, "face_index": args.face_index,
        "config": config.to_dict(), "compare": compare.to_dict(), "out": str(Path(args.out).resolve()),
        "base": str(resolve_base(ctx, args.base, "portrait")),
        "config_dir": str(Path(args.config_dir).resolve()) if args.config_dir else None}, "portrait_compare")
    check_request(ctx, params)  # untrained identity, no reference face, unknown template: before any job
    print(json.dumps(run_job(ctx, "portrait_compare", params.to_dict()), indent=2))
    return 0


def _models_list(ctx: AppContext, args: argparse.Namespace) -> int:
    from easyphoto import weights

    if args.group is not None:
        _model_ids(weights, args)  # an unknown group is an error naming the groups, not an empty table
    statuses = weights.status_all(ctx.paths, args.group)
    if args.json:
        print(json.dumps([s.to_dict() for s in statuses], indent=2))
        return 0
    rows = [(s.entry.id, ", ".join(s.entry.features), s.entry.need, s.state, s.entry.licence, s.found_at)
            for s in statuses]
    print_table(("id", "needed by", "need", "state", "licence", "path"), rows)
    missing = [s for s in statuses if s.state != "present"]
    if missing:
        required = [s for s in missing if s.entry.required]
        print(f"\n{len(missing)} missing ({len(required)} required by a feature, "
              f"{len(missing) - len(required)} optional); to add them by hand:")
        for s in missing:
            print(weights.how_to_fetch(s))
        downloadable = [s.entry.id for s in missing if s.entry.destination != "package"]
        if downloadable:
            print(f"or download them: python -m easyphoto models fetch {' '.join(downloadable)}")
    return 0


def _models_fetch(ctx: AppContext, args: argparse.Namespace) -> int:
    """Exit 0 when every requested file is in place, else 2 with the error naming each file, the sources tried
    and where to put it by hand. --offline (or the offline setting) never opens a socket. Before the first byte,
    one line per licence of the files about to be downloaded (on stderr with --json, which keeps stdout JSON).
    Non-commercial weights are downloaded only with the opt-in setting; with no ids and no --group they are left
    out with a note, named explicitly they fail saying how to opt in."""
    import os

    from easyphoto import downloads, weights

    ids = _model_ids(weights, args) if args.ids or args.group is not None else None  # None: the whole manifest
    allow = ctx.settings.allow_noncommercial_tryon
    if not ctx.offline:
        for line in weights.licence_lines(weights.to_download(ids, ctx.paths, allow_noncommercial=allow)):
            print(line, file=sys.stderr if args.json else sys.stdout, flush=True)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # ours below; the hub's own would duplicate it
    bar = downloads.ConsoleProgress(sys.stderr)
    try:
        results = weights.fetch(ids, ctx.paths, offline=ctx.offline, progress=bar, allow_noncommercial=allow)
    finally:
        bar.close()
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        print_table(("id", "result", "path", "source"),
                     [(r.entry.id, r.state, str(r.path or ""), r.source) for r in results])
        for note in dict.fromkeys(n for r in results for n in r.notes):  # a skip note is the same for many files
            print(f"note: {note}")
    weights.raise_for_failures(results)
    return 0


def _models_verify(ctx: AppContext, args: argparse.Namespace) -> int:
    """Exit 0 when nothing is corrupt (missing and unverified files are reported, not failures), 1 otherwise."""
    from easyphoto import weights

    results = weights.verify(_model_ids(weights, args), ctx.paths)
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        print_table(("id", "state", "detail", "path"), [(r.entry.id, r.state, r.detail, r.path) for r in results])
    corrupt = [r for r in results if r.state == "corrupt"]
    if corrupt and not args.json:
        print(f"\n{len(corrupt)} corrupt; `python -m easyphoto models fetch {' '.join(r.entry.id for r in corrupt)}`"
              " moves them to the quarantine folder and downloads them again.")
    return 1 if corrupt else 0


def _model_ids(weights, args: argparse.Namespace) -> list[str]:
    """Ids from the command line and --group; an unknown id or group is a user error, not a traceback."""
    try:
        return [e.id for e in weights.select(getattr(args, "ids", None) or None, args.group)]
    except KeyError as exc:
        raise EasyPhotoError(str(exc.args[0]), hint="`python -m easyphoto models list` shows ids and groups.",
                             phase="models") from None


