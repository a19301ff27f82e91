"""LLM-as-judge through any OpenAI-compatible chat-completions endpoint.

Why this design: the paper scores every prediction with LLM judges (GPT-4o mini, Gemini 1.5 Flash) that
return JSON with ``evaluation``, ``reasoning_score`` (0/1) and ``prediction_score`` (0/1). Real endpoints
rate-limit, fail, time out and sometimes answer in prose, so a usable harness needs:

* temperature 0 and a versioned prompt (:data:`PROMPT_VERSION`), so scores are reproducible;
* parsing that accepts bare JSON, fenced JSON and JSON inside prose, with a regex fallback for
  "reasoning_score: 1"-style prose — and that counts a reply it cannot read instead of guessing;
* our own bounded retries with exponential backoff (the ``openai`` client's retries are switched off so
  exactly one policy is in force) and a concurrency limit;
* a persistent JSONL cache keyed by (judge model, prompt version, question, reference, prediction) that
  stores the judge's *reply text* — replies are parsed on every read, so a parser fix needs no new
  requests, and a second run of the same judgement sends none;
* every sample kept in the denominator: an item whose judgement failed scores 0 and is counted as a
  parse or API failure in the stats, never dropped.

Medical data often may not leave the hospital: point ``base_url`` at a local vLLM/Ollama server.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rarl.config import JudgeConfig
from rarl.errors import UserError
from rarl.eval.records import PredictionRecord
from rarl.io import append_jsonl, atomic_write_text, read_jsonl

PROMPT_VERSION = "rarl-judge-v1"

# Written from the paper's description of its judge (Appendix B): the judge sees the question, the
# ground-truth answer and the model's full response, and returns a short evaluation plus two binary scores.
JUDGE_SYSTEM_PROMPT = (
    "You are an expert medical evaluator who grades the answers of a medical visual question answering "
    "assistant. You do not see the image; judge the response against the question and the ground-truth "
    "answer using sound clinical knowledge."
)

JUDGE_USER_TEMPLATE = """Evaluate the model response below.

Question: {question}
Ground-truth answer: {reference}
Model response (reasoning and final answer):
{prediction}

Give two binary scores:
- "reasoning_score": 1 if the response contains step-by-step reasoning that is medically sound, consistent \
with the question and leads logically to its final answer; 0 if the reasoning is missing, wrong, \
irrelevant or contradicts the final answer.
- "prediction_score": 1 if the final answer is correct, i.e. it means the same as the ground-truth answer \
(synonyms, paraphrases and equivalent yes/no wording count as correct); 0 otherwise.

Reply with only a JSON object, no other text:
{{"evaluation": "<one or two sentences explaining your scores>", "reasoning_score": <0 or 1>, \
"prediction_score": <0 or 1>}}"""


def judge_messages(question: str, reference: str, prediction: str) -> list[dict[str, str]]:
    """The chat messages sent to a judge for one prediction."""
    user = JUDGE_USER_TEMPLATE.format(
        question=question.strip(), reference=str(reference).strip(), prediction=(prediction or "").strip()
    )
    return [{"role": "system", "content": JUDGE_SYSTEM_PROMPT}, {"role": "user", "content": user}]


def judged_text(record: PredictionRecord) -> str:
    """What the judge grades: the model's full output (reasoning and answer), else the extracted answer."""
    return record.raw_output.strip() or record.pred_answer


# --------------------------------------------------------------------------------------------------
# parsing


class JudgeParseError(ValueError):
    """A judge reply that holds no readable pair of 0/1 scores."""


@dataclass
class Verdict:
    """One parsed judge reply."""

    reasoning_score: int
    prediction_score: int
    evaluation: str = ""
    parsed_by: str = "json"  # json | fenced | embedded | regex


_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
_SCORE_TAIL = r"[\"'*`]*\s*(?:[:=]|\bis\b|\bof\b)?\s*[\"'*`]*\s*(\d+(?:\.\d+)?)"
_SCORE_PATTERNS = {
    "reasoning_score": re.compile(r"[\"']?reasoning[\s_-]*score" + _SCORE_TAIL, re.IGNORECASE),
    "prediction_score": re.compile(r"[\"']?prediction[\s_-]*score" + _SCORE_TAIL, re.IGNORECASE),
}
_EVALUATION = re.compile(r"[\"']?evaluation[\"']?\s*[:=]\s*[\"']?(.+?)(?:[\"']?\s*(?:,|\n|$))", re.IGNORECASE)


