# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kubernetes access for lab.llm: client (connection), service (apply/get/delete), waiter, exceptions, renderers."""
