"""Deployment checks: the dev defaults that make `make run` work must not reach a server."""

from django.conf import settings
from django.core.checks import Warning, register

from ladder.settings import _INSECURE_DEV_KEY, _INSECURE_PSEUDONYM_KEY


@register(deploy=True)
def insecure_keys(app_configs, **kwargs):
    problems = []
    if settings.SECRET_KEY == _INSECURE_DEV_KEY:
        problems.append(
            Warning(
                "SECRET_KEY is the development default",
                id="ladder.W001",
                hint="set SECRET_KEY in the environment",
            )
        )
    if settings.LADDER_PSEUDONYM_KEY == _INSECURE_PSEUDONYM_KEY:
        problems.append(
            Warning(
                "LADDER_PSEUDONYM_KEY is the development default: pseudonyms can be reversed by "
                "anyone who guesses a value",
                id="ladder.W002",
                hint="set LADDER_PSEUDONYM_KEY to a long random secret and keep it stable",
            )
        )
    return problems
