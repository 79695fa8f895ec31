"""The suite-wide secret-leak watch (tests/conftest.py) really fails a test that leaks."""

from pathlib import Path

pytest_plugins = ["pytester"]

CONFTEST = Path(__file__).with_name("conftest.py")

LEAKY_TESTS = '''
import logging

TOKEN = "tk-meta-0a1b2c3d4e5f"


def test_leaks_in_log():
    logging.getLogger("x").warning("calling with %s", TOKEN)


def test_leaks_in_file(tmp_path):
    (tmp_path / "report.json").write_text('{"auth": "' + TOKEN + '"}')


def test_leaks_in_stdout():
    print("Authorization: Bearer " + TOKEN)


def test_clean(tmp_path):
    logging.getLogger("x").info("imported 3 products")
    (tmp_path / "report.json").write_text("{}")
'''


def test_leaks_fail_their_test_and_clean_tests_pass(pytester):
    # The inner suite watches its own token, so this outer test's files never contain ours.
    source = CONFTEST.read_text()
    assert 'SANDBOX_TOKEN = "tk-test-' in source
    pytester.makeconftest(source.replace('SANDBOX_TOKEN = "tk-test-', 'SANDBOX_TOKEN = "tk-meta-0a1b2c3d4e5f"  # "'))
    # The conftest imports its sibling helper module: the inner suite gets a copy.
    pytester.makepyfile(test_leaky=LEAKY_TESTS, xdist_groups=CONFTEST.with_name("xdist_groups.py").read_text())
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:xdist")
    # A leak fails the test at teardown (reported as an error of that test).
    result.assert_outcomes(passed=4, errors=3)
    output = result.stdout.str()
    assert "leaked into: a log record" in output
    assert "report.json" in output
    assert "section 'Captured stdout call'" in output
    # The verdict names where, never the secret itself.
    verdicts = [line for line in output.splitlines() if line.startswith("a token or password")]
    assert len(verdicts) == 3
    assert not any("tk-meta-0a1b2c3d4e5f" in line for line in verdicts)
    assert "test_clean" not in " ".join(verdicts)
