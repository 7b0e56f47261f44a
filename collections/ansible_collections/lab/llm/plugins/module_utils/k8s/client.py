# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection only: a kubernetes DynamicClient from a kubeconfig, explicit host/token, or the in-cluster account."""

from __future__ import annotations

import os
import traceback
from typing import Any

from ansible.module_utils.basic import env_fallback

from ansible_collections.lab.llm.plugins.module_utils.k8s.exceptions import K8sError
from ansible_collections.lab.llm.plugins.module_utils.requirements import missing_library

try:
    import yaml
    from kubernetes import client as k8s_client
    from kubernetes import config as k8s_config
    from kubernetes.config.config_exception import ConfigException
    from kubernetes.dynamic import DynamicClient

    HAS_KUBERNETES = True
    KUBERNETES_IMPORT_ERROR = None
except ImportError:
    HAS_KUBERNETES = False
    KUBERNETES_IMPORT_ERROR = traceback.format_exc()

# The same environment variables kubernetes.core reads, so one setup serves both.
_ENV = {
    "kubeconfig": "K8S_AUTH_KUBECONFIG",
    "context": "K8S_AUTH_CONTEXT",
    "host": "K8S_AUTH_HOST",
    "api_key": "K8S_AUTH_API_KEY",
    "ca_cert": "K8S_AUTH_SSL_CA_CERT",
}

# Options every lab.llm Kubernetes module accepts (documented in the lab.llm.k8s_auth doc fragment). The spec reads
# the environment itself, so a token from K8S_AUTH_API_KEY is a no_log value Ansible masks like the option's own.
AUTH_ARG_SPEC = dict(
    kubeconfig=dict(type="path", fallback=(env_fallback, [_ENV["kubeconfig"]])),
    context=dict(type="str", fallback=(env_fallback, [_ENV["context"]])),
    host=dict(type="str", fallback=(env_fallback, [_ENV["host"]])),
    api_key=dict(type="str", no_log=True, fallback=(env_fallback, [_ENV["api_key"]])),
    ca_cert=dict(type="path", fallback=(env_fallback, [_ENV["ca_cert"]])),
    validate_certs=dict(type="bool", default=True),
)


def _option(params: dict[str, Any], name: str) -> str | None:
    """The option's value; for callers without the argument spec (a module has applied its fallback already), the
    environment variable."""
    value = params.get(name)
    return value if value not in (None, "") else os.environ.get(_ENV[name]) or None


# (connect, read) seconds for the first request, which tells whether the API answers at all.
PROBE_TIMEOUT_S = (10, 30)
# Where the in-cluster configuration comes from (kubernetes.config.incluster_config).
_IN_CLUSTER = "in-cluster config (service account token %s)" % "/var/run/secrets/kubernetes.io/serviceaccount/token"


def _source(params: dict[str, Any], kubeconfig: str | None, host: str | None) -> str:
    """What the connection was built from, for error messages: the kubeconfig path and context, the API host, or the
    in-cluster config. Never a token, a password or certificate content; only names and file paths."""
    context = _option(params, "context")
    if host:
        return "API host %s (%s)" % (host, "token from api_key" if _option(params, "api_key") else "no token")
    if kubeconfig is None:
        return _IN_CLUSTER
    return "kubeconfig %s, %s" % (kubeconfig, "context %s" % context if context else "its current-context")


def _reason(error: BaseException) -> str:
    """The innermost cause of a connection failure (for urllib3's MaxRetryError, the socket or TLS error), by type
    and message; an HTTP error by status and reason only, never its body or headers."""
    status = getattr(error, "status", None)
    if isinstance(status, int):
        return "HTTP %s %s" % (status, getattr(error, "reason", "") or "")
    cause = getattr(error, "reason", None)
    while isinstance(cause, BaseException):
        error, cause = cause, getattr(cause, "reason", None)
    lines = str(error).splitlines()
    return "%s: %s" % (type(error).__name__, lines[0] if lines else "")


def connect(params: dict[str, Any]) -> Any:
    """A DynamicClient for the cluster the module options (or K8S_AUTH_* variables) point at.

    Raises K8sError naming what was used (the kubeconfig path and context, the API host, or the in-cluster config)
    when the package is missing, the kubeconfig is missing or invalid, or the API cannot be reached or refuses the
    credentials. The message never carries a token or certificate content.
    """
    if not HAS_KUBERNETES:
        raise K8sError(missing_library("kubernetes", "to talk to the Kubernetes API"))
    host = _option(params, "host")
    kubeconfig = _option(params, "kubeconfig")
    default = os.path.expanduser(k8s_config.KUBE_CONFIG_DEFAULT_LOCATION)
    if not host and not kubeconfig and os.path.exists(default):
        kubeconfig = default
    source = _source(params, kubeconfig, host)
    if host:
        configuration = k8s_client.Configuration()
        configuration.host = host
        configuration.verify_ssl = params.get("validate_certs", True)
        ca_cert = _option(params, "ca_cert")
        if ca_cert:
            configuration.ssl_ca_cert = ca_cert
        api_key = _option(params, "api_key")
        if api_key:
            configuration.api_key = {"authorization": "Bearer " + api_key}
        api_client = k8s_client.ApiClient(configuration)
    elif kubeconfig:
        # kubernetes' loader skips a path that does not exist and then says only "No configuration found".
        # (K8S_AUTH_KUBECONFIG may list several files, as KUBECONFIG does.)
        if not any(os.path.isfile(os.path.expanduser(path)) for path in kubeconfig.split(os.pathsep) if path):
            raise K8sError("%s: the file does not exist" % source)
        try:
            api_client = k8s_config.new_client_from_config(config_file=kubeconfig, context=_option(params, "context"))
        except ConfigException as error:
            # The loader's own words name keys and context names; an exec plugin's output (later lines) stays out.
            raise K8sError("%s: invalid: %s" % (source, str(error).splitlines()[0] if str(error) else "")) from None
        except yaml.YAMLError as error:
            # The YAML error would quote the offending line, which may hold a token: only where it is.
            mark = getattr(error, "problem_mark", None)
            where = " (line %d, column %d)" % (mark.line + 1, mark.column + 1) if mark else ""
            raise K8sError("%s: not valid YAML%s" % (source, where)) from None
        except (OSError, ValueError, TypeError) as error:  # unreadable file, bad base64 of certificate data
            raise K8sError("%s: cannot be loaded (%s)" % (source, type(error).__name__)) from None
    else:
        try:
            k8s_config.load_incluster_config()
        except ConfigException as error:
            raise K8sError(
                "no kubeconfig (option kubeconfig, K8S_AUTH_KUBECONFIG or ~/.kube/config) and not running in a "
                "cluster (%s: %s)" % (source, error)
            ) from None
        api_client = k8s_client.ApiClient()
    try:
        # One GET /version first: DynamicClient may answer from its discovery cache (a file per API URL in the temp
        # directory) without asking the server, and an unreachable API would then fail later, in the middle of a run.
        k8s_client.VersionApi(api_client).get_code(_request_timeout=PROBE_TIMEOUT_S)
        return DynamicClient(api_client)
    except Exception as error:  # urllib3/socket/TLS errors, or the API refusing the credentials
        server = api_client.configuration.host
        if isinstance(getattr(error, "status", None), int):  # it answered: 401 for a token it does not know, ...
            raise K8sError("the Kubernetes API at %s (%s) answered %s" % (server, source, _reason(error))) from None
        raise K8sError("cannot reach the Kubernetes API at %s (%s): %s" % (server, source, _reason(error))) from None
