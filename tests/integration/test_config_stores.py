"""The secret stores: AWS Secrets Manager against a real moto_server, Kubernetes against a stand-in API.

No Kubernetes API server can run on these machines (no kube-apiserver, kind, k3s or envtest in any
reachable registry, no container engine). The Kubernetes tests therefore run the modules, with the real
kubernetes Python client and a kubeconfig, against sandbox/kubeapi.py: a small HTTP server on 127.0.0.1
that answers the core/v1 Secret and ConfigMap endpoints the client calls (GET, PUT with resourceVersion
checks, POST) and requires the kubeconfig's bearer token. What a real cluster adds (admission, RBAC,
watch) is out of reach of these tests.
"""

from __future__ import annotations

import json

from helpers import run_tasks

PASSWORD = "stores-pass-5e2a"
SAMPLE = "PORT=3001\nJWT_SECRET=change-me\nREDIS_URL=redis://localhost:6379/0\nOBJECT_STORAGE_REGION=us-east-1\n"
LIVE = {"PORT": "3001", "JWT_SECRET": "jwt-a3ViZXJuZXRlcyBzZWNyZXQ", "REDIS_URL": "redis://cache:6379/0",
        "LEGACY_ASSET_DIR": "/srv/assets"}
ROTATED = "jwt-cm90YXRlZCBpbiB0aGUgc3RvcmU"


def test_secrets_manager_capture_diff_rotate_and_restore(tmp_path, moto_server):
    client = moto_server.client("secretsmanager")
    secret_id = "treazrisland/%s" % tmp_path.name
    # Stored the way an operator typed it: key order, spacing and a number that is not a string.
    original = '{"PORT": 3001, "JWT_SECRET": "%s", "REDIS_URL": "redis://cache:6379/0", "LEGACY_ASSET_DIR": "/srv/assets"}' \
        % LIVE["JWT_SECRET"]
    client.create_secret(Name=secret_id, SecretString=original)
    sample = tmp_path / "sample.env"
    sample.write_text(SAMPLE)
    bundle = tmp_path / "config.vault"
    aws = moto_server.aws_params()
    source = {"type": "secretsmanager", "secret_id": secret_id}
    tasks = [
        {"name": "capture", "treazrisland.ops.config_capture":
            dict(aws, sources=[source], dest=str(bundle), bundle_password=PASSWORD)},
        {"name": "diff", "treazrisland.ops.config_diff": dict(aws, sample=str(sample), source=source)},
        {"name": "apply and rotate", "treazrisland.ops.config_apply":
            dict(aws, sample=str(sample), source=source, values={"JWT_SECRET": ROTATED}, bundle=str(bundle),
                 bundle_password=PASSWORD)},
        {"name": "apply again", "treazrisland.ops.config_apply":
            dict(aws, sample=str(sample), source=source, values={"JWT_SECRET": ROTATED}, bundle=str(bundle),
                 bundle_password=PASSWORD)},
    ]
    run = run_tasks(tasks, diff=True, verbosity=3)
    assert [entry["status"] for entry in run.results] == ["ok"] * 4, run.output[-3000:]
    capture, diff, applied, again = (entry["result"] for entry in run.results)
    assert capture["sources"][0]["keys"] == ["PORT", "JWT_SECRET", "REDIS_URL", "LEGACY_ASSET_DIR"]
    assert diff["added"] == ["OBJECT_STORAGE_REGION"] and diff["removed"] == ["LEGACY_ASSET_DIR"]
    assert diff["changed_defaults"] == ["REDIS_URL"]
    assert applied["changed"] is True and applied["updated"] == ["JWT_SECRET"]
    assert applied["bundle_saved"] is False  # the capture already holds the state from before
    assert again["changed"] is False
    stored = json.loads(client.get_secret_value(SecretId=secret_id)["SecretString"])
    assert stored == {"PORT": 3001, "JWT_SECRET": ROTATED, "REDIS_URL": "redis://cache:6379/0",
                      "LEGACY_ASSET_DIR": "/srv/assets", "OBJECT_STORAGE_REGION": "us-east-1"}
    previous = client.get_secret_value(SecretId=secret_id, VersionStage="AWSPREVIOUS")["SecretString"]
    assert previous == original
    for value in (LIVE["JWT_SECRET"], ROTATED, PASSWORD, moto_server.secret_key):
        assert value not in run.output

    run = run_tasks([{"name": "restore", "treazrisland.ops.config_apply":
                      dict(aws, state="restored", bundle=str(bundle), bundle_password=PASSWORD)}])
    assert run.result["restored"] == ["secretsmanager %s" % secret_id], run.output[-3000:]
    assert client.get_secret_value(SecretId=secret_id)["SecretString"] == original  # the very same string


