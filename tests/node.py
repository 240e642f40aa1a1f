"""Running the project's Node scripts from tests: Apollo's composition and router, the
GraphQL-over-HTTP audit. Each prints JSON on stdout; `make test` installs what they need."""

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.servers import REPO_ROOT


def run_node(
    script: Path,
    *args: str,
    needs: str,
    stdin: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Any:
    """The JSON `script` prints, run with `env` over this process's environment; fails the
    test, saying why, if it or `needs` (an npm package) cannot run."""
    node = shutil.which("node")
    assert node, f"node is needed to run {script.name} (make test installs the npm tools)"
    assert (REPO_ROOT / "node_modules" / needs).is_dir(), (
        f"node_modules/{needs} is missing: run make test, it installs npm tools"
    )
    run = subprocess.run(  # noqa: S603 - the project's own scripts and arguments
        [node, str(script), *args],
        input=stdin,
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, f"{script.name} failed ({run.returncode}):\n{run.stderr}"
    return json.loads(run.stdout)
