"""Print pip constraints that pin each requirement to the lowest version pyproject.toml allows.

Used by .ci/run for its "lowest" matrix entry: the project's dependencies and its user-facing
extras (not "dev": the test tools run at their newest) are pinned to their ">=" lower bounds,
so that a bound that no longer works fails CI instead of a user's install.

    python .ci/lowest_constraints.py > constraints.txt
"""

import re
import sys
import tomllib
from pathlib import Path

LOWER_BOUND = re.compile(r"^\s*([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?\s*>=\s*([0-9][^,;\s]*)")


def lowest_pins(pyproject: Path) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    requirements = list(project["dependencies"])
    for extra, listed in project.get("optional-dependencies", {}).items():
        if extra != "dev":
            requirements.extend(listed)
    pins = {}
    for requirement in requirements:
        match = LOWER_BOUND.match(requirement)
        if match is None:
            sys.exit(f"no '>=' lower bound in the requirement {requirement!r}")
        name, version = match.groups()
        pins[name.lower()] = version
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


if __name__ == "__main__":
    root = Path(__file__).resolve().parent.parent
    print("\n".join(lowest_pins(root / "pyproject.toml")))
