"""Project-wide request guards, in front of every view (settings.MIDDLEWARE).

- `refuse_nul`: a NUL character in the path, a query parameter or a form field is a 400
  that names where it was (a cookie holding one is ignored). PostgreSQL cannot hold NUL
  in text, so such a value reaching a query was a 500 on every page and endpoint that
  filters by it.
- `api_errors_as_json`: an error answer under /api/ that is not JSON (Django's 404/405/
  500 pages, a CSRF refusal) becomes `{"error": {"code", "message"}}`: agents parse JSON.
- `no_store`: nothing this app renders may be kept by a browser or proxy cache. Static
  files are answered by WhiteNoise before this runs (it sits after WhiteNoise), so they
  keep their own caching.

Each is a few string checks per request: the gateway's hot path goes through all three.
"""

from django.http import HttpRequest, HttpResponse, JsonResponse

_NUL = "\x00"
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def api_error(status: int, code: str, message: str, details=None) -> JsonResponse:
    """The API's error shape, for answers made outside the gateway's own handlers."""
    body: dict = {"code": code, "message": message}
    if details:
        body["details"] = details
    return JsonResponse({"error": body}, status=status)


def _shown(name: str) -> str:
    return name.replace(_NUL, "\\x00")[:100]


def _nul_field(request: HttpRequest) -> str | None:
    """Where a NUL is, as the error names it ("path", "query parameter 'workflow'"...)."""
    if _NUL in request.path:
        return "path"
    # The query string is cheap to look at; parse it only when it may hold a NUL.
    query = request.META.get("QUERY_STRING", "")
    if "%00" in query or _NUL in query:
        for key, values in request.GET.lists():
            if _NUL in key or any(_NUL in v for v in values):
                return f"query parameter '{_shown(key)}'"
    if (
        request.method == "POST"
        and not _is_api(request)  # the API reads JSON bodies strictly (traces.jsonbody)
        and request.content_type in _FORM_TYPES
    ):
        for key, values in request.POST.lists():
            if _NUL in key or any(_NUL in v for v in values):
                return f"form field '{_shown(key)}'"
    return None


def _drop_nul_cookies(request: HttpRequest) -> None:
    # A cookie is not a field anyone typed: one holding a NUL (a raw byte, or the octal
    # escape "\\000" the cookie parser decodes) is ignored, as malformed cookies are.
    if request.META.get("HTTP_COOKIE"):
        for name in [n for n, v in request.COOKIES.items() if _NUL in n or _NUL in v]:
            del request.COOKIES[name]


def refuse_nul(get_response):
    def middleware(request: HttpRequest) -> HttpResponse:
        _drop_nul_cookies(request)
        where = _nul_field(request)
        if where is None:
            return get_response(request)
        message = f"{where}: may not contain NUL (\\x00) characters"
        if _is_api(request):
            return api_error(400, "invalid_characters", message, {"field": where})
        return HttpResponse(message, status=400, content_type="text/plain; charset=utf-8")

    return middleware


_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    500: "server_error",
}


def api_errors_as_json(get_response):
    def middleware(request: HttpRequest) -> HttpResponse:
        response = get_response(request)
        if response.status_code < 400 or not _is_api(request):
            return response
        if response.get("Content-Type", "").startswith("application/json"):
            return response
        status = response.status_code
        if status == 405:
            message = f"{request.method} is not allowed here (allowed: {response.get('Allow', '')})"
        elif status >= 500:
            message = "internal server error"
        else:
            message = f"the request was refused ({status} {response.reason_phrase})"
        converted = api_error(status, _CODES.get(status, "error"), message)
        if "Allow" in response:
            converted["Allow"] = response["Allow"]
        return converted

    return middleware


def no_store(get_response):
    def middleware(request: HttpRequest) -> HttpResponse:
        response = get_response(request)
        # A view that chose its own caching keeps it; everything else is private.
        if "Cache-Control" not in response:
            response["Cache-Control"] = "no-store"
        return response

    return middleware
