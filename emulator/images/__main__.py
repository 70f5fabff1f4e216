"""``python -m emulator.images build-base|build-samples|prepare-compose``: for the scripts, which may run
before the package's dependencies are installed (standard library only). The ``serverless-emulator images``
commands live in ``emulator/cli/images.py``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from emulator.errors import EmulatorError
from emulator.images.build import (
    COMMAND_OUTPUT,
    LOCAL_BASE_IMAGE,
    build_base,
    build_samples,
    prepare_compose,
    sample_image_tag,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m emulator.images",
        description="Build the local Python base image and the sample worker images.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    base = sub.add_parser("build-base", help="make sure a Python base image exists; print its tag")
    base.add_argument("--tag", default=LOCAL_BASE_IMAGE)
    base.add_argument(
        "--force", action="store_true", help="rebuild the local base image from Debian's packages"
    )
    samples = sub.add_parser("build-samples", help="build the sample worker images")
    samples.add_argument("names", nargs="*")
    samples.add_argument("--base-image")
    compose = sub.add_parser(
        "prepare-compose", help="download wheels for docker-compose builds; print the base image"
    )
    compose.add_argument("--base-image")
    for command in (base, samples, compose):
        command.add_argument("-v", "--verbose", action="store_true", help="show the commands' output too")
    args = parser.parse_args(argv)

    def log(line: str) -> None:
        if args.verbose or not line.startswith(COMMAND_OUTPUT):
            print(line, file=sys.stderr, flush=True)

    result: Any
    try:
        if args.command == "build-base":
            result = build_base(args.tag, args.force, log)
        elif args.command == "build-samples":
            timings = build_samples(args.names, args.base_image, log)
            result = "\n".join(f"{sample_image_tag(n)}  {s:.1f}s" for n, s in timings.items())
        else:
            result = prepare_compose(args.base_image, log)
    except EmulatorError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
