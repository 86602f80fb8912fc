"""Command-line options of the EasyPhoto extension, added to the WebUI's parser before it parses argv.

Run once per WebUI start (not on "Reload UI"). Read them with getattr(shared.cmd_opts, name, default): an
extension installed during the session has none of them until the next restart.
"""

import argparse


def preload(parser: argparse.ArgumentParser) -> None:
    options = {
        "--easyphoto-data-dir": dict(
            type=str, default=None, help="EasyPhoto: folder for identities, jobs and outputs (default: <data>/easyphoto)"
        ),
        "--easyphoto-models-dir": dict(
            type=str, default=None, help="EasyPhoto: folder for face/segmentation weights (default: <models>/easyphoto)"
        ),
        "--easyphoto-offline": dict(
            action="store_true",
            help="EasyPhoto: never touch the network; missing weights are listed with where to put them",
        ),
        "--easyphoto-broker": dict(
            type=str, default=None,
            help="EasyPhoto: Redis URL of a distributed job queue (default: $EASYPHOTO_BROKER; docs/scale-out.md)",
        ),
        "--easyphoto-worker": dict(
            action="store_true",
            help="EasyPhoto: also run a distributed-queue worker in this WebUI, on its own models (needs a broker)",
        ),
        "--easyphoto-worker-queues": dict(
            type=str, default=None, help="EasyPhoto: the worker's comma-separated queues (default: all)",
        ),
    }
    known = set(parser._option_string_actions)  # argparse raises on duplicates; a second preload must not crash
    for flag, kwargs in options.items():
        if flag not in known:
            parser.add_argument(flag, **kwargs)
