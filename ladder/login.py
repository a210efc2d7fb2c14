"""Sign-in throttling glue for django-axes (settings: "Login", security review finding 8)."""

import ipaddress
import math

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def client_address(request: HttpRequest) -> str | None:
    """The address failed sign-ins are counted against.

    REMOTE_ADDR, unless LADDER_CLIENT_IP_HEADER names the header a reverse proxy sets; of a
    list (X-Forwarded-For) the last entry is the one that proxy added, the others are the
    client's to choose. Anything that is not an address falls back to REMOTE_ADDR.
    """
    header = settings.LADDER_CLIENT_IP_HEADER
    if header:
        candidate = request.META.get(header, "").rsplit(",", 1)[-1].strip()
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            pass
    return request.META.get("REMOTE_ADDR")


def lockout_response(request: HttpRequest, original_response=None, credentials=None):
    """429 with the same page for every name, existing or not, and when to try again."""
    minutes = math.ceil(settings.AXES_COOLOFF_TIME.total_seconds() / 60)
    response: HttpResponse = render(
        request, "registration/locked_out.html", {"minutes": minutes}, status=429
    )
    response["Retry-After"] = str(int(settings.AXES_COOLOFF_TIME.total_seconds()))
    return response
