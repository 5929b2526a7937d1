# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """Connection options shared by every module that talks to S3 (or CloudFront)."""

    DOCUMENTATION = r"""
options:
  endpoint_url:
    description:
      - URL of an S3-compatible service (MinIO, Ceph, rclone, moto...), for example V(http://127.0.0.1:9000).
      - Omit it for AWS itself. Requests use path-style addressing and signature version 4.
    type: str
    aliases: [s3_url]
  region:
    description: Region of the bucket (and the signing region of an S3-compatible service).
    type: str
    default: us-east-1
    aliases: [aws_region]
  access_key:
    description:
      - Access key id. With O(secret_key); without both, the credentials come from boto3's usual chain
        (E(AWS_ACCESS_KEY_ID) and E(AWS_SECRET_ACCESS_KEY), the shared credentials file, an instance role).
    type: str
    aliases: [aws_access_key_id]
  secret_key:
    description: Secret access key. Never logged, never on a command line.
    type: str
    aliases: [aws_secret_access_key]
  session_token:
    description: Session token of temporary credentials. Never logged.
    type: str
    aliases: [aws_session_token]
  validate_certs:
    description: Verify the TLS certificate of the endpoint.
    type: bool
    default: true
  timeout:
    description: Seconds one request may take (connect and transfer) before it is retried or fails.
    type: int
    default: 60
  retries:
    description: Retries of a failed request, with exponential backoff, before the task fails.
    type: int
    default: 3
requirements:
  - boto3 (control calls) and obstore (transfers) on the host that runs the module
"""
