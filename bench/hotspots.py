"""Where a profiled run spent its time: `python bench/hotspots.py FILE [HANDLER]`.

FILE is a py-spy recording in collapsed form (``bench/run.py --profile DIR`` writes one per
run). Prints each endpoint's share of the samples; with HANDLER (an endpoint function of
`entrypoints.http.routes`, e.g. ``hold_seat``), the functions that share of time went through,
inclusive, and where it was spent, exclusive.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

ROUTES = "entrypoints/http/routes.py"
FRAME = re.compile(r"^(?P<function>\S+) \((?P<file>[^:]+):\d+\)$")


def handler_of(frames: list[str]) -> str:
    for frame in frames:
        match = FRAME.match(frame)
        if match and match["file"] == ROUTES:
            return match["function"]
    return "(outside the endpoints: server, framework, event loop)"


def function_of(frame: str) -> str:
    """``name (file)``, the line dropped, so that a function's lines count together."""
    match = FRAME.match(frame)
    return f"{match['function']} ({match['file']})" if match else frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("handler", nargs="?")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()

    total = 0
    by_handler: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    exclusive: Counter[str] = Counter()
    for line in args.file.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        samples, frames = int(count), stack.split(";")
        total += samples
        handler = handler_of(frames)
        by_handler[handler] += samples
        if handler == args.handler:
            for function in {function_of(frame) for frame in frames}:
                inclusive[function] += samples
            exclusive[function_of(frames[-1])] += samples

    print(f"{total:,} samples")
    for handler, samples in by_handler.most_common():
        print(f"{samples / total:6.1%}  {handler}")
    if args.handler:
        within = by_handler[args.handler]
        if not within:
            raise SystemExit(f"no samples in {args.handler}")
        print(f"\nwithin {args.handler}, inclusive:")
        for function, samples in inclusive.most_common(args.top):
            print(f"{samples / within:6.1%}  {function}")
        print(f"\nwithin {args.handler}, exclusive:")
        for function, samples in exclusive.most_common(args.top):
            print(f"{samples / within:6.1%}  {function}")


if __name__ == "__main__":
    main()
