# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """Connection options of every module that talks to the Proxmox VE API (module_utils/pve/client.py)."""

    DOCUMENTATION = r"""
options:
  api_host:
    description: Proxmox VE API host. Falls back to E(PROXMOX_HOST).
    type: str
    required: true
  api_port:
    description: API port. Falls back to E(PROXMOX_PORT).
    type: int
    default: 8006
  api_user:
    description: User including realm, for example C(ansible@pve). Falls back to E(PROXMOX_USER).
    type: str
    required: true
  api_token_id:
    description: API token name (the part after C(!)). Falls back to E(PROXMOX_TOKEN_ID).
    type: str
  api_token_secret:
    description: API token secret. Falls back to E(PROXMOX_TOKEN_SECRET). One of this or O(api_password) is required.
    type: str
  api_password:
    description: Password, used for a ticket when no token is given. Falls back to E(PROXMOX_PASSWORD).
    type: str
  validate_certs:
    description: Verify the API's TLS certificate. Falls back to E(PROXMOX_VALIDATE_CERTS).
    type: bool
    default: true
  ca_path:
    description: CA bundle to verify the API's certificate with. Falls back to E(PROXMOX_CA_PATH).
    type: path
  api_timeout:
    description: Seconds to wait for one API answer.
    type: int
    default: 30
  api_retries:
    description: Retries of reads on HTTP 5xx and of every request whose connection could not be opened.
    type: int
    default: 3
"""
