"""The last translation before the catch-all: errors the AWS SDK raises outside kopsy's
``aws_errors`` blocks (while building a session or a client, resolving credentials, parsing an
answer), each turned into a message that says what is wrong and what to do.

The doorway (``kopsy/cloud/aws/session.py``) translates what API calls raise; this covers the
rest, which arrives as plain Python exceptions (``FileNotFoundError`` from a missing
``credential_process``, ``ValueError`` from a bad ``AWS_ENDPOINT_URL``, ``KeyError`` from an
answer that is not AWS's), recognised by the SDK frames in their traceback.
"""

from __future__ import annotations

import os
import traceback

from kopsy.errors import CloudError, CredentialsError, KopsyError


def _sdk_frames(exc: BaseException) -> list[str]:
    """The SDK source files ``exc`` passed through, innermost last."""
    frames = traceback.extract_tb(exc.__traceback__)
    return [f.filename for f in frames if f"{os.sep}botocore{os.sep}" in f.filename or f"{os.sep}boto3{os.sep}" in f.filename]


def _from_sdk(exc: BaseException) -> bool:
    return bool(_sdk_frames(exc))


def _in_credentials(exc: BaseException) -> bool:
    return any(f.endswith(f"{os.sep}credentials.py") for f in _sdk_frames(exc))


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


def explain(exc: BaseException) -> KopsyError | None:
    """A ``KopsyError`` for an SDK failure, or None when ``exc`` is not one."""
    try:
        from botocore import exceptions as bx
        from botocore.parsers import ResponseParserError
    except ImportError:  # pragma: no cover - botocore is a dependency
        return None
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
    if isinstance(exc, bx.ProfileNotFound):
        return CredentialsError(
            f"AWS profile {os.environ.get('AWS_PROFILE', '')[:60]!r} does not exist ({_short(exc)}); "
            f"set AWS_PROFILE to a profile in ~/.aws/config (aws configure list-profiles) or unset it"
        )
    if isinstance(exc, bx.ConfigParseError):
        return CredentialsError(f"the AWS config file cannot be parsed ({_short(exc)}); fix ~/.aws/config (or AWS_CONFIG_FILE)")
    if isinstance(exc, (bx.CredentialRetrievalError, bx.InvalidConfigError)):
        return CredentialsError(f"AWS credentials could not be loaded ({_short(exc)}); fix the profile in ~/.aws/config")
    if isinstance(exc, ResponseParserError):
        return CloudError(
            f"the AWS endpoint{' ' + endpoint if endpoint else ''} sent an answer that is not AWS's "
            f"(empty, or an HTML page); if it persists, check AWS_ENDPOINT_URL and any proxy, then re-run"
        )
    if isinstance(exc, bx.BotoCoreError):
        return CloudError(f"talking to AWS failed: {_short(exc)}; check your AWS settings and network, then re-run")
    if not _from_sdk(exc):
        return None
    if _in_credentials(exc):
        return CredentialsError(
            f"AWS credentials could not be loaded ({type(exc).__name__}: {_short(exc)}); check credential_process "
            f"and the credential files your profile in ~/.aws/config names"
        )
    if isinstance(exc, OSError):
        return CredentialsError(
            f"the AWS SDK could not run or read something your AWS config names ({type(exc).__name__}: {_short(exc)}); "
            f"check credential_process and the credential files in ~/.aws/config"
        )
    if isinstance(exc, (KeyError, IndexError, TypeError, AttributeError)):
        return CloudError(
            f"the AWS endpoint{' ' + endpoint if endpoint else ''} sent an answer kopsy cannot understand "
            f"(missing {_short(exc)}: an HTML page or a non-AWS server?); check AWS_ENDPOINT_URL and any proxy"
        )
    if isinstance(exc, ValueError):
        if endpoint:
            return CredentialsError(
                f"AWS_ENDPOINT_URL={endpoint[:80]!r} is not usable ({_short(exc)}); give a URL like https://host:port or unset it"
            )
        return CredentialsError(f"the AWS settings are not usable ({_short(exc)}); check AWS_REGION, AWS_PROFILE and ~/.aws/config")
    return None
