"""The test setup itself (tests/conftest.py): the golden set is required under CI, and the network is opt-in."""

from __future__ import annotations

import socket
from types import SimpleNamespace

import pytest

import conftest


def test_missing_golden_fails_under_ci(monkeypatch, tmp_path):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="golden tensors missing"):
        conftest.require_golden(tmp_path / "nowhere")


@pytest.mark.parametrize("ci", [None, "false"])
def test_missing_golden_skips_outside_ci(monkeypatch, tmp_path, ci):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.skip.Exception, match="golden tensors not found"):
        conftest.require_golden(tmp_path / "nowhere")


def test_golden_found_in_one_place(monkeypatch, tmp_path):
    (tmp_path / conftest.GOLDEN_MARKER).write_bytes(b"")
    monkeypatch.setenv("CI", "true")
    assert conftest.require_golden(tmp_path) == tmp_path


class _Item:
    def __init__(self, network: bool):
        self.network, self.added = network, []

    def get_closest_marker(self, name: str):
        return object() if name == "network" and self.network else None

    def add_marker(self, marker) -> None:
        self.added.append(marker)


@pytest.mark.parametrize("flag, env, skipped", [(False, None, True), (True, None, False), (False, "1", False)])
def test_network_tests_are_opt_in(monkeypatch, flag, env, skipped):
    monkeypatch.delenv("BRAINJEPA_NETWORK", raising=False)
    if env:
        monkeypatch.setenv("BRAINJEPA_NETWORK", env)
    config = SimpleNamespace(getoption=lambda name: flag)
    online, offline = _Item(network=True), _Item(network=False)
    conftest.pytest_collection_modifyitems(config, [online, offline])
    assert bool(online.added) == skipped and not offline.added


def test_unmarked_tests_cannot_reach_the_internet():
    with socket.socket() as sock, pytest.raises(RuntimeError, match="mark it @pytest.mark.network"):
        sock.connect(("192.0.2.1", 80))  # TEST-NET-1: refused by the guard before any packet leaves


def test_loopback_is_allowed():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.socket() as client:
            client.connect(server.getsockname())
