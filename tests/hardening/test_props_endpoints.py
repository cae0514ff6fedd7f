"""Properties of the endpoint classifier (wire/endpoints.py).

* any method and any path -> one of ENDPOINTS, never an exception;
* a provider prefix (/v1, Azure deployments, OpenRouter's /api/v1, Gemini's /v1beta/openai, /beta),
  a query string or a trailing slash never changes the family;
* stripping is idempotent on what it produces for a known endpoint.
"""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from parity.wire.endpoints import ENDPOINTS, REPLAYABLE, api_path, classify, has_side_effects

SUFFIXES = {
    "/chat/completions": "chat.completions",
    "/responses": "responses",
    "/completions": "completions",
    "/embeddings": "embeddings",
    "/audio/transcriptions": "audio.transcriptions",
    "/audio/translations": "audio.translations",
    "/images/generations": "images.generations",
    "/moderations": "moderations",
}
deployment = st.text(
    alphabet=st.characters(blacklist_characters="/?", blacklist_categories=("Cs",)), min_size=1
)
prefixes = st.one_of(
    st.sampled_from(["", "/v1", "/openai", "/openai/v1", "/api/v1", "/v1beta/openai"]),
    deployment.map(lambda d: f"/openai/deployments/{d}"),
).flatmap(lambda p: st.sampled_from([p, p + "/beta"]))
queries = st.sampled_from(["", "?", "?api-version=2024-10-21", "?a=/v1/chat/completions", "?x=1?y=2"])
methods = st.sampled_from(["POST", "post", "Post"])
any_path = st.one_of(
    st.text(max_size=40),
    st.lists(
        st.sampled_from(
            ["v1", "openai", "deployments", "chat", "completions", "models", "api", "beta", "", "x"]
        )
    ).map(lambda parts: "/" + "/".join(parts)),
)


@settings(max_examples=500, deadline=None)
@given(method=st.text(max_size=8), path=any_path)
@example(method="", path="")
@example(method="GET", path="?")
@example(method="POST", path="/openai/deployments/")
def test_any_path_is_one_family_and_never_raises(prop_count, method: str, path: str) -> None:
    prop_count()
    assert classify(method, path) in ENDPOINTS
    assert isinstance(has_side_effects(method, path), bool)
    assert isinstance(api_path(path), str)


@settings(max_examples=400, deadline=None)
@given(
    prefix=prefixes,
    suffix=st.sampled_from(sorted(SUFFIXES)),
    slash=st.booleans(),
    query=queries,
    method=methods,
)
def test_prefix_query_and_trailing_slash_do_not_change_the_family(
    prop_count, prefix: str, suffix: str, slash: bool, query: str, method: str
) -> None:
    prop_count()
    path = prefix + suffix + ("/" if slash else "") + query
    assert classify(method, path) == SUFFIXES[suffix] == classify("POST", suffix)
    assert SUFFIXES[suffix] in REPLAYABLE
    assert api_path(path).rstrip("/") == suffix
    assert classify("GET", path) == "other"  # only POST creates these
    assert classify("GET", prefix + "/models" + query) == "models"
    assert classify("GET", prefix + "/models/gpt-4o" + query) == "models"


@settings(max_examples=500, deadline=None)
@given(
    path=st.one_of(
        any_path, st.builds(lambda p, s, q: p + s + q, prefixes, st.sampled_from(sorted(SUFFIXES)), queries)
    )
)
@example(path="/v1/v1/chat/completions")
def test_stripping_is_idempotent_on_known_endpoints(prop_count, path: str) -> None:
    """api_path(api_path(p)) == api_path(p) whenever p classifies as a known endpoint.

    (For unknown paths it is not, by design: ``/v1/v1/chat/completions`` strips one ``/v1`` and
    stays ``other``; only one provider prefix is ever removed.)
    """
    prop_count()
    once = api_path(path)
    if classify("POST", path) != "other" or classify("GET", path) != "other":
        assert api_path(once) == once
        assert classify("POST", once) == classify("POST", path)
        assert classify("GET", once) == classify("GET", path)
