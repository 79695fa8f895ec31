"""Applies ``THREEKIT_TEST_CLOCK`` in every Python process of a test run (see _test_clock)."""

import _test_clock

_test_clock.apply()
