"""Where a server's CPU goes: py-spy samples of a running process, summed by layer.

bench/dashboard.py `--profile` records Kabinet under the scenario's load with py-spy (an
extra run after the measured ones, so sampling does not touch the figures) and prints this
summary. A sample counts for the layer of its innermost frame that a rule names (so time in
`json` called from the endpoint is JSON's, time in the driver called by a loader the
database's); the top frames by own time follow.

    .venv/bin/python bench/profile.py FILE   # summarise a raw py-spy recording
"""

import argparse
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

PY_SPY = Path(sys.executable).parent / "py-spy"
RATE = 250  # samples a second
# (layer, where its frames' files are: py-spy names them from site-packages, the standard
# library or the checkout); the innermost frame that one names decides, the first on ties.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("JSON", ("json/", "orjson")),
    ("JWT, sessions", ("joserfc/", "cryptography/", "domains/identity/")),
    (
        "database (driver, pool, reads)",
        ("sqlalchemy/", "asyncpg/", "domains/", "dataloaders/"),
    ),
    (
        "GraphQL execution (plan, resolvers)",
        ("schema/planned.py", "graphql/execution/", "resolvers/", "strawberry/schema/schema_c"),
    ),
    ("GraphQL operation (extensions, guards, caches)", ("strawberry/", "graphql/", "schema/")),
    (
        "HTTP (uvicorn, Starlette, middleware)",
        ("uvicorn/", "starlette/", "h11/", "httptools/", "gateway/"),
    ),
    # Last: the loop's own Python frames, and its C work (Runner.run is the innermost Python
    # frame while the loop steps tasks and polls sockets in C).
    ("event loop", ("asyncio/", "selectors.py")),
)
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>.*?)(?::\d+)?\)$")


def record(pid: int, seconds: int, output: Path) -> subprocess.Popen[bytes]:
    """Starts sampling `pid` for `seconds`; the caller waits for the process."""
    argv = [str(PY_SPY), "record", "--pid", str(pid), "--duration", str(seconds)]
    argv += ["--rate", str(RATE), "--format", "raw", "--output", str(output), "--nonblocking"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def layer_of(frames: Sequence[str]) -> str:
    for frame in reversed(frames):
        match = _FRAME.match(frame)
        file = match["file"] if match else frame
        for layer, places in LAYERS:
            if file.startswith(places):
                return layer
    return "other"


def summarize(raw: Path, top: int = 12) -> list[str]:
    """Lines: each layer's share of the samples, then the frames with the most own time."""
    layers: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        total += int(count)
        layers[layer_of(frames)] += int(count)
        match = _FRAME.match(frames[-1])
        own[f"{match['function']} ({match['file']})" if match else frames[-1]] += int(count)
    if not total:
        return ["no samples"]
    lines = [f"{total} samples at {RATE}/s"]
    lines += [f"{100 * n / total:5.1f}%  {name}" for name, n in layers.most_common()]
    lines.append("top frames by own time:")
    lines += [f"{100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("raw", type=Path, help="a py-spy recording in --format raw")
    print("\n".join(summarize(parser.parse_args(argv).raw)))


if __name__ == "__main__":
    main()
