"""Root conftest: shared fixtures (real services in subprocesses) for every test folder."""

pytest_plugins = ["tests.support.fixtures", "tests.support.shuffle"]
