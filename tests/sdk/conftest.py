"""The SDK tests' `prism` fixture: one stack for the session, started by `prism_launcher` (the
embedded backend, or what PRISM_SDK_BACKEND names)."""

import pytest

from prism_launcher import running_prism


@pytest.fixture(scope="session")
def prism():
    with running_prism() as prism:
        yield prism
