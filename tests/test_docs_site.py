"""The documentation site (``mkdocs.yml``, ``docs/``) builds with ``mkdocs build --strict``: no
warning, so no link to a missing page or anchor; and the pages keep up with the code.

Without MkDocs installed these tests skip, except under CI (``CI`` set), where the ``dev`` extra
installs it and they must run.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from django_jobs.conf import DEFAULTS

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"

try:
    import material  # noqa: F401  (the theme)
    import mkdocs  # noqa: F401
except ImportError:  # pragma: no cover - CI installs both with the dev extra
    if os.environ.get("CI"):
        raise
    pytest.skip("mkdocs or mkdocs-material is not installed", allow_module_level=True)


def test_the_site_builds_with_no_warning(tmp_path):
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=REPO,
        # Without the theme's banner about its own future, which is no warning of ours.
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = built.stdout + built.stderr
    assert built.returncode == 0, f"mkdocs build --strict failed:\n{output}"
    assert "WARNING" not in output, output
    assert (tmp_path / "index.html").exists()
    assert (tmp_path / "settings" / "index.html").exists()


def test_every_page_of_docs_is_in_the_navigation():
    config = (REPO / "mkdocs.yml").read_text()
    listed = set(re.findall(r":\s*([\w-]+\.md)\s*$", config, flags=re.MULTILINE))
    assert {page.name for page in DOCS.glob("*.md")} <= listed


def test_the_settings_page_describes_every_setting():
    page = (DOCS / "settings.md").read_text()
    missing = [key for key in DEFAULTS if f"| `{key}` |" not in page]
    assert missing == [], f"docs/settings.md has no row for {missing}"


def test_the_readme_links_to_docs_pages_that_exist():
    readme = (REPO / "README.md").read_text()
    linked = set(re.findall(r"\]\((docs/[^)#\s]+)", readme))
    assert linked, "the README links no docs page"
    assert [link for link in sorted(linked) if not (REPO / link).exists()] == []
