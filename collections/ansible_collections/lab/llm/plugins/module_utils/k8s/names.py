# -*- coding: utf-8 -*-
# Copyright: lab-llm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The syntax Kubernetes requires of object names, label keys and label values, checked before a write.

Source: kubernetes/kubernetes staging/src/k8s.io/apimachinery/pkg/util/validation/validation.go (IsQualifiedName,
IsValidLabelValue, IsDNS1123Subdomain) and pkg/apis/meta/v1/validation ValidateLabels; the API server answers 422
Invalid for a value that breaks them. Taint keys follow the label key rules, taint values the label value rules
(pkg/apis/core/validation validateTaints).
"""

from __future__ import annotations

import re

DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1123_SUBDOMAIN_MAX = 253
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
QUALIFIED_NAME_MAX = 63
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
LABEL_VALUE_MAX = 63


def subdomain_problem(where: str, name: str) -> str | None:
    """None, or why ``name`` cannot name an object (a DNS-1123 subdomain); ``where`` names the option."""
    if len(name) > DNS1123_SUBDOMAIN_MAX or not DNS1123_SUBDOMAIN.match(name):
        return "%s=%r: Kubernetes requires a lowercase RFC 1123 subdomain ([a-z0-9] and '-', dot-separated, " \
            "at most %d characters)" % (where, name, DNS1123_SUBDOMAIN_MAX)  # fmt: skip
    return None


def label_key_problem(where: str, key: str) -> str | None:
    """None, or why ``key`` is not a label (or taint) key: ``[prefix/]name``, the prefix a DNS-1123 subdomain."""
    prefix, slash, name = key.rpartition("/")
    if (
        len(name) > QUALIFIED_NAME_MAX
        or not QUALIFIED_NAME.match(name)
        or (slash and (not prefix or len(prefix) > DNS1123_SUBDOMAIN_MAX or not DNS1123_SUBDOMAIN.match(prefix)))
    ):
        return "%s: key %r is not a Kubernetes label key ([prefix/]name: name at most %d of [A-Za-z0-9_.-], " \
            "alphanumeric at both ends; prefix a DNS subdomain)" % (where, key, QUALIFIED_NAME_MAX)  # fmt: skip
    return None


def label_value_problem(where: str, value: object) -> str | None:
    """None, or why ``value`` is not a label (or taint) value: at most 63 of [A-Za-z0-9_.-], alphanumeric ends."""
    if not isinstance(value, str) or len(value) > LABEL_VALUE_MAX or not LABEL_VALUE.match(value):
        return "%s: value %r is not a Kubernetes label value (at most %d of [A-Za-z0-9_.-], alphanumeric at both " \
            "ends, or empty)" % (where, value, LABEL_VALUE_MAX)  # fmt: skip
    return None


def label_problems(where: str, labels: dict) -> list[str]:
    """Every key and value of ``labels`` Kubernetes would refuse, as messages naming ``where`` and the item."""
    problems = []
    for key, value in labels.items():
        problems.append(label_key_problem(where, str(key)))
        problems.append(label_value_problem("%s[%s]" % (where, key), value))
    return [problem for problem in problems if problem]
