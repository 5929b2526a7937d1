# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one Kubernetes client of the collection: read, replace and create core/v1 Secrets and ConfigMaps.

Deliberately thin: objects travel as the API's own JSON (``_preload_content=False``),
so a replace sends back exactly what was read, with only ``data`` changed and the
``resourceVersion`` that makes the API server refuse it if someone changed the
object in between. Credentials come from a kubeconfig file, or from the pod's
service account when running inside a cluster.
"""

from __future__ import annotations

import json
import os

from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError

KINDS = {"Secret": "secret", "ConfigMap": "config_map"}
REQUEST_TIMEOUT = 30


def _kubernetes():
    try:
        # Imported on first use: the library is large and only these sources need it.
        import kubernetes  # pylint: disable=import-outside-toplevel
        import urllib3  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise OpsError("the Python library kubernetes is required on the managed host for Kubernetes "
                       "sources: pip install kubernetes") from None
    return kubernetes, urllib3


class KubeObjects:
    """Secrets and ConfigMaps of one cluster, as plain dicts."""

    def __init__(self, kubeconfig=None, context=None):
        kubernetes, urllib3 = _kubernetes()
        self._api_error = kubernetes.client.exceptions.ApiException
        self._transport_errors = (urllib3.exceptions.HTTPError, OSError)
        try:
            if kubeconfig or context or not os.environ.get("KUBERNETES_SERVICE_HOST"):
                api_client = kubernetes.config.new_client_from_config(config_file=kubeconfig, context=context)
            else:
                configuration = kubernetes.client.Configuration()
                kubernetes.config.load_incluster_config(client_configuration=configuration)
                api_client = kubernetes.client.ApiClient(configuration)
        except (kubernetes.config.ConfigException, OSError) as error:
            raise OpsError("cannot load Kubernetes credentials%s: %s"
                           % (" from %s" % kubeconfig if kubeconfig else "", error)) from None
        self.host = api_client.configuration.host
        self._api = kubernetes.client.CoreV1Api(api_client)

    def get(self, kind, namespace, name):
        """The object, or None when it does not exist."""
        try:
            return self._call("read", kind, namespace, name)
        except _NotFound:
            return None

    def replace(self, kind, namespace, name, body):
        return self._call("replace", kind, namespace, name, body=body)

    def create(self, kind, namespace, body):
        return self._call("create", kind, namespace, None, body=body)

    def _call(self, verb, kind, namespace, name, **kwargs):
        method = getattr(self._api, "%s_namespaced_%s" % (verb, KINDS[kind]))
        args = (namespace,) if name is None else (name, namespace)
        what = "%s %s/%s" % (kind, namespace, name or kwargs["body"]["metadata"]["name"])
        try:
            response = method(*args, _preload_content=False, _request_timeout=REQUEST_TIMEOUT, **kwargs)
        except self._api_error as error:
            if error.status == 404 and verb == "read":
                raise _NotFound() from None
            raise OpsError("Kubernetes API: %s %s failed: %s" % (verb, what, _status_text(error))) from None
        except self._transport_errors as error:
            # MaxRetryError wraps the one worth reading (refused, TLS, timeout) in .reason.
            raise OpsError("cannot reach the Kubernetes API server at %s: %s"
                           % (self.host, getattr(error, "reason", None) or error)) from None
        return json.loads(response.data)


class _NotFound(Exception):
    pass


def _status_text(error):
    """HTTP status and the Status message of an API error (never the object sent)."""
    message = ""
    try:
        message = json.loads(error.body).get("message", "")
    except (TypeError, ValueError, AttributeError):
        pass
    return "%s %s%s" % (error.status, error.reason, (": " + message) if message else "")
