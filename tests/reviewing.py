"""A reviewer deciding runs through the review forms over HTTP, as a browser does: sign in
(cookies, CSRF), open /runs/<id>/, post the form (the MCP proxy's end-to-end tests, and
the fault tests' people in tests/traces/test_redis_down_pages.py)."""

import html
import re

import httpx


class Reviewer:
    def __init__(self, base_url: str, username: str, password: str):
        self.http = httpx.Client(base_url=base_url, timeout=30)
        self.username = username
        login = self.http.get("/accounts/login/")
        answer = self.http.post(
            "/accounts/login/",
            data={
                "username": username,
                "password": password,
                "csrfmiddlewaretoken": self._csrf(login.text),
            },
        )
        assert answer.status_code == 302, f"{username} could not sign in: {answer.status_code}"

    @staticmethod
    def _csrf(page: str) -> str:
        return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)

    def get(self, path: str) -> httpx.Response:
        return self.http.get(path)

    def decide(
        self,
        run_id: str,
        verdict: str,
        *,
        reason: str = "",
        edits: dict | None = None,
        option: int = 0,
    ) -> httpx.Response:
        """`verdict` is the button pressed: approve / reject (L3, escalations), submit /
        discard (L1 drafts, with `edits` typed over the draft's fields), pick (L2, the
        card numbered `option`)."""
        page = self.http.get(f"/runs/{run_id}/")
        assert page.status_code == 200, page.status_code
        fields = dict(re.findall(r'name="(seen_hash|seen_version)" value="([^"]*)"', page.text))
        data = {"verdict": verdict, "csrfmiddlewaretoken": self._csrf(page.text), **fields}
        if reason:
            data["reason"] = reason
        if verdict in ("submit", "discard"):
            for name, value in re.findall(r'name="param__([^"]+)"[^>]*value="([^"]*)"', page.text):
                data[f"param__{name}"] = html.unescape(value)
            for name, value in (edits or {}).items():
                data[f"param__{name}"] = str(value)
        if verdict == "pick":
            data["option"] = str(option)
        answer = self.http.post(f"/runs/{run_id}/decide", data=data)
        assert answer.status_code == 302, (answer.status_code, answer.text[-2000:])
        return answer

    def close(self) -> None:
        self.http.close()