def _binary(value: Any, name: str) -> int:
    """0/1 from an int, float, bool or numeric string; anything else is a parse error."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        value = value.strip()
        try:
            value = float(value)
        except ValueError:
            raise JudgeParseError(f"{name} is {value!r}, not 0 or 1") from None
    if isinstance(value, (int, float)) and float(value) in (0.0, 1.0):
        return int(value)
    raise JudgeParseError(f"{name} is {value!r}, not 0 or 1")


def _from_object(data: Any, parsed_by: str) -> Verdict:
    if not isinstance(data, dict):
        raise JudgeParseError("the JSON is not an object")
    lowered = {str(k).strip().lower(): v for k, v in data.items()}
    missing = [k for k in ("reasoning_score", "prediction_score") if k not in lowered]
    if missing:
        raise JudgeParseError(f"the JSON object lacks {', '.join(missing)}")
    return Verdict(
        reasoning_score=_binary(lowered["reasoning_score"], "reasoning_score"),
        prediction_score=_binary(lowered["prediction_score"], "prediction_score"),
        evaluation=str(lowered.get("evaluation") or ""),
        parsed_by=parsed_by,
    )


def _json_objects(text: str) -> list[str]:
    """Every balanced ``{...}`` span in ``text`` (outermost first), for JSON embedded in prose."""
    spans = []
    for start, char in enumerate(text):
        if char != "{":
            continue
        depth, in_string, escaped = 0, False, False
        for end in range(start, len(text)):
            c = text[end]
            if in_string:
                if escaped:
                    escaped = False
                elif c == "\\":
                    escaped = True
                elif c == '"':
                    in_string = False
            elif c == '"':
                in_string = True
            elif c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    spans.append(text[start : end + 1])
                    break
    return spans


def parse_judge_reply(text: str | None) -> Verdict:
    """Read a judge reply: bare JSON, fenced JSON, a JSON object inside prose, then a prose regex.

    Raises :class:`JudgeParseError` when no step finds both scores as 0/1 values.
    """
    if text is None or not str(text).strip():
        raise JudgeParseError("empty reply")
    text = str(text).strip()
    errors: list[str] = []
    candidates: list[tuple[str, str]] = [(text, "json")]
    candidates += [(block.strip(), "fenced") for block in _FENCE.findall(text)]
    candidates += [(span, "embedded") for span in _json_objects(text)]
    for candidate, how in candidates:
        try:
            data = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        try:
            return _from_object(data, how)
        except JudgeParseError as exc:
            errors.append(str(exc))
    found = {name: pattern.findall(text) for name, pattern in _SCORE_PATTERNS.items()}
    if all(found.values()):
        evaluation = _EVALUATION.search(text)
        return Verdict(
            reasoning_score=_binary(found["reasoning_score"][-1], "reasoning_score"),
            prediction_score=_binary(found["prediction_score"][-1], "prediction_score"),
            evaluation=evaluation.group(1).strip() if evaluation else text[:300],
            parsed_by="regex",
        )
    raise JudgeParseError(errors[0] if errors else "no JSON object and no reasoning_score/prediction_score")


# --------------------------------------------------------------------------------------------------
# cache


def cache_key(judge_model: str, question: str, reference: str, prediction: str) -> str:
    """Stable key of one judgement: any change in model, prompt version or inputs is a new key."""
    payload = json.dumps([judge_model, PROMPT_VERSION, question, reference, prediction], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class JudgeCache:
    """Append-only JSONL of judge replies, loaded once; safe to share between judges in one process."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._replies: dict[str, str] = {}
        self._lock = threading.Lock()
        if self.path.exists():
            lines = self.path.read_text(encoding="utf-8")
            for entry in read_jsonl(self.path, tolerate_truncated_tail=True):
                if isinstance(entry.get("key"), str) and isinstance(entry.get("reply"), str):
                    self._replies[entry["key"]] = entry["reply"]
            if lines and not lines.endswith("\n"):
                # An interrupted writer left half a line: drop it so the next append starts a clean line.
                kept = [
                    json.dumps({"key": k, "reply": v}, ensure_ascii=False) for k, v in self._replies.items()
                ]
                atomic_write_text(self.path, "".join(line + "\n" for line in kept))

    def __len__(self) -> int:
        return len(self._replies)

    def get(self, key: str) -> str | None:
        return self._replies.get(key)

    def put(self, key: str, reply: str, meta: dict[str, Any]) -> None:
        with self._lock:
            self._replies[key] = reply
            append_jsonl(self.path, [{"key": key, "reply": reply, **meta}])


# --------------------------------------------------------------------------------------------------
# results


