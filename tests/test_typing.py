"""Type checkers check the arguments of ``.delay()`` and know what ``handle.result()`` is:
mypy checks tests/typing/sample.py, whose correct calls state their types and whose wrong
calls are marked with the error each must raise."""

from pathlib import Path

import pytest

api = pytest.importorskip("mypy.api", reason="mypy is in the dev extra")

SAMPLE = Path(__file__).parent / "typing" / "sample.py"


@pytest.fixture(scope="module")
def mypy(tmp_path_factory):
    """Run mypy on one file; the runs of this module share a cache (the second takes ~1 s)."""
    cache = tmp_path_factory.mktemp("mypy-cache")

    def check(path):
        return api.run(
            [
                "--strict",  # with --warn-unused-ignores: each wrong call must still be an error
                "--follow-imports=silent",  # django_jobs is read for its types, not checked here
                "--ignore-missing-imports",  # Django ships no type hints
                "--no-error-summary",
                f"--cache-dir={cache}",
                str(path),
            ]
        )

    return check


def test_mypy_checks_job_arguments_and_knows_the_result_types(mypy):
    stdout, stderr, status = mypy(SAMPLE)

    assert (stdout, stderr, status) == ("", "", 0)


def test_a_wrong_call_left_unmarked_is_reported(mypy, tmp_path):
    """The harness itself: a wrong call without its mark is the one error mypy reports."""
    sample = tmp_path / "unmarked.py"
    sample.write_text(
        SAMPLE.read_text().replace('add.delay("1")  # type: ignore[arg-type]', 'add.delay("1")')
    )

    stdout, _, status = mypy(sample)

    assert status == 1
    assert 'Argument 1 to "delay" of "JobFunction" has incompatible type "str"; expected "int"' in (
        stdout
    )
    assert stdout.count("error:") == 1