def test_secrets_manager_missing_secret_and_unreachable_endpoint(tmp_path, moto_server):
    aws = moto_server.aws_params()
    tasks = [
        {"name": "missing", "ignore_errors": True, "treazrisland.ops.config_capture":
            dict(aws, sources=[{"type": "secretsmanager", "secret_id": "no/such/secret"}],
                 dest=str(tmp_path / "b.vault"), bundle_password=PASSWORD)},
        {"name": "unreachable", "ignore_errors": True, "treazrisland.ops.config_capture":
            dict(aws, aws_endpoint_url="http://127.0.0.1:9", sources=[{"type": "secretsmanager", "secret_id": "x"}],
                 dest=str(tmp_path / "b.vault"), bundle_password=PASSWORD)},
    ]
    run = run_tasks(tasks)
    missing, unreachable = (entry["result"]["msg"] for entry in run.results)
    assert missing == "Secrets Manager secret no/such/secret does not exist"
    assert unreachable == "Secrets Manager: cannot reach http://127.0.0.1:9/"
    assert not (tmp_path / "b.vault").exists()


def test_kubernetes_secret_and_configmap_capture_apply_restore(tmp_path, kube_api):
    """Against the stand-in API server of sandbox/kubeapi.py (see the module docstring): no real cluster here."""
    kube_api.put_object("Secret", "treazrisland", "treazrisland-config", LIVE)
    kube_api.put_object("ConfigMap", "treazrisland", "treazrisland-settings", {"LOG_LEVEL": "info", "PORT": "3001"})
    original_secret = json.loads(json.dumps(kube_api.objects[("Secret", "treazrisland", "treazrisland-config")]))
    kubeconfig = kube_api.write_kubeconfig(str(tmp_path / "kubeconfig"))
    sample = tmp_path / "sample.env"
    sample.write_text(SAMPLE)
    bundle = tmp_path / "config.vault"
    secret = {"type": "kubernetes_secret", "namespace": "treazrisland", "name": "treazrisland-config"}
    configmap = {"type": "kubernetes_configmap", "namespace": "treazrisland", "name": "treazrisland-settings"}
    common = {"kubeconfig": kubeconfig, "bundle_password": PASSWORD}
    tasks = [
        {"name": "capture", "treazrisland.ops.config_capture": dict(common, sources=[secret, configmap],
                                                                    dest=str(bundle))},
        {"name": "rotate and add", "treazrisland.ops.config_apply":
            dict(common, source=secret, sample=str(sample), values={"JWT_SECRET": ROTATED}, bundle=str(bundle))},
        {"name": "configmap", "treazrisland.ops.config_apply":
            dict(common, source=configmap, values={"LOG_LEVEL": "debug"})},
    ]
    run = run_tasks(tasks, diff=True, verbosity=3)
    assert [entry["status"] for entry in run.results] == ["ok"] * 3, run.output[-3000:]
    capture, rotated, configured = (entry["result"] for entry in run.results)
    assert [source["keys"] for source in capture["sources"]] == [list(LIVE), ["LOG_LEVEL", "PORT"]]
    assert rotated["added"] == ["OBJECT_STORAGE_REGION"] and rotated["updated"] == ["JWT_SECRET"]
    assert kube_api.values("Secret", "treazrisland", "treazrisland-config") == dict(
        LIVE, JWT_SECRET=ROTATED, OBJECT_STORAGE_REGION="us-east-1")
    assert kube_api.values("ConfigMap", "treazrisland", "treazrisland-settings") == {"LOG_LEVEL": "debug", "PORT": "3001"}
    # Labels and type survive a replace: only data is changed.
    assert kube_api.objects[("Secret", "treazrisland", "treazrisland-config")]["metadata"]["labels"] == {
        "app": "treazrisland"}
    assert ("PUT", "/api/v1/namespaces/treazrisland/secrets/treazrisland-config") in kube_api.requests
    for value in (LIVE["JWT_SECRET"], ROTATED, PASSWORD, kube_api.token):
        assert value not in run.output

    # Roll back after the Secret was deleted outright: it comes back, with its exact data.
    del kube_api.objects[("Secret", "treazrisland", "treazrisland-config")]
    tasks = [{"name": "restore", "treazrisland.ops.config_apply":
              dict(common, state="restored", bundle=str(bundle))},
             {"name": "restore again", "treazrisland.ops.config_apply":
              dict(common, state="restored", bundle=str(bundle))}]
    run = run_tasks(tasks)
    first, second = (entry["result"] for entry in run.results)
    assert first["restored"] == ["kubernetes_secret treazrisland/treazrisland-config",
                                 "kubernetes_configmap treazrisland/treazrisland-settings"], run.output[-3000:]
    assert second["changed"] is False
    assert kube_api.objects[("Secret", "treazrisland", "treazrisland-config")]["data"] == original_secret["data"]
    assert kube_api.values("ConfigMap", "treazrisland", "treazrisland-settings") == {"LOG_LEVEL": "info", "PORT": "3001"}
    assert ("POST", "/api/v1/namespaces/treazrisland/secrets") in kube_api.requests


