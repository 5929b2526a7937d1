"""docs/examples/inventory: it parses, and every variable it sets is one the roles or playbooks read."""

from __future__ import annotations

import glob
import json
import os
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(REPO, "docs", "examples", "inventory")


def read_by_roles_or_playbooks():
    text = ""
    for path in glob.glob(os.path.join(REPO, "roles", "*", "*", "*.yml")) + glob.glob(
            os.path.join(REPO, "playbooks", "*.yml")):
        with open(path) as handle:
            text += handle.read()
    return text


def test_the_example_inventory_parses_and_sets_only_variables_the_collection_reads():
    listed = subprocess.run(["ansible-inventory", "-i", EXAMPLE, "--list", "--export"], capture_output=True,
                            text=True, check=True, cwd=REPO)
    inventory = json.loads(listed.stdout)
    assert inventory["app"]["hosts"] == ["backend-1.example.internal", "backend-2.example.internal"]
    variables = inventory["all"]["vars"]
    assert variables["treazrisland_backend_port"] == 4000
    assert variables["treazrisland_restart_command"] == ["systemctl", "restart", "treazrisland-backend"]
    code = read_by_roles_or_playbooks()
    unread = [name for name in variables if not name.startswith("vault_") and name not in code]
    assert unread == []
