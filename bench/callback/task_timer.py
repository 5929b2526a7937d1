# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark-only callback: one JSON line per task result to $TASK_TIMER_OUTPUT, with the task's wall time."""

from __future__ import annotations

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: task_timer
type: aggregate
short_description: Record each task's wall time and result for the benchmarks
description: Writes one JSON object per task result to the file named by E(TASK_TIMER_OUTPUT).
requirements:
  - enabled by bench/s3_bench.py only
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "task_timer"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self._started = {}

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._started[task._uuid] = time.perf_counter()

    def _record(self, result, status):
        seconds = time.perf_counter() - self._started.get(result._task._uuid, time.perf_counter())
        with open(os.environ["TASK_TIMER_OUTPUT"], "a") as handle:
            handle.write(json.dumps({"task": result.task_name, "status": status, "seconds": seconds,
                                     "result": result._result}, default=str) + "\n")

    def v2_runner_on_ok(self, result):
        self._record(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, "failed")
