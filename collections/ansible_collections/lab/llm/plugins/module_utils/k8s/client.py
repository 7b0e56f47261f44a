# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection only: a kubernetes DynamicClient from a kubeconfig, explicit host/token, or the in-cluster account."""

from __future__ import annotations

import os
import traceback
from typing import Any

from ansible_collections.lab.llm.plugins.module_utils.k8s.exceptions import K8sError

try:
    from kubernetes import client as k8s_client
    from kubernetes import config as k8s_config
    from kubernetes.config.config_exception import ConfigException
    from kubernetes.dynamic import DynamicClient

    HAS_KUBERNETES = True
    KUBERNETES_IMPORT_ERROR = None
except ImportError:
    HAS_KUBERNETES = False
    KUBERNETES_IMPORT_ERROR = traceback.format_exc()

# Options every lab.llm Kubernetes module accepts (documented in the lab.llm.k8s_auth doc fragment).
AUTH_ARG_SPEC = dict(
    kubeconfig=dict(type="path"),
    context=dict(type="str"),
    host=dict(type="str"),
    api_key=dict(type="str", no_log=True),
    ca_cert=dict(type="path"),
    validate_certs=dict(type="bool", default=True),
)

# The same environment variables kubernetes.core reads, so one setup serves both.
_ENV = {
    "kubeconfig": "K8S_AUTH_KUBECONFIG",
    "context": "K8S_AUTH_CONTEXT",
    "host": "K8S_AUTH_HOST",
    "api_key": "K8S_AUTH_API_KEY",
    "ca_cert": "K8S_AUTH_SSL_CA_CERT",
}


def _option(params: dict[str, Any], name: str) -> str | None:
    value = params.get(name)
    return value if value not in (None, "") else os.environ.get(_ENV[name]) or None


def connect(params: dict[str, Any]) -> Any:
    """A DynamicClient for the cluster the module options (or K8S_AUTH_* variables) point at."""
    if not HAS_KUBERNETES:
        raise K8sError("the Python package `kubernetes` is required on the host running this module")
    host = _option(params, "host")
    kubeconfig = _option(params, "kubeconfig")
    try:
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
        elif kubeconfig or os.path.exists(os.path.expanduser(k8s_config.KUBE_CONFIG_DEFAULT_LOCATION)):
            api_client = k8s_config.new_client_from_config(config_file=kubeconfig, context=_option(params, "context"))
        else:
            try:
                k8s_config.load_incluster_config()
            except ConfigException as error:
                raise K8sError(
                    "no kubeconfig (option kubeconfig, K8S_AUTH_KUBECONFIG or ~/.kube/config) and not running in a "
                    "cluster (%s)" % error
                ) from None
            api_client = k8s_client.ApiClient()
        return DynamicClient(api_client)
    except ConfigException as error:
        raise K8sError("cannot load the Kubernetes client configuration: %s" % error) from None
    except K8sError:
        raise
    except Exception as error:  # urllib3/socket errors while reading discovery
        raise K8sError("cannot reach the Kubernetes API: %s" % error) from None
