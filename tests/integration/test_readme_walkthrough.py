"""The README's start command and curl walkthrough work as printed, on a fresh directory."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import services

README = Path(__file__).parents[2] / "README.md"


def test_the_readme_walkthrough_sells_seats_puts_a_show_on_sale_and_refunds(
    tmp_path: Path,
) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    text = README.read_text()
    start = re.search(r"```sh\n(python3 -m venv .*concert serve)\n```", text)
    walkthrough = re.search(r"## Walkthrough.*?```sh\n(.*?)```", text, re.DOTALL)
    assert start is not None, "the README lost its start command"
    assert walkthrough is not None, "the README lost its walkthrough"
    assert "concert seed-demo && .venv/bin/concert serve" in start.group(1)

    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    cli = [sys.executable, "-m", "entrypoints.cli"]
    subprocess.run([*cli, "seed-demo"], cwd=tmp_path, env=env, check=True, capture_output=True)
    with services.concert_serve(tmp_path, env) as served:
        script = walkthrough.group(1).replace("http://127.0.0.1:8000", served.url)
        script = script.replace(".venv/bin/concert", f"{sys.executable} -m entrypoints.cli")
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=tmp_path,  # where the served SQLite file is
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    paid = '{"payment_id":1,"reservation_id":1,"reservation_ids":[1],"amount":50000,"balance":30000'
    assert paid in out, out
    family = ["Floor A-24", "Floor A-25", "Floor A-26"]
    assert all(f'"label":"{label}"' in out for label in family), out
    assert '"reservation_ids":[2,3,4],"amount":150000,"balance":30000' in out, out
    assert "created as an admin" in out, out
    assert '"seats_total":52,"available":51,"held":0,"sold":1,"revenue":150000' in out, out
    assert "reservation_id,payment_id,section,row,number,price,paid_at,email\n5,3,VIP,A,1," in out
    assert '"label":"VIP A-1","price":150000,"status":"refunded"' in out, out
    assert '"kind":"refund","amount":150000,"balance":180000' in out, out
