"""The README's library example runs as printed."""

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).parents[2] / "README.md"


def test_the_readme_example_books_and_pays_for_a_seat() -> None:
    section = README.read_text().split("## The library in use", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert code is not None, "the README lost its library example"
    result = subprocess.run(
        [sys.executable, "-c", code.group(1)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(
        r"seat 1 on \d\d-\d\d: paid 50,000 won, balance 30,000 won\n", result.stdout
    ), result.stdout
