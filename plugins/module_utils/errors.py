# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one error type the service layer raises; modules turn it into fail_json."""

from __future__ import annotations


class OpsError(Exception):
    """A failure worth one clear message to the operator.

    ``details`` are extra keys for the failed result (already free of secrets).
    """

    def __init__(self, msg, **details):
        super().__init__(msg)
        self.msg = msg
        self.details = details
