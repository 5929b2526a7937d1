# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """HAProxy's runtime API, shared by haproxy_server, haproxy_maintenance and haproxy_switch."""

    DOCUMENTATION = r"""
options:
  socket:
    description: Path of HAProxy's runtime API socket (admin level).
    type: path
    default: /run/haproxy/admin.sock
  timeout:
    description: Seconds one runtime API command may take.
    type: float
    default: 5
"""
