"""The Proxmox API stand-in for the pve client and waiter tests, and clients of it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.lab.llm.plugins.module_utils.pve.client import PveClient
from tests.standins.pve.scenario import connection_args, running_standin
from tests.standins.pve.server import PveStandin


@pytest.fixture
def pve(shared_reference: Path, tmp_path: Path) -> Iterator[PveStandin]:
    """A stand-in of its own per test: no test sees what another one changed, in any order, in one process or not."""
    with running_standin(shared_reference, tmp_path / "pve") as standin:
        yield standin


@pytest.fixture
def client_for(pve: PveStandin) -> Callable[..., PveClient]:
    """A PveClient of the stand-in: its API token over verified TLS, one try; keyword arguments override options."""

    def make(**overrides: Any) -> PveClient:
        params = dict(api_password=None, validate_certs=True, api_retries=1, **connection_args(pve))
        params.update(overrides)
        return PveClient.from_params(params)

    return make
