# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  kubeconfig:
    description:
      - Path of the kubeconfig file. Falls back to E(K8S_AUTH_KUBECONFIG), then C(~/.kube/config), then the
        in-cluster service account.
    type: path
  context:
    description: Context in the kubeconfig to use (E(K8S_AUTH_CONTEXT)); the current context when unset.
    type: str
  host:
    description: API server URL, instead of a kubeconfig (E(K8S_AUTH_HOST)).
    type: str
  api_key:
    description: Bearer token for O(host) (E(K8S_AUTH_API_KEY)).
    type: str
  ca_cert:
    description: CA bundle that signed the API server certificate, for O(host) (E(K8S_AUTH_SSL_CA_CERT)).
    type: path
  validate_certs:
    description: Verify the API server certificate when O(host) is used.
    type: bool
    default: true
requirements:
  - kubernetes >= 32 (Python package) on the host that runs the module
notes:
  - All objects are written by server-side apply with the field manager C(lab-llm); check mode asks the API server
    for a dry run, so it reports exactly what would change.
"""
