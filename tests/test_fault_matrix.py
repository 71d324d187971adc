"""Every fault a provider can throw at the router × both wire formats × plain/streamed.

For each cell of the matrix: what the router does (fall back, retry the same provider after a
backoff, drop the provider, look for a larger context window, fail fast, surface the partial
answer) follows ``_errors.ERROR_POLICY`` and DESIGN.md section 2; the user gets one clear error
when the router gives up; the ledger has exactly one correct row per attempt and equals what the
simulator served and billed.

Three situations per fault:
  * a healthy second provider is configured (fallback on)
  * every provider fails the same way (the router must give up, clearly)
  * fallback is off (only the same provider may be retried)

Faults the simulator injects are joined by three the network makes: a refused connection, a
server too slow to answer (read timeout), and a stream that stalls after its first words.
"""

from __future__ import annotations

import pytest
from helpers import (
    FAULT_OUTCOMES,
    NETWORK_FAULTS,
    Sleeps,
    assert_ledger_matches_sim,
    closed_port,
    expected_fault,
    rows,
    simulator_fixtures,
)

from llmroute_magic import AllProvidersFailed, Completion, ModelClientRouter, ProviderError, ProviderRoutingConfig
from llmroute_magic._errors import ERROR_POLICY, Policy
from llmroute_magic.sim import FAULT_KINDS, ProviderProfile

APIS = ("openai", "anthropic")
TIMEOUT_S = 0.25  # the spec timeout for the slow cases: long enough for loopback, short for the suite
RETRY_AFTER_S = 0.7

PROFILES = [
    ProviderProfile(
        f"{api}-{x}",
        api=api,
        model=f"{api}-{x}-model",
        input_price=1.0,
        output_price=2.0,
        context_window=4000,
        retry_after_s=RETRY_AFTER_S,
        seed=i,
    )
    for i, (api, x) in enumerate((a, x) for a in APIS for x in ("a", "b"))
]

STREAM_ONLY = {"stalled_stream"}  # a plain answer is not paced: it cannot stall half way


def expected(fault: str, api: str, streamed: bool) -> tuple[str, int | None, Policy]:
    """(error_type, http_status, what the router must do) for one cell of the matrix."""
    error_type, status = expected_fault(fault, api, streamed)
    policy = ERROR_POLICY[error_type]
    if streamed and fault in ("stream_error", "truncated_stream", "stalled_stream"):
        policy = Policy.SURFACE  # the user already saw the first words: never retried behind their back
    return error_type, status, policy


CASES = [
    pytest.param(fault, api, streamed, id=f"{fault}-{api}-{'stream' if streamed else 'plain'}")
    for fault in FAULT_OUTCOMES
    for api in APIS
    for streamed in (False, True)
    if streamed or fault not in STREAM_ONLY
]


def test_the_matrix_covers_every_fault_the_simulator_can_inject():
    assert set(FAULT_KINDS) == set(FAULT_OUTCOMES) - set(NETWORK_FAULTS)


sim, fresh = simulator_fixtures(PROFILES)


def arrange(sim, fault: str, api: str, faulty: tuple[str, ...], *, count: int = 1) -> list:
    """Specs for ``<api>-a`` and ``<api>-b``; the ones named in ``faulty`` fail ``count`` times with ``fault``."""
    specs = []
    for spec in sim.provider_specs([f"{api}-a", f"{api}-b"]):
        if spec.name in faulty:
            if fault == "connect_refused":
                spec = spec.with_base_url(spec.base_url.replace(f":{sim.port}/", f":{closed_port()}/"))
            elif fault == "read_timeout":
                sim.update(spec.name, latency_s=5.0)
                spec = spec.with_timeout(TIMEOUT_S)
            elif fault == "stalled_stream":
                sim.update(spec.name, tokens_per_s=2.0)  # a word, then half a second of silence
                spec = spec.with_timeout(TIMEOUT_S)
            else:
                if fault == "hang":
                    spec = spec.with_timeout(TIMEOUT_S)
                sim.inject(spec.name, [fault] * count)
        specs.append(spec)
    return specs


