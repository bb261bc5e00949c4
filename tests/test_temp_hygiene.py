"""Temp hygiene: every temp folder the code creates is removed. The heaviest module,
tests/energy_assets/fleet/test_fleet.py, checks its own empty TMPDIR after each platform test (its `fleet` fixture);
these cases cover the engine server's short socket folder."""

import os

import pytest


@pytest.mark.timeout(120)
def test_an_engine_servers_temp_socket_folder_is_removed_when_it_stops(tmp_path):
    """A socket path too long for a Unix socket gets a short temp folder: it goes when the server does."""
    from gpu_ops.serve import ServerProcess

    server = ServerProcess(tmp_path / ("x" * 120) / "engine.sock").start(dict(os.environ))
    folder = server.socket.parent
    assert folder.is_dir() and folder != tmp_path / ("x" * 120)
    server.stop()
    assert not folder.exists()


def test_an_engine_servers_socket_path_stays_short_when_the_temp_folder_path_is_long(tmp_path, monkeypatch):
    """A test's TMPDIR can itself be too long for a socket path: the short folder then goes in /tmp."""
    import tempfile

    from gpu_ops.serve import ServerProcess

    long_tmp = tmp_path / ("t" * 90)
    long_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(long_tmp))
    server = ServerProcess(long_tmp / "engine.sock")
    try:
        assert len(str(server.socket)) <= 100, server.socket
    finally:
        server.socket.parent.rmdir()
