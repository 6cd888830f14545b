"""What the sync and async clients share: calls as data, error decoding, the retry policy.

Why calls as data: every public route is described once (``Call``: method, path, body, the
model of the answer, whether repeating it is harmless), and two small engines send it, one on
``httpx.Client`` and one on ``httpx.AsyncClient``. The two clients cannot drift apart.

Retries (tenacity): a call that is idempotent (every GET, and the POSTs that change nothing or
are deduplicated by id: sizing, overlap, decisions, events by ``event_id``, profile updates by
``update_id``) is retried on a transport error or a 429/502/503/504 answer, with exponential
backoff. Any other call is retried only when the connection could not be made at all (the
request never left), so a create is never sent twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import BaseModel, TypeAdapter
from tenacity import retry_if_exception, stop_after_attempt, wait_exponential

from adtarget import errors

RETRY_STATUSES = frozenset({429, 502, 503, 504})


@dataclass(frozen=True)
class Call:
    """One HTTP call to adtarget and how to read its answer.

    ``answer`` is a pydantic model (or any type ``TypeAdapter`` validates) for the JSON body;
    ``None`` returns the JSON as it is; ``str`` returns the body text (CSV, XML).
    """

    method: str
    path: str
    params: dict[str, Any] | None = None
    json: Any = None
    content: bytes | None = None
    files: dict[str, Any] | None = None
    data: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    answer: Any = None
    idempotent: bool = False
    unwrap: str | None = None  # read the answer from this key of the JSON body


class RetryableStatus(Exception):
    """An answer worth another try (429/502/503/504 to an idempotent call)."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


def _error_classes() -> dict[str, type[errors.AdtargetError]]:
    out: dict[str, type[errors.AdtargetError]] = {}
    todo: list[type[errors.AdtargetError]] = [errors.AdtargetError]
    while todo:
        cls = todo.pop(0)
        if cls.__module__ == errors.__name__:  # the public hierarchy, not server internals
            out.setdefault(cls.code, cls)
        todo.extend(cls.__subclasses__())
    return out


_BY_STATUS: dict[int, type[errors.AdtargetError]] = {
    401: errors.Unauthorized,
    403: errors.Forbidden,
    404: errors.NotFound,
    409: errors.Conflict,
    413: errors.PayloadTooLarge,
    422: errors.InvalidValue,
    503: errors.StoreUnavailable,
}


def error_from(response: httpx.Response) -> errors.AdtargetError:
    """The typed error of an error answer: the class whose ``code`` the body names (then the
    status's class), carrying the body's message, field and details, plus ``.status``."""
    body: dict[str, Any] = {}
    try:
        parsed = response.json()
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
            body = dict(parsed["error"])
    except ValueError:
        pass
    code = str(body.pop("code", "") or "")
    message = str(body.pop("message", "") or f"HTTP {response.status_code}: {response.text[:200]}")
    field_name = body.pop("field", None)
    cls = _error_classes().get(code) or _BY_STATUS.get(response.status_code, errors.AdtargetError)
    err = cls.__new__(cls)
    errors.AdtargetError.__init__(err, message, field=field_name, **body)
    err.status = response.status_code  # type: ignore[attr-defined]
    if code and code != cls.code:
        err.details["code"] = code
    return err


def decode(call: Call, response: httpx.Response) -> Any:
    """The answer of a successful call, as ``call.answer`` says."""
    if call.answer is str:
        return response.text
    if response.status_code == 204 or not response.content:
        return None
    data = response.json()
    if call.unwrap is not None:
        data = data[call.unwrap]
    if call.answer is None:
        return data
    if isinstance(call.answer, type) and issubclass(call.answer, BaseModel):
        return call.answer.model_validate(data)
    return TypeAdapter(call.answer).validate_python(data)


def check(call: Call, response: httpx.Response) -> None:
    """Raise ``RetryableStatus`` (worth retrying) or the typed error of a non-2xx answer."""
    if response.status_code in RETRY_STATUSES and call.idempotent:
        raise RetryableStatus(response)
    if response.status_code >= 400:
        raise error_from(response)


def retry_policy(call: Call, retries: int, backoff: float) -> dict[str, Any]:
    """tenacity arguments for ``call``: what to retry, how often, how long to wait."""

    def worth_retrying(exc: BaseException) -> bool:
        if isinstance(exc, RetryableStatus):
            return True
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return True  # the request never left: safe for any call
        return call.idempotent and isinstance(exc, httpx.TransportError)

    return {
        "stop": stop_after_attempt(retries + 1),
        "wait": wait_exponential(multiplier=backoff, max=5),
        "retry": retry_if_exception(worth_retrying),
        "reraise": True,
    }


def headers_for(api_key: str | None) -> dict[str, str]:
    """The headers every call carries."""
    out = {"User-Agent": "adtarget-client", "Accept": "application/json"}
    if api_key:
        out["Authorization"] = f"Bearer {api_key}"
    return out