def ask(router: ModelClientRouter, streamed: bool) -> tuple[Completion, list[str]]:
    """One request, like a user: a plain completion, or a stream read to the end."""
    if not streamed:
        return router.complete("What is the CAP theorem?", max_tokens=24), []
    shown: list[str] = []
    s = router.stream("What is the CAP theorem?", max_tokens=24)
    try:
        for chunk in s:
            shown.append(chunk)
    except ProviderError as e:
        e.shown = shown  # what the user saw before the error, for the SURFACE assertions
        raise
    return s.completion, shown


def assert_failed_row(row: dict, provider: str, error_type: str, status: int | None, streamed: bool) -> None:
    assert (row["provider"], row["status"], row["error_type"], row["http_status"], row["streamed"]) == (
        provider,
        "error",
        error_type,
        status,
        streamed,
    )
    assert row["latency_s"] >= 0 and row["output_tokens"] == 0


def assert_attempt_numbers(rec: list[dict]) -> None:
    assert len({r["request_id"] for r in rec}) == 1, "one request, one request_id"
    assert [r["attempt"] for r in rec] == list(range(1, len(rec) + 1))


# -- 1. a healthy provider to fall back to ----------------------------------------------------------


@pytest.mark.parametrize("fault, api, streamed", CASES)
def test_fault_with_a_healthy_fallback(fresh, fault, api, streamed):
    error_type, status, policy = expected(fault, api, streamed)
    main, backup = f"{api}-a", f"{api}-b"
    specs = arrange(fresh, fault, api, (main,))
    if policy is Policy.LARGER_CONTEXT:
        specs[1] = specs[1].with_context_window(200_000)
    sleeps = Sleeps()
    with ModelClientRouter(ProviderRoutingConfig(specs, strategy="priority", max_retries=2), sleep=sleeps) as r:
        if policy in (Policy.FAIL_FAST, Policy.SURFACE):
            with pytest.raises(ProviderError) as info:
                ask(r, streamed)
            err = info.value
            assert (err.provider, err.error_type, err.status_code) == (main, error_type, status)
            assert f"{main}: {error_type}" in str(err)  # says who failed and how
            if policy is Policy.SURFACE:
                assert err.shown and err.partial_text == "".join(err.shown)
            rec = rows(r)
            assert len(rec) == 1  # the healthy backup is not asked: retrying cannot help / text was shown
        else:
            c, shown = ask(r, streamed)
            rec = rows(r)
            assert isinstance(c, Completion) and c.provider == backup and c.attempts == 2 and c.text
            if streamed:
                assert "".join(shown) == c.text  # nothing from the failed attempt leaked into the answer
            assert rec[1]["provider"] == backup and rec[1]["status"] == "ok" and rec[1]["streamed"] is streamed
            assert sleeps.delays == []  # moving to another provider never waits
            if policy is Policy.DROP_PROVIDER:
                assert main in r.cooling_down()  # and the next request skips it
                assert r.complete("again", max_tokens=4).provider == backup
                rec2 = rows(r)
                assert len(rec2) == 3 and rec2[2]["provider"] == backup
    assert_failed_row(rec[0], main, error_type, status, streamed)
    assert_attempt_numbers(rec[:2] if len(rec) >= 2 else rec)
    assert_ledger_matches_sim(r, fresh)


# -- 2. every provider fails: the router gives up, clearly ------------------------------------------


