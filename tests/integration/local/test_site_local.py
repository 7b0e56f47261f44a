"""`site.yml` on `inventory/local`: check mode changes nothing and fails nothing, the real run deploys, the
second run changes nothing, and no secret reaches the output."""

from __future__ import annotations

import pytest

from tests.integration.local.conftest import LocalDeployment

pytestmark = pytest.mark.stack


def test_check_mode_runs_clean_before_anything_exists(local_deployment: LocalDeployment) -> None:
    run = local_deployment.check_run
    assert run.returncode == 0, run.output[-4000:]
    recap = run.recap()
    assert recap["failed"] == 0 and recap["unreachable"] == 0
    # Nothing was started by check mode: the real run had to start Ray and deploy.
    assert "Start Ray as a background process" in local_deployment.first_run.output


def test_real_run_deploys_and_passes_the_smoke_test(local_deployment: LocalDeployment) -> None:
    run = local_deployment.first_run
    assert run.recap()["failed"] == 0
    assert run.recap()["changed"] > 0
    assert "Smoke test passed" in run.output


def test_second_run_changes_nothing(local_deployment: LocalDeployment) -> None:
    run = local_deployment.second_run
    assert run.returncode == 0, run.output[-4000:]
    assert run.recap()["changed"] == 0, run.output[-6000:]


def test_no_secret_in_any_playbook_output(local_deployment: LocalDeployment) -> None:
    signing_keys = (local_deployment.state_dir / "etc" / "signing-keys.yaml").read_text()
    secrets = [local_deployment.admin_password, local_deployment.api_key]
    secrets += [line.split("secret:", 1)[1].strip() for line in signing_keys.splitlines() if "secret:" in line]
    for run in (local_deployment.check_run, local_deployment.first_run, local_deployment.second_run):
        for secret in secrets:
            assert secret not in run.output