@dataclass
class Judgement:
    """The outcome of judging one prediction (``status`` ok | parse_error | api_error)."""

    key: str  # PredictionRecord.key
    judge: str
    model: str
    status: str
    reasoning_score: int | None = None
    prediction_score: int | None = None
    evaluation: str = ""
    parsed_by: str | None = None
    cached: bool = False
    attempts: int = 0
    error: str | None = None
    reply: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Judgement:
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class JudgeStats:
    """Counts for one judge run: every item is ok, a parse error or an API error."""

    n: int = 0
    ok: int = 0
    parse_errors: int = 0
    api_errors: int = 0
    cache_hits: int = 0
    requests: int = 0  # HTTP attempts actually sent, retries included
    retries: int = 0
    parsed_by: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _verdict_judgement(base: dict[str, Any], reply: str) -> Judgement:
    try:
        verdict = parse_judge_reply(reply)
    except JudgeParseError as exc:
        return Judgement(**base, status="parse_error", error=str(exc), reply=reply)
    return Judgement(
        **base,
        status="ok",
        reasoning_score=verdict.reasoning_score,
        prediction_score=verdict.prediction_score,
        evaluation=verdict.evaluation,
        parsed_by=verdict.parsed_by,
        reply=reply,
    )


# --------------------------------------------------------------------------------------------------
# requests


def _retryable(exc: BaseException) -> bool:
    import openai

    transient = (openai.APITimeoutError, openai.APIConnectionError, openai.APIResponseValidationError)
    if isinstance(exc, transient):
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in (408, 409, 425, 429) or exc.status_code >= 500
    # A 200 whose body is not JSON surfaces from the client as a bare JSONDecodeError.
    return isinstance(exc, (_MalformedResponse, json.JSONDecodeError))


class _MalformedResponse(Exception):
    """HTTP 200 whose body is not a chat completion (a proxy's error page, truncated JSON...)."""


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    value = getattr(response, "headers", {}).get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _error_text(exc: BaseException) -> str:
    status = getattr(exc, "status_code", None)
    name = type(exc).__name__
    message = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{name}{f' (HTTP {status})' if status else ''}: {message}"


def make_client(judge: JudgeConfig) -> Any:
    """An ``openai.AsyncOpenAI`` client for one judge, with the client's own retries disabled."""
    import openai

    key = os.environ.get(judge.api_key_env) if judge.api_key_env else "not-needed"
    if not key:
        raise UserError(
            f"judge '{judge.name}': environment variable {judge.api_key_env} is not set "
            "(set it, or set api_key_env to '' for a local server without keys)"
        )
    return openai.AsyncOpenAI(api_key=key, base_url=judge.base_url, max_retries=0, timeout=judge.timeout_s)


async def _request(
    client: Any, judge: JudgeConfig, messages: list[dict[str, str]], stats: JudgeStats
) -> tuple[str, int]:
    """One judgement with bounded retries and exponential backoff; returns (reply text, attempts).

    A final failure is re-raised with ``rarl_attempts`` set on the exception.
    """
    attempt = 0
    while True:
        stats.requests += 1
        try:
            response = await client.chat.completions.create(
                model=judge.model, messages=messages, temperature=0.0
            )
            try:
                content = response.choices[0].message.content
            except (AttributeError, IndexError, TypeError) as exc:
                raise _MalformedResponse(f"no choices[0].message.content in the response ({exc})") from None
            return (content if isinstance(content, str) else ""), attempt + 1
        except Exception as exc:  # classified below; non-retryable errors propagate
            if not _retryable(exc) or attempt >= judge.max_retries:
                exc.rarl_attempts = attempt + 1  # type: ignore[attr-defined]
                raise
            delay = judge.backoff_s * (2**attempt)
            hinted = _retry_after(exc)
            if hinted is not None:
                delay = max(delay, min(hinted, 30.0))
            attempt += 1
            stats.retries += 1
            await asyncio.sleep(delay)


async def _judge_all(
    records: Sequence[PredictionRecord], judge: JudgeConfig, cache: JudgeCache, client: Any, progress: bool
) -> tuple[list[Judgement], JudgeStats]:
    stats = JudgeStats(n=len(records))
    results: list[Judgement | None] = [None] * len(records)
    semaphore = asyncio.Semaphore(max(1, judge.concurrency))
    bar = None
    if progress and records:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(records), desc=f"judge {judge.name}", unit="item")

    async def one(index: int, record: PredictionRecord) -> None:
        prediction = judged_text(record)
        key = cache_key(judge.model, record.question, record.reference_answer, prediction)
        base = {"key": record.key, "judge": judge.name, "model": judge.model}
        reply = cache.get(key)
        if reply is not None:
            stats.cache_hits += 1
            result = _verdict_judgement({**base, "cached": True}, reply)
        else:
            messages = judge_messages(record.question, record.reference_answer, prediction)
            async with semaphore:
                try:
                    reply, attempts = await _request(client, judge, messages, stats)
                except Exception as exc:  # every failure is recorded, none aborts the run
                    attempts = getattr(exc, "rarl_attempts", 1)
                    result = Judgement(**base, status="api_error", error=_error_text(exc), attempts=attempts)
                else:
                    cache.put(key, reply, {"judge_model": judge.model, "prompt_version": PROMPT_VERSION})
                    result = _verdict_judgement({**base, "attempts": attempts}, reply)
        results[index] = result
        if bar is not None:
            bar.update(1)

    try:
        await asyncio.gather(*(one(i, r) for i, r in enumerate(records)))
    finally:
        if bar is not None:
            bar.close()
    final = [r for r in results if r is not None]
    counts = Counter(r.status for r in final)
    stats.ok, stats.parse_errors, stats.api_errors = counts["ok"], counts["parse_error"], counts["api_error"]
    stats.parsed_by = dict(Counter(r.parsed_by for r in final if r.parsed_by))
    return final, stats


