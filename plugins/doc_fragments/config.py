# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """Options shared by the configuration modules (config_capture, config_diff, config_apply)."""

    # Connection to the secret stores, and which keys are secrets.
    DOCUMENTATION = r"""
options:
  kubeconfig:
    description:
      - Kubeconfig file for Kubernetes sources.
      - Unset, the pod's service account is used when the module runs inside a cluster
        (E(KUBERNETES_SERVICE_HOST) set), else E(KUBECONFIG) or C(~/.kube/config).
    type: path
  kube_context:
    description: Context of the kubeconfig to use instead of its current one.
    type: str
  aws_region:
    description: AWS region of Secrets Manager sources; unset, boto3's usual configuration (E(AWS_DEFAULT_REGION)...).
    type: str
  aws_endpoint_url:
    description: Secrets Manager endpoint instead of AWS's (a VPC endpoint, or a local stand-in for tests).
    type: str
  aws_access_key_id:
    description: AWS access key id; unset, boto3's usual chain (environment, shared files, instance role).
    type: str
  aws_secret_access_key:
    description: AWS secret access key that goes with O(aws_access_key_id). Never logged.
    type: str
  aws_session_token:
    description: AWS session token for temporary credentials. Never logged.
    type: str
  aws_profile:
    description: Profile of the shared AWS configuration files.
    type: str
  secret_keys:
    description:
      - Key names or shell-style patterns (case-insensitive) whose values are secrets, on top of the defaults
        V(*SECRET*), V(*PASSWORD*), V(*PASSWD*), V(*KEY*), V(*TOKEN*), V(*CREDENTIAL*), V(*PRIVATE*) and
        V(DATABASE_URL).
      - A Helm values path matches by its whole dotted path or by its last part.
      - Secret values are never returned and appear in C(--diff) output only as V(<secret>), or
        V(<secret, changed>) when the value changes. Other values are shown with any password inside a URL
        masked.
    type: list
    elements: str
    default: []
requirements:
  - python-dotenv on the managed host (env files)
  - cryptography on the managed host (bundles)
  - kubernetes (Python client) on the managed host, for Kubernetes sources only
  - boto3 on the managed host, for Secrets Manager sources only
"""

    # The bundle's password.
    BUNDLE = r"""
options:
  bundle_password:
    description:
      - Password of the bundle (ansible-vault format, so C(ansible-vault view) opens it with the same password).
      - Never logged. Mutually exclusive with O(bundle_password_file).
    type: str
  bundle_password_file:
    description:
      - File holding the bundle's password, read the way C(ansible-vault --vault-password-file) reads it
        (surrounding whitespace stripped), so the same file serves both.
    type: path
"""

    # The sample a live source is compared with (config_diff, config_apply).
    SAMPLE = r"""
options:
  sample:
    description:
      - The new release's sample configuration, a C(.env.example) or a Helm values file.
      - In a C(.env) sample every key's value is its documented default; in a values file, nested keys are
        flattened to dotted paths (V(config.logLevel)) and lists are compared as compact JSON.
    type: path
  sample_format:
    description: V(auto) takes files ending in C(.yaml)/C(.yml) for Helm values, anything else for C(.env).
    type: str
    choices: [auto, env, helm_values]
    default: auto
  sample_root:
    description:
      - Dotted path of the mapping of a Helm values file that holds the configuration keys (for example V(env)),
        so that its keys compare with the plain keys of the live source.
    type: str
"""