@pytest.mark.parametrize("fault, api, streamed", CASES)
def test_fault_everywhere_gives_up_with_a_clear_error(fresh, fault, api, streamed):
    error_type, status, policy = expected(fault, api, streamed)
    a, b = f"{api}-a", f"{api}-b"
    specs = arrange(fresh, fault, api, (a, b), count=5)
    sleeps = Sleeps()
    with ModelClientRouter(ProviderRoutingConfig(specs, strategy="priority", max_retries=2), sleep=sleeps) as r:
        with pytest.raises((AllProvidersFailed, ProviderError)) as info:
            ask(r, streamed)
        rec = rows(r)
    err = info.value
    if policy is Policy.RETRY:
        expected_order = [a, b, a]  # the list starts again until 1 + max_retries attempts are spent
    elif policy is Policy.DROP_PROVIDER:
        expected_order = [a, b]  # no provider left to ask: give up at once
    else:
        expected_order = [a]  # FAIL_FAST, SURFACE, and LARGER_CONTEXT with no larger window
    assert [x["provider"] for x in rec] == expected_order
    for row in rec:
        assert_failed_row(row, row["provider"], error_type, status, streamed)
    assert_attempt_numbers(rec)
    if policy in (Policy.RETRY, Policy.DROP_PROVIDER):
        assert isinstance(err, AllProvidersFailed)
        assert [x.provider for x in err.attempts] == expected_order
        msg = str(err)
        n = len(expected_order)
        assert f"all providers failed after {n} attempts" in msg
        code = f" (HTTP {status})" if status is not None else ""
        for name in (a, b):
            assert f"{name}: {error_type}{code}: " in msg
        assert "What to do: " in msg
        assert "check the errors above" not in msg, msg  # every failure kind has a specific tip
    else:
        assert isinstance(err, ProviderError) and err.error_type == error_type and err.provider == a
        assert f"{a}: {error_type}" in str(err)
    if policy is Policy.RETRY:
        # Moving a -> b is immediate; starting the list again (b -> a) waits a backoff first.
        assert len(sleeps.delays) == 1
        if fault == "rate_limit":
            assert sleeps.delays[0] == pytest.approx(RETRY_AFTER_S)  # the server's retry-after-ms is honoured
        else:
            assert 0 < sleeps.delays[0] <= 0.25
    else:
        assert sleeps.delays == []
    assert_ledger_matches_sim(r, fresh)


# -- 3. fallback off: only the same provider may be retried -----------------------------------------


@pytest.mark.parametrize("fault, api, streamed", CASES)
def test_fault_with_fallback_off(fresh, fault, api, streamed):
    error_type, status, policy = expected(fault, api, streamed)
    a = f"{api}-a"
    heals = fault not in NETWORK_FAULTS  # an injected fault hits once; a refused port stays refused
    specs = arrange(fresh, fault, api, (a,))
    sleeps = Sleeps()
    cfg = ProviderRoutingConfig(specs, strategy="priority", max_retries=2, fallback_enabled=False)
    with ModelClientRouter(cfg, sleep=sleeps) as r:
        if policy is Policy.RETRY and heals:
            c, _ = ask(r, streamed)  # the second try of the same provider succeeds
            assert c.provider == a and c.attempts == 2
            assert len(sleeps.delays) == 1
            if fault == "rate_limit":
                assert sleeps.delays[0] == pytest.approx(RETRY_AFTER_S)
            else:
                assert 0.125 <= sleeps.delays[0] <= 0.25  # first step of the capped exponential backoff
        elif policy is Policy.RETRY:
            with pytest.raises(AllProvidersFailed) as info:
                ask(r, streamed)
            assert [x.provider for x in info.value.attempts] == [a, a, a]
            assert len(sleeps.delays) == 2 and 0.125 <= sleeps.delays[0] <= 0.25 <= sleeps.delays[1] <= 0.5
        else:
            with pytest.raises((AllProvidersFailed, ProviderError)) as info:
                ask(r, streamed)
            assert sleeps.delays == []
            if policy is Policy.DROP_PROVIDER:
                assert isinstance(info.value, AllProvidersFailed) and len(info.value.attempts) == 1
            else:
                assert isinstance(info.value, ProviderError) and info.value.error_type == error_type
        rec = rows(r)
    assert all(x["provider"] == a for x in rec)
    assert len(rec) == ((2 if heals else 3) if policy is Policy.RETRY else 1)
    for row in rec[:-1] if heals else rec:
        assert_failed_row(row, a, error_type, status, streamed)
    assert_attempt_numbers(rec)
    assert_ledger_matches_sim(r, fresh)
