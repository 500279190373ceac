"""Session fixtures shared by the whole suite: a real sshd and moto's server on loopback.

Helpers live in ``tests/support/`` (imported as ``tests.support.*``), never among the tests.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def ssh_server(tmp_path_factory):
    """A real sshd on 127.0.0.1 for the whole session (see tests/support/loopback.py)."""
    from tests.support.loopback import SshServer

    server = SshServer(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory):
    """moto's server mode on 127.0.0.1 for the whole session (see tests/support/loopback.py)."""
    from tests.support.loopback import MotoServer

    server = MotoServer(tmp_path_factory.mktemp("moto"))
    yield server
    server.stop()
