# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one way every module runs its service function and reports failure."""

from __future__ import annotations

import traceback

from ansible_collections.treazrisland.ops.plugins.module_utils import runner
from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError


def run_module(module, service):
    """Call ``service(params, check_mode)`` and exit with its result dict.

    OpsError becomes a fail_json with its message; anything unexpected too,
    with its traceback. Messages are masked once more as a last safety net.
    """
    try:
        result = service(module.params, module.check_mode)
    except OpsError as error:
        module.fail_json(msg=runner.mask(error.msg), **error.details)
    except Exception as error:  # pylint: disable=broad-except
        module.fail_json(msg=runner.mask("unexpected error: %s" % error), exception=runner.mask(traceback.format_exc()))
    module.exit_json(**result)
