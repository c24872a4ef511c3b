"""The loopback hub double, which lives in the package (``dslocal demo`` serves its model from it).

Tests import it from here as they always have; see :mod:`dslocal.testing.hub`.
"""

from dslocal.testing.hub import *  # noqa: F403
from dslocal.testing.hub import MS_MISSING, Faults, HubDouble, RateLimit, Stats, run_hub  # noqa: F401