def _client_if_needed(records: Sequence[PredictionRecord], judge: JudgeConfig, cache: JudgeCache) -> Any:
    """A client only when some item is not cached: re-scoring from the cache needs no API key."""
    keys = [cache_key(judge.model, r.question, r.reference_answer, judged_text(r)) for r in records]
    misses = sum(cache.get(key) is None for key in keys)
    return make_client(judge) if misses else None


def run_judge(
    records: Sequence[PredictionRecord],
    judge: JudgeConfig,
    *,
    cache: JudgeCache | None = None,
    client: Any = None,
    progress: bool = True,
) -> tuple[list[Judgement], JudgeStats]:
    """Judge every record with one judge; results are in record order, one per record."""
    cache = cache if cache is not None else JudgeCache(judge.cache_path)
    client = client if client is not None else _client_if_needed(records, judge, cache)
    return asyncio.run(_judge_all(records, judge, cache, client, progress))


def run_judges(
    records: Sequence[PredictionRecord], judges: Sequence[JudgeConfig], *, progress: bool = True
) -> dict[str, tuple[list[Judgement], JudgeStats]]:
    """Run several judges at once (each with its own concurrency limit); caches in one file are shared."""
    caches: dict[Path, JudgeCache] = {}
    plans = []
    for judge in judges:
        path = Path(judge.cache_path).resolve()
        if path not in caches:
            caches[path] = JudgeCache(path)
        plans.append((judge, caches[path], _client_if_needed(records, judge, caches[path])))

    async def all_judges() -> list[tuple[list[Judgement], JudgeStats]]:
        return await asyncio.gather(*(_judge_all(records, j, c, cl, progress) for j, c, cl in plans))

    results = asyncio.run(all_judges()) if plans else []
    return {judge.name: result for (judge, _, _), result in zip(plans, results, strict=True)}


# --------------------------------------------------------------------------------------------------
# summaries


def summarize(
    records: Sequence[PredictionRecord], judgements: Sequence[Judgement], labels: Sequence[str]
) -> dict[str, Any]:
    """Reasoning % and Final % per dataset row label and overall; failed items count as 0.

    Every sample stays in the denominator (a judge failure must not make a model look better), and the
    number of failures is reported beside each percentage.
    """
    by_key = {j.key: j for j in judgements}
    groups: dict[str, list[Judgement | None]] = {}
    for record, label in zip(records, labels, strict=True):
        groups.setdefault(label, []).append(by_key.get(record.key))
    groups_all = [by_key.get(r.key) for r in records]

    def block(items: list[Judgement | None]) -> dict[str, Any]:
        n = len(items)
        ok = [j for j in items if j is not None and j.status == "ok"]
        return {
            "n": n,
            "judged": len(ok),
            "failed": n - len(ok),
            "reasoning": 100.0 * sum(j.reasoning_score or 0 for j in ok) / n if n else None,
            "final": 100.0 * sum(j.prediction_score or 0 for j in ok) / n if n else None,
        }

    datasets = {label: block(items) for label, items in groups.items()}
    return {"datasets": datasets, "overall": block(groups_all)}


def write_judgements(path: str | os.PathLike[str], judgements: Sequence[Judgement]) -> Path:
    """All judgements of one judge as JSONL (rewritten atomically: it is derived data, not a log)."""
    text = "".join(json.dumps(j.to_dict(), ensure_ascii=False) + "\n" for j in judgements)
    return atomic_write_text(path, text)


def read_judgements(path: str | os.PathLike[str]) -> list[Judgement]:
    return [Judgement.from_dict(row) for row in read_jsonl(path)]


__all__ = [
    "JUDGE_SYSTEM_PROMPT",
    "JUDGE_USER_TEMPLATE",
    "PROMPT_VERSION",
    "JudgeCache",
    "JudgeParseError",
    "JudgeStats",
    "Judgement",
    "Verdict",
    "cache_key",
    "judge_messages",
    "judged_text",
    "make_client",
    "parse_judge_reply",
    "read_judgements",
    "run_judge",
    "run_judges",
    "summarize",
    "write_judgements",
]
