"""The one OpenAI-compatible client of rarl: the judges' and the ``openai`` generation backend's.

Why one module: a judge and a served model under evaluation are the same kind of endpoint (a base URL, a
model name, a key in an environment variable, a concurrency limit, bounded retries and a total deadline
per request) and fail the same ways (rate limits, 5xx, a server dripping bytes, a 200 whose body is no
completion). Both get, from here:

* the ``openai`` client's own bounded retries (``max_retries``; its exponential backoff honours
  ``Retry-After``) for timeouts, connection errors, 408/409/429 and 5xx, plus our one retry it lacks, of
  a 200 whose body is no completion (after ``backoff_s·2^k``, within the same ``max_retries``);
* an HTTP transport that gives every attempt a total deadline of ``timeout_s`` (httpx's timeouts are per
  network read, so a server dripping one byte a second would otherwise hold a request forever) and counts
  every attempt sent.

An endpoint is anything with the fields of :class:`Endpoint` (``rarl.config.JudgeConfig`` and
``rarl.config.OpenAIGenerationConfig`` both are).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import os
from typing import Any, Protocol

from rarl.errors import UserError


class Endpoint(Protocol):
    """The settings of one OpenAI-compatible endpoint (the field names of a judge's config)."""

    model: str
    base_url: str | None
    api_key_env: str
    concurrency: int
    max_retries: int
    timeout_s: float
    backoff_s: float


class MalformedResponse(Exception):
    """HTTP 200 whose body is not a chat completion (a proxy's error page, truncated JSON...)."""


def _malformed(exc: BaseException) -> bool:
    """A 200 reply whose body holds no completion: the one failure the ``openai`` client does not retry."""
    import openai

    # A body that is not JSON surfaces from the client as a bare JSONDecodeError.
    return isinstance(exc, (MalformedResponse, json.JSONDecodeError, openai.APIResponseValidationError))


# The attempt counter of the request running in the current asyncio task (each request is one task, and
# the client's retries run inside it), so the transport can count every attempt it sends.
_ATTEMPTS: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("rarl_attempts", default=None)


def _deadline_transport(timeout_s: float) -> Any:
    """The transport of :func:`make_client` (built here so the ``openai`` client's HTTP library is
    imported only when an endpoint is actually asked)."""
    from rarl.compat import openai_http_library

    httpx = openai_http_library()

    class _DeadlineTransport(httpx.AsyncBaseTransport):
        """Counts every HTTP attempt and gives each one a total deadline of ``timeout_s``.

        The whole attempt (connect, headers and the complete body) must finish within the deadline, else
        it raises ``httpx.ReadTimeout``, which the ``openai`` client treats like any timeout: retried
        within ``max_retries``.
        """

        def __init__(self, timeout_s: float, inner: httpx.AsyncBaseTransport | None = None) -> None:
            self.timeout_s = timeout_s
            self.inner = inner or httpx.AsyncHTTPTransport()

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            counter = _ATTEMPTS.get()
            if counter is not None:
                counter[0] += 1

            async def whole_reply() -> httpx.Response:
                response = await self.inner.handle_async_request(request)
                try:
                    raw = b"".join([chunk async for chunk in response.aiter_raw()])
                finally:
                    await response.aclose()
                return httpx.Response(
                    response.status_code,
                    headers=response.headers,
                    content=raw,
                    extensions=response.extensions,
                )

            try:
                return await asyncio.wait_for(whole_reply(), timeout=self.timeout_s)
            except TimeoutError:
                raise httpx.ReadTimeout("no complete reply within timeout_s", request=request) from None

        async def aclose(self) -> None:
            await self.inner.aclose()

    return _DeadlineTransport(timeout_s)


def error_text(exc: BaseException) -> str:
    """One line naming a failed request's error (class, HTTP status, first line of the message)."""
    if isinstance(exc, TimeoutError) and not str(exc):
        return "TimeoutError: no complete reply within timeout_s"
    status = getattr(exc, "status_code", None)
    name = type(exc).__name__
    message = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{name}{f' (HTTP {status})' if status else ''}: {message}"


def api_key(endpoint: Endpoint, owner: str, alternative: str = "") -> str:
    """The endpoint's API key from its environment variable (``"not-needed"`` when ``api_key_env`` is "").

    ``owner`` names the endpoint in the message (``judge 'gpt'``, ``eval.openai``); ``alternative`` a way
    around it (``pass --no-judges, ``).
    """
    key = os.environ.get(endpoint.api_key_env) if endpoint.api_key_env else "not-needed"
    if not key:
        raise UserError(
            f"{owner}: environment variable {endpoint.api_key_env} is not set "
            f"(set it, {alternative}or set api_key_env to '' for a local server without keys)"
        )
    return key


def make_client(endpoint: Endpoint, owner: str) -> Any:
    """An ``openai.AsyncOpenAI`` client: the client's own retries, our per-attempt deadline.

    The client retries connection errors, timeouts, 408/409/429 and 5xx (up to ``max_retries``) with its
    own exponential backoff, honouring ``Retry-After`` (seconds, milliseconds or an HTTP date, up to
    2 minutes); the transport gives every attempt a total deadline and counts it.
    """
    import openai

    key = api_key(endpoint, owner)
    http_client = openai.DefaultAsyncHttpxClient(transport=_deadline_transport(endpoint.timeout_s))
    return openai.AsyncOpenAI(
        api_key=key,
        base_url=endpoint.base_url,
        max_retries=endpoint.max_retries,
        timeout=endpoint.timeout_s,
        http_client=http_client,
    )


async def complete(
    client: Any,
    endpoint: Endpoint,
    messages: list[dict[str, Any]],
    counter: list[int] | None = None,
    **options: Any,
) -> tuple[str, int]:
    """One chat completion; returns (reply text, HTTP attempts sent).

    Status-code, timeout and connection retries are the client's. Ours is only the retry of a 200 whose
    body is no completion (after ``backoff_s·2^k``), and all retries together stay within ``max_retries``:
    each call gives the client only the attempts left. A final failure is re-raised with
    ``rarl_attempts`` set on the exception. ``counter`` (one integer) counts the attempts as they are
    sent, for a caller that tallies them whatever the outcome; ``options`` go to
    ``chat.completions.create`` (temperature, max_tokens).
    """
    counter = counter if counter is not None else [0]
    _ATTEMPTS.set(counter)  # this request's own task: concurrent requests count separately
    malformed_retries = 0
    try:
        while True:
            remaining = max(0, endpoint.max_retries - counter[0])
            try:
                response = await client.with_options(max_retries=remaining).chat.completions.create(
                    model=endpoint.model, messages=messages, **options
                )
                try:
                    content = response.choices[0].message.content
                except (AttributeError, IndexError, TypeError) as exc:
                    reason = f"no choices[0].message.content in the response ({exc})"
                    raise MalformedResponse(reason) from None
                return (content if isinstance(content, str) else ""), counter[0]
            except Exception as exc:  # only a malformed body is ours to retry; the rest propagate
                if not _malformed(exc) or counter[0] > endpoint.max_retries:
                    raise
                await asyncio.sleep(endpoint.backoff_s * (2**malformed_retries))
                malformed_retries += 1
    except Exception as exc:
        exc.rarl_attempts = max(1, counter[0])  # type: ignore[attr-defined]
        raise


__all__ = ["Endpoint", "MalformedResponse", "api_key", "complete", "error_text", "make_client"]
