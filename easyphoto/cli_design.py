"""`python -m easyphoto design ...`: garment design from a semantic layout (issue 16).

    python -m easyphoto design LAYOUT.png --out DIR [--garment G] [--set route=smis --set smis_model=M]
    python -m easyphoto design train --name M --dataset FOLDER [--set steps=2000]   (the SMIS generator's training)

`design LAYOUT.png` is short for `design draw LAYOUT.png`. The layout is checked (labels outside 0–45, an empty or
unreadable layout) before any job; the result's JSON goes to stdout.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from easyphoto import cli_common as common
from easyphoto.context import AppContext
from easyphoto.errors import InvalidRequest

ACTIONS = ("draw", "train")
VALUED_OPTIONS = ("--data-dir", "--models-dir")  # the global options before a command that take a value


def add_design_commands(commands) -> None:
    design = commands.add_parser("design", help="draw a garment from a semantic layout (46 FGVC6 classes), or train "
                                                "the native layout-to-garment generator")
    actions = design.add_subparsers(dest="design_command", metavar="ACTION", required=True)
    draw = actions.add_parser("draw", help="a layout PNG → garment image(s) (default action)")
    draw.add_argument("layout", metavar="LAYOUT", help="label PNG (0–45, 255 = background) or the editor's PNG")
    draw.add_argument("--out", required=True, help="folder for the images")
    draw.add_argument("--garment", dest="garment_id", help="route diffusion: a trained garment LoRA to draw with")
    draw.add_argument("--base", help="route diffusion: the SD 1.5 base model (default: models/Stable-diffusion's)")
    draw.add_argument("--config-dir", help="diffusers config folder for a single-file base (default: shipped SD 1.5)")
    common.add_config_options(draw, "DesignConfig", "--set category=dress --set prompt='red silk'")
    draw.set_defaults(run=_draw)
    train = actions.add_parser("train", help="train (or resume) the native layout-to-garment generator (route smis)")
    train.add_argument("--name", dest="model_name", required=True, help="the design model's name")
    train.add_argument("--dataset", required=True, help="folder: images/ plus train.csv (FGVC6 RLE) or masks/*.png")
    train.add_argument("--resume", action="store_true", help="continue from the model's last checkpoint")
    train.add_argument("--overwrite", action="store_true", help="start the model again (its checkpoints are deleted)")
    train.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    common.add_config_options(train, "DesignTrainConfig", "--set steps=2000 --set image_size=256")
    train.set_defaults(run=_train)


def with_default_action(argv: list[str]) -> list[str]:
    """`design LAYOUT.png ...` → `design draw LAYOUT.png ...` (argparse has no default subcommand). Only when
    `design` is the command: the first word that is neither a global option nor its value."""
    index = 0
    while index < len(argv) and argv[index].startswith("-"):
        index += 2 if argv[index] in VALUED_OPTIONS else 1
    if index >= len(argv) or argv[index] != "design":
        return argv
    following = argv[index + 1:index + 2]
    if following and following[0] not in (*ACTIONS, "-h", "--help"):
        return [*argv[:index + 1], "draw", *argv[index + 1:]]
    return argv


def _draw(ctx: AppContext, args: argparse.Namespace) -> int:
    from easyphoto.config import DesignConfig
    from easyphoto.design.run import check_request
    from easyphoto.job_params import DesignParams

    layout = Path(args.layout)
    if not layout.is_file():
        raise InvalidRequest(f"The layout {layout} does not exist.", phase="design",
                             hint="Give the layout PNG (the editor's download, or a label PNG).")
    config = common.with_overrides(common.load_config(DesignConfig, args.config), args.set, "design draw")
    params = {"layout": str(layout.resolve()), "garment_id": args.garment_id, "config": config.to_dict(),
              "out": str(Path(args.out).resolve()),
              "config_dir": str(Path(args.config_dir).resolve()) if args.config_dir else None}
    check_request(ctx, DesignParams.checked(params))  # the layout, the LoRA, the trained model: before the job
    if config.route == "diffusion":
        params["base"] = str(common.resolve_base(ctx, args.base, "design"))
    print(json.dumps(common.run_job(ctx, "design", params), indent=2))
    return 0


def _train(ctx: AppContext, args: argparse.Namespace) -> int:
    from easyphoto.design.smis.config import DesignTrainConfig
    from easyphoto.design.smis.run import check_request
    from easyphoto.job_params import DesignTrainParams

    dataset = Path(args.dataset)
    if not dataset.is_dir():
        raise InvalidRequest(f"The dataset folder {dataset} does not exist.", phase="design",
                             hint="Give the folder holding images/ and train.csv (or masks/).")
    config = None
    if args.config or args.set:
        config = common.with_overrides(common.load_config(DesignTrainConfig, args.config), args.set,
                                       "design train").to_dict()
    params = DesignTrainParams.checked({"model_name": args.model_name, "dataset": str(dataset.resolve()),
                                        "config": config, "resume": args.resume, "overwrite": args.overwrite,
                                        "device": args.device}, "design_train")
    check_request(ctx, params)  # the dataset, the name, resume/overwrite: before the job
    print(json.dumps(common.run_job(ctx, "design_train", params), indent=2))
    return 0


__all__ = ["add_design_commands", "with_default_action"]
