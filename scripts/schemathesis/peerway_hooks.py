"""Schemathesis hooks for Peerway's management API (used by the contract test, see
Tests/PeerwayIntegrationTests/SchemathesisContractTests.swift; load with
SCHEMATHESIS_HOOKS=peerway_hooks and this folder on PYTHONPATH).

They teach schemathesis the two things its JSON Schema generator cannot know from the document:
- `format: peerway-query`: the CHECKPOINT's search language (context-free, so no pattern states
  it); generated here from its grammar, within the document's `maxLength`.
- the extension keywords `x-maxBytes` (UTF-8 bytes of a string), `x-maxTotalBytes` (bytes of a
  metadata object's keys and values, null values left out) and `x-maxSetProperties` (entries a
  metadata change may set): generated request bodies that break them are dropped, since the
  document says the server refuses them. The numbers are read from the document itself.

And one thing it cannot test: operations marked `x-peerway-stream: true` (the dashboard's endless
event stream) are left out when the document is loaded.
"""

import os

import schemathesis
from hypothesis import strategies as st

# The query language (docs in Sources/PeerwayCheckpoint/Search/CheckpointQuery.swift).
_KEY = st.from_regex(r"\A[a-z0-9_.-]{1,12}\Z")
_WORD = st.from_regex(r"\A[A-Za-z0-9_.:/@+-]{1,16}\Z")
_QUOTED = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters='"\\\x00'), max_size=16
).map(lambda text: '"' + text + '"')
_NUMBER = st.one_of(st.integers(-1000, 1000).map(str), st.sampled_from(["2.5", "-0.5", "1e3"]))
_POSITIVE = st.one_of(
    st.tuples(_KEY, st.sampled_from(["=", "!=", "^="]), st.one_of(_WORD, _QUOTED)).map("".join),
    st.tuples(_KEY, st.sampled_from([">", ">=", "<", "<="]), _NUMBER).map("".join),
    _KEY.map(lambda key: key + "?"),
    st.just("*"),
)


def _anchored(children):
    """Queries with a positive term in every OR branch, as the language requires."""
    conjunction = st.tuples(children, st.lists(st.tuples(st.booleans(), children), max_size=2)).map(
        lambda parts: " AND ".join([parts[0]] + [("NOT " if negated else "") + term for negated, term in parts[1]])
    )
    disjunction = st.lists(conjunction, min_size=2, max_size=3).map(" OR ".join)
    return st.one_of(conjunction, disjunction.map(lambda query: "(" + query + ")"))


# The document's maxLength of `q` (IndexAPILimits.maximumQueryBytes, passed by the contract test).
_MAXIMUM_BYTES = int(os.environ.get("PEERWAY_QUERY_MAXIMUM_BYTES", "512"))


def _padded(query):
    """`query`, or `query` padded with trailing spaces (the language allows them) to a length at a
    bound of the document's `minLength`/`maxLength` or just past it: schemathesis asks the format
    for values of exactly those lengths, which no unpadded query would hit in reasonable time."""
    if not query.isascii():
        return st.just(query)  # padded, it could be short enough in code points but too long in bytes
    targets = [target for target in (1, 2, _MAXIMUM_BYTES - 1, _MAXIMUM_BYTES, _MAXIMUM_BYTES + 1) if target >= len(query)]
    if not targets:
        return st.just(query)
    return st.one_of(st.just(query), st.sampled_from(targets).map(lambda target: query.ljust(target)))


QUERIES = st.recursive(_POSITIVE, _anchored, max_leaves=8).filter(lambda query: len(query.encode()) <= _MAXIMUM_BYTES).flatmap(_padded)

schemathesis.openapi.format("peerway-query", QUERIES)


def _resolve(schema, document):
    while isinstance(schema, dict) and "$ref" in schema:
        node = document
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema if isinstance(schema, dict) else {}


def _within(value, schema, document):
    """Whether `value` keeps the byte rules `schema` (and its parts) state."""
    schema = _resolve(schema, document)
    if isinstance(value, str):
        limit = schema.get("x-maxBytes")
        return limit is None or len(value.encode("utf-8", "surrogatepass")) <= limit
    if not isinstance(value, dict):
        return True
    entries = {key: item for key, item in value.items() if item is not None}
    total = schema.get("x-maxTotalBytes")
    if total is not None and all(isinstance(item, str) for item in entries.values()):
        size = sum(len(key.encode("utf-8", "surrogatepass")) + len(item.encode("utf-8", "surrogatepass"))
                   for key, item in entries.items())
        if size > total:
            return False
    most = schema.get("x-maxSetProperties")
    if most is not None and len(entries) > most:
        return False
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties")
    for key, item in value.items():
        child = properties.get(key, extra if isinstance(extra, dict) else None)
        if child is not None and not _within(item, child, document):
            return False
    return True


@schemathesis.hook
def filter_case(context, case):
    """Drop bodies that break an `x-` byte rule of the document."""
    meta = case.meta
    if meta is not None and not meta.generation.mode.is_positive:
        return True
    body = case.body
    if not isinstance(body, dict):
        return True
    operation = case.operation
    document = operation.schema.raw_schema
    definition = document["paths"][operation.path][operation.method.lower()]
    content = _resolve(definition.get("requestBody", {}), document).get("content", {})
    schema = content.get("application/json", {}).get("schema")
    return schema is None or _within(body, schema, document)


@schemathesis.hook
def before_load_schema(context, raw_schema):
    """Leave out operations marked `x-peerway-stream: true` (GET /dashboard/events): their answer is
    an endless text/event-stream, which schemathesis, reading whole bodies, would wait on for ever.
    Its events are the `DashboardSnapshot` of GET /dashboard/snapshot, which stays in and is checked."""
    paths = raw_schema.get("paths", {})
    for path in list(paths):
        operations = paths[path]
        for method in [method for method, operation in operations.items()
                       if isinstance(operation, dict) and operation.get("x-peerway-stream") is True]:
            del operations[method]
        if not any(isinstance(operation, dict) and "responses" in operation for operation in operations.values()):
            del paths[path]
