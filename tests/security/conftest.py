"""The hostile tester's suite (issue 12): every bypass found against a platform started as `make up` starts it.

The platform fixture is the documentation suite's (tests/docs/conftest.py): one `make up` for this package,
stopped after its last test. Each file here names the row of the issue it keeps closed.
"""

from __future__ import annotations

from tests.docs.conftest import learner_shell, platform  # noqa: F401 - re-exported fixtures
