"""Every setting is in the README's settings table, with its environment variable and its flag."""

from __future__ import annotations

from pathlib import Path

from parley.config import Settings, env_name

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_has_a_row_in_the_readme() -> None:
    rows = [line for line in README.read_text().splitlines() if line.startswith("| `PARLEY_")]
    missing = [
        f"{env_name(name)} (--{name.replace('_', '-')})"
        for name in Settings.model_fields
        if not any(row.startswith(f"| `{env_name(name)}` | `--{name.replace('_', '-')}` |") for row in rows)
    ]
    assert not missing, f"README.md's settings table has no row for {', '.join(missing)}"
