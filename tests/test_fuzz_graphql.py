"""hypothesis-graphql writes queries and mutations from the composed schema, valid and with
one violation each, and sends them to /graphql on the real app (PostgreSQL) as an
anonymous visitor, a customer and a member of staff: whatever the document, the answer
is never a 5xx nor an INTERNAL_SERVER_ERROR; refusals carry their own codes.
"""

from collections.abc import AsyncIterator, Iterator
from datetime import UTC

import graphql
import httpx
import pytest
import pytest_asyncio
from hypothesis import given
from hypothesis import strategies as st
from hypothesis_graphql import Mode, from_schema, nodes

from schema.export import composed_sdl
from tests.conftest import DEMO_PASSWORD
from tests.fuzzing import FUZZ, demo_database, demo_server

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

VIEWERS = {"anonymous": None, "customer": "alice@example.com", "staff": "admin@example.com"}


def _text_or(valid: st.SearchStrategy[str]) -> st.SearchStrategy:
    """Mostly well-formed values of a custom scalar, and now and then any text at all."""
    return st.one_of(valid, valid, valid, st.text(max_size=40)).map(nodes.String)


def _json_object(values: dict[str, str]) -> graphql.ObjectValueNode:
    return nodes.Object(
        [
            graphql.ObjectFieldNode(name=graphql.NameNode(value=name), value=nodes.String(value))
            for name, value in values.items()
        ]
    )


# A JSON argument (a notification preview's sample data): objects of text, now and then text.
_JSON = st.one_of(
    st.dictionaries(st.from_regex(r"[a-z_]{1,12}", fullmatch=True), st.text(max_size=20)).map(
        _json_object
    ),
    st.text(max_size=40).map(nodes.String),
)

SCALARS = {
    "Decimal": _text_or(
        st.one_of(
            st.decimals(places=2, allow_nan=False, allow_infinity=False).map(str),
            st.decimals().map(str),
        )
    ),
    "Date": _text_or(st.dates().map(str)),
    "DateTime": _text_or(st.datetimes(timezones=st.just(UTC)).map(lambda t: t.isoformat())),
    "Time": _text_or(st.times().map(lambda t: t.isoformat())),
    "JSON": _JSON,
}

SDL = composed_sdl()
DOCUMENTS = st.one_of(
    *(
        from_schema(SDL, custom_scalars=SCALARS, mode=mode)
        for mode in (Mode.POSITIVE, Mode.NEGATIVE)
    )
)


@pytest_asyncio.fixture(scope="module")
async def fuzz_db() -> AsyncIterator[str]:
    async with demo_database("kabinet_fuzz_graphql") as url:
        yield url


@pytest.fixture(scope="module")
def base_url(fuzz_db: str, signing_key: bytes) -> Iterator[str]:
    with demo_server(fuzz_db, signing_key) as url:
        yield url


def _headers(http: httpx.Client, email: str | None) -> dict[str, str]:
    """A fresh session for each document: one may sign out or end every session."""
    if email is None:
        return {}
    response = http.post("/auth/login", json={"email": email, "password": DEMO_PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest.mark.parametrize("viewer", VIEWERS)
def test_no_document_is_an_internal_error(base_url: str, viewer: str) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as http:

        @FUZZ
        @given(document=DOCUMENTS)
        def run(document: str) -> None:
            response = http.post(
                "/graphql", json={"query": document}, headers=_headers(http, VIEWERS[viewer])
            )
            assert response.status_code < 500, (document, response.text)
            errors = response.json().get("errors") or []
            codes = [(error.get("extensions") or {}).get("code") for error in errors]
            assert "INTERNAL_SERVER_ERROR" not in codes, (document, errors)
            assert None not in codes, (document, errors)  # every error says what it is

        run()
