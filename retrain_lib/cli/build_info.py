"""Bake the build's git commit and lock hash into the package before it is installed: the
Dockerfile's step (the image has no ``.git``), run from the build context::

    python -m retrain_lib.cli.build_info --git-commit "$GIT_COMMIT" --lock uv.lock

writes ``retrain_lib/_build_info.json`` (see :mod:`retrain_lib.core.provenance`), which
``pip install .`` then installs with the package. An empty ``--git-commit`` is recorded as
``unknown (image built without GIT_COMMIT)``. Standard library only: it runs before the
package is installed. Exit 0 written, 2 bad input (not a commit id, no lock file, a git checkout).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from retrain_lib.core import provenance
from retrain_lib.core.errors import EXIT_BAD_INPUT, EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Write the build info (``python -m retrain_lib.cli.build_info``); the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m retrain_lib.cli.build_info",
        description="Write retrain_lib/_build_info.json (the commit and uv.lock hash every training run records) "
        "into the package about to be installed. Run in the build context, before `pip install .`.",
    )
    parser.add_argument(
        "--git-commit",
        default="",
        help=f"the build context's commit: $(git rev-parse HEAD); empty records {provenance.NO_COMMIT_IN_IMAGE!r}",
    )
    parser.add_argument("--lock", type=Path, default=Path("uv.lock"), help="the uv.lock installed from")
    args = parser.parse_args(argv)
    try:
        info = provenance.write_build_info(git_commit=args.git_commit, lock_file=args.lock)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"{provenance.BUILD_INFO_PATH}: {json.dumps(info, sort_keys=True)}")
    if provenance.is_unknown(info["git_commit"]):
        print(
            "warning: no GIT_COMMIT given: every model trained in this image records "
            f"git.commit={info['git_commit']!r}; build with --build-arg GIT_COMMIT=$(git rev-parse HEAD)",
            file=sys.stderr,
        )
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
