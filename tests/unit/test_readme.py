"""The README's library example runs as printed."""

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).parents[2] / "README.md"


def test_the_readme_example_sells_a_seat_refunds_it_and_sells_three_together() -> None:
    section = README.read_text().split("## The library in use", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert code is not None, "the README lost its library example"
    result = subprocess.run(
        [sys.executable, "-c", code.group(1)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "Floor C-1: paid 50,000 won, balance 30,000 won\n"
        "sold 1 of 52, 50,000 won\n"
        "Floor C-1 refunded: balance 80,000 won\n"
        "VIP A-4, VIP A-5, VIP A-6: paid 450,000 won at once\n"
    ), result.stdout