def test_kubernetes_errors_are_one_sentence(tmp_path, kube_api):
    """Stand-in API server (sandbox/kubeapi.py): a wrong token, a missing object, a server that is down."""
    good = kube_api.write_kubeconfig(str(tmp_path / "kubeconfig"))
    bad = tmp_path / "kubeconfig-bad"
    bad.write_text(open(good).read().replace(kube_api.token, "not-the-token"))
    sample = tmp_path / "sample.env"
    sample.write_text(SAMPLE)
    tasks = [
        {"name": "wrong token", "ignore_errors": True, "treazrisland.ops.config_capture":
            {"kubeconfig": str(bad), "bundle_password": PASSWORD, "dest": str(tmp_path / "b.vault"),
             "sources": [{"type": "kubernetes_secret", "name": "treazrisland-config"}]}},
        {"name": "missing", "ignore_errors": True, "treazrisland.ops.config_diff":
            {"kubeconfig": good, "sample": str(sample), "source": {"type": "kubernetes_configmap", "name": "nope"}}},
    ]
    run = run_tasks(tasks)
    wrong_token, missing = (entry["result"]["msg"] for entry in run.results)
    assert wrong_token == "Kubernetes API: read Secret default/treazrisland-config failed: 401 Unauthorized: Unauthorized"
    assert missing == "Kubernetes ConfigMap default/nope does not exist"

    url = kube_api.url
    kube_api.stop()
    run = run_tasks([{"name": "down", "ignore_errors": True, "treazrisland.ops.config_apply":
                      {"kubeconfig": good, "source": {"type": "kubernetes_secret", "name": "x"}}}])
    assert run.msg.startswith("cannot reach the Kubernetes API server at %s: " % url)
    assert not (tmp_path / "b.vault").exists()
