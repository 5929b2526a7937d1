# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one AWS Secrets Manager client of the collection, built from the modules' aws_* options.

Unset options fall back to boto3's usual chain (environment, shared files,
instance role). Every failure becomes one OpsError sentence; the secret's value
never appears in one.
"""

from __future__ import annotations

from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError

CONNECT_TIMEOUT = 10
READ_TIMEOUT = 30
MAX_ATTEMPTS = 3


def _boto3():
    try:
        # Imported on first use: only Secrets Manager sources need boto3.
        import boto3  # pylint: disable=import-outside-toplevel
        import botocore.config  # pylint: disable=import-outside-toplevel
        import botocore.exceptions  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise OpsError("the Python library boto3 is required on the managed host for Secrets Manager "
                       "sources: pip install boto3") from None
    return boto3, botocore


class SecretsManager:
    """get/put of a secret's SecretString."""

    def __init__(self, params):
        boto3, botocore = _boto3()
        self._errors = botocore.exceptions
        try:
            session = boto3.session.Session(profile_name=params.get("aws_profile"))
            self._client = session.client(
                "secretsmanager",
                region_name=params.get("aws_region"),
                endpoint_url=params.get("aws_endpoint_url"),
                aws_access_key_id=params.get("aws_access_key_id"),
                aws_secret_access_key=params.get("aws_secret_access_key"),
                aws_session_token=params.get("aws_session_token"),
                config=botocore.config.Config(connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT,
                                              retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS}),
            )
        except self._errors.NoRegionError:
            raise OpsError("no AWS region for Secrets Manager: set aws_region (or AWS_DEFAULT_REGION)") from None
        except self._errors.BotoCoreError as error:
            raise OpsError("cannot set up the Secrets Manager client: %s" % error) from None

    def get(self, secret_id):
        """(SecretString, VersionId), or None when the secret does not exist."""
        try:
            response = self._call("read", secret_id, self._client.get_secret_value, SecretId=secret_id)
        except _NotFound:
            return None
        if "SecretString" not in response:
            raise OpsError("Secrets Manager secret %s holds binary data, not JSON key/values" % secret_id)
        return response["SecretString"], response.get("VersionId")

    def put(self, secret_id, secret_string):
        """Store a new current version; Secrets Manager keeps the old one as AWSPREVIOUS."""
        response = self._call("update", secret_id, self._client.put_secret_value, SecretId=secret_id,
                              SecretString=secret_string)
        return response.get("VersionId")

    def _call(self, action, secret_id, method, **kwargs):
        try:
            return method(**kwargs)
        except self._errors.ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code == "ResourceNotFoundException" and action == "read":
                raise _NotFound() from None
            message = error.response.get("Error", {}).get("Message", "")
            raise OpsError("Secrets Manager: cannot %s secret %s: %s%s"
                           % (action, secret_id, code, (" (%s)" % message) if message else "")) from None
        except self._errors.NoCredentialsError:
            raise OpsError("Secrets Manager: no AWS credentials found: set aws_access_key_id and "
                           "aws_secret_access_key, aws_profile, or the AWS_* environment variables") from None
        except self._errors.EndpointConnectionError as error:
            raise OpsError("Secrets Manager: cannot reach %s" % error.kwargs.get("endpoint_url", "the endpoint")) from None
        except self._errors.BotoCoreError as error:
            raise OpsError("Secrets Manager: cannot %s secret %s: %s" % (action, secret_id, error)) from None


class _NotFound(Exception):
    pass
