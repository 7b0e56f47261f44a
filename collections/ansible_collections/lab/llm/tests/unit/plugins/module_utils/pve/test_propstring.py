"""module_utils/pve/propstring.py: Proxmox property strings and cloud-init sshkeys encoding."""

from __future__ import annotations

from urllib.parse import unquote

from ansible_collections.lab.llm.plugins.module_utils.pve import propstring

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINYDR9JYyyug5eZrmtUx/hWRntaWghRo5xo+3YWnD3+Q admin@lab"


def test_property_string_round_trip_keeps_the_default_key_bare() -> None:
    values = propstring.parse("0000:01:00,pcie=1,x-vga=1", "host")
    assert values == {"host": "0000:01:00", "pcie": "1", "x-vga": "1"}
    assert propstring.render(values, "host") == "0000:01:00,pcie=1,x-vga=1"


def test_sshkeys_are_url_encoded_with_percent_20_and_decode_back() -> None:
    encoded = propstring.encode_sshkeys([KEY, KEY.replace("admin", "ops")])
    assert " " not in encoded
    assert "+" not in encoded
    assert "%20" in encoded
    assert "%0A" in encoded
    assert propstring.decode_sshkeys(encoded) == [KEY, KEY.replace("admin", "ops")]
    assert unquote(encoded).endswith("\n")
