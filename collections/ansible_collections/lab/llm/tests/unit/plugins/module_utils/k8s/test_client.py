"""module_utils/k8s/client.py: where the connection comes from, and the error when there is none."""

from __future__ import annotations

import base64
import re
import socket
from pathlib import Path

import pytest
import yaml

from ansible_collections.lab.llm.plugins.module_utils.k8s import client
from ansible_collections.lab.llm.plugins.module_utils.k8s.exceptions import K8sError
from tests.standins.k8s import fixtures
from tests.standins.k8s.server import KubeApiStandIn

kube_api = fixtures.kube_api

NAMESPACE = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "lab-llm"}}


def test_without_any_cluster_configuration_the_error_says_where_it_looked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("K8S_AUTH_KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(K8sError) as error:
        client.connect({})
    assert str(error.value).startswith(
        "no kubeconfig (option kubeconfig, K8S_AUTH_KUBECONFIG or ~/.kube/config) and not running in a cluster"
    )


# What a kubeconfig carries that must never reach a message: a bearer token and client certificate/key data.
TOKEN = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0LXRva2Vu.c2ln"
CERT_DATA = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIBcert-body-secret\n-----END CERTIFICATE-----\n").decode()
KEY_DATA = base64.b64encode(b"-----BEGIN PRIVATE KEY-----\nMIIEkey-body-secret\n-----END PRIVATE KEY-----\n").decode()


def closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_kubeconfig(path: Path, server: str, context: str = "lab") -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": context,
        "clusters": [{"name": "lab", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
        "users": [
            {
                "name": "admin",
                "user": {"token": TOKEN, "client-certificate-data": CERT_DATA, "client-key-data": KEY_DATA},
            }
        ],
        "contexts": [{"name": context, "context": {"cluster": "lab", "user": "admin"}}],
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def assert_no_secret(message: str) -> None:
    for secret in (TOKEN, CERT_DATA, KEY_DATA, "secret-token", "cert-body-secret", "key-body-secret"):
        assert secret not in message, message


@pytest.fixture
def no_ambient_cluster(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No K8S_AUTH_* variables, no ~/.kube/config, not in a pod: only what a test passes counts."""
    for name in (
        "K8S_AUTH_KUBECONFIG",
        "K8S_AUTH_CONTEXT",
        "K8S_AUTH_HOST",
        "K8S_AUTH_API_KEY",
        "KUBERNETES_SERVICE_HOST",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.mark.usefixtures("no_ambient_cluster")
def test_a_missing_kubeconfig_is_named_with_the_context(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "kubeconfig"
    with pytest.raises(K8sError) as error:
        client.connect({"kubeconfig": str(missing), "context": "prod"})
    assert str(error.value) == "kubeconfig %s, context prod: the file does not exist" % missing


@pytest.mark.usefixtures("no_ambient_cluster")
def test_an_unreachable_api_names_server_kubeconfig_and_context_but_no_credentials(tmp_path: Path) -> None:
    server = "https://127.0.0.1:%d" % closed_port()
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", server, context="lab-admin")
    with pytest.raises(K8sError) as error:
        client.connect({"kubeconfig": str(kubeconfig), "context": "lab-admin"})
    message = str(error.value)
    assert message.startswith(
        "cannot reach the Kubernetes API at %s (kubeconfig %s, context lab-admin): " % (server, kubeconfig)
    ), message
    assert "Connection refused" in message, message
    assert_no_secret(message)


@pytest.mark.usefixtures("no_ambient_cluster")
def test_the_current_context_is_said_when_no_context_is_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", "https://127.0.0.1:%d" % closed_port())
    monkeypatch.setenv("K8S_AUTH_KUBECONFIG", str(kubeconfig))
    with pytest.raises(K8sError) as error:
        client.connect({})
    assert "(kubeconfig %s, its current-context): " % kubeconfig in str(error.value), error.value
    assert_no_secret(str(error.value))


@pytest.mark.usefixtures("no_ambient_cluster")
def test_a_context_the_kubeconfig_lacks_is_named(tmp_path: Path) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", "https://127.0.0.1:%d" % closed_port())
    with pytest.raises(K8sError) as error:
        client.connect({"kubeconfig": str(kubeconfig), "context": "staging"})
    message = str(error.value)
    assert message.startswith("kubeconfig %s, context staging: invalid: " % kubeconfig), message
    assert "staging" in message.split("invalid: ", 1)[1], message
    assert_no_secret(message)


@pytest.mark.usefixtures("no_ambient_cluster")
def test_a_kubeconfig_that_is_not_yaml_is_named_without_quoting_its_lines(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    # A YAML error quotes the line it stopped at; here that line holds the token.
    kubeconfig.write_text("users:\n- name: admin\n  user: {token: %s\n  bad: [\n" % TOKEN, encoding="utf-8")
    with pytest.raises(K8sError) as error:
        client.connect({"kubeconfig": str(kubeconfig)})
    message = str(error.value)
    assert re.fullmatch(
        r"kubeconfig %s, its current-context: not valid YAML \(line \d+, column \d+\)" % re.escape(str(kubeconfig)),
        message,
    ), message
    assert_no_secret(message)


@pytest.mark.usefixtures("no_ambient_cluster")
def test_an_unreachable_host_is_named_without_the_api_key() -> None:
    server = "https://127.0.0.1:%d" % closed_port()
    with pytest.raises(K8sError) as error:
        client.connect({"host": server, "api_key": TOKEN, "validate_certs": False})
    message = str(error.value)
    assert message.startswith(
        "cannot reach the Kubernetes API at %s (API host %s (token from api_key)): " % (server, server)
    )
    assert_no_secret(message)


def test_credentials_the_api_refuses_are_named_by_status_not_by_body(kube_api: KubeApiStandIn, tmp_path: Path) -> None:
    """The stand-in, like an API server, answers 401 to a token it does not know."""
    kubeconfig = write_kubeconfig(tmp_path / "wrong-token", kube_api.url)
    with pytest.raises(K8sError) as error:
        client.connect({"kubeconfig": str(kubeconfig)})
    message = str(error.value)
    assert message == "the Kubernetes API at %s (kubeconfig %s, its current-context) answered HTTP 401 %s" % (
        kube_api.url,
        kubeconfig,
        "Unauthorized",
    )
    assert_no_secret(message)
