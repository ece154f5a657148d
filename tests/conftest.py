"""Test-run settings shared by every test module."""

import os

from hypothesis import settings

# The same property-test examples on every run, so that CI is reproducible;
# AF_TEST_RANDOM=1 searches new random examples (as AF_TEST_EXAMPLES=N searches more).
settings.register_profile("assignflow", derandomize=not os.environ.get("AF_TEST_RANDOM"))
settings.load_profile("assignflow")
