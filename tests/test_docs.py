"""The README stays true to the registry and to CI."""

from __future__ import annotations

import re
from pathlib import Path

import adamkit

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_readme_lists_every_registered_optimizer_with_its_class() -> None:
    rows = dict(re.findall(r"^\| `(\w+)` \| `(\w+)` \|", README, flags=re.M))
    expected = {name: adamkit.optimizer_class(name).__name__ for name in adamkit.available()}
    assert rows == expected


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    commands = re.findall(r"```bash\n(.+?)\n```", README)
    test_command = next(c for c in commands if "pytest" in c)
    assert test_command in (ROOT / ".ci" / "run").read_text()


def test_readme_quick_start_runs(capsys) -> None:  # type: ignore[no-untyped-def]
    code = re.findall(r"```python\n(.+?)\n```", README, flags=re.S)[0]
    exec(compile(code, "README quick start", "exec"), {})
    assert "adabelief" in capsys.readouterr().out
