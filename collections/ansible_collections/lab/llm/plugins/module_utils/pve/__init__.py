# -*- coding: utf-8 -*-
# Copyright: lab-llm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Proxmox VE API client for the lab.llm modules: client, waiter, property strings, VM and mapping services."""
