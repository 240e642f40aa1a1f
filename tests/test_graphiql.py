"""GraphiQL is served offline: every asset comes from the app itself, none from another origin."""

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from starlette.applications import Starlette

from gateway.graphiql import graphiql_asset_routes, graphiql_html

HTML_ACCEPT = {"Accept": "text/html"}
CSS_URL = re.compile(r"""url\(\s*['"]?([^'")\s]*)""", re.IGNORECASE)


class PageLinks(HTMLParser):
    """Collects every src/href, which URLs are stylesheets, and the JSON config's text."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.stylesheets: list[str] = []
        self.scripts: list[str] = []
        self.mount_ids: list[str] = []
        self.config = ""
        self._in_config = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("src", "href"):
            if values.get(name) is not None:
                self.urls.append(values[name] or "")
        if tag == "link" and values.get("rel") == "stylesheet":
            self.stylesheets.append(values["href"] or "")
        if tag == "script" and values.get("src"):
            self.scripts.append(values["src"] or "")
        if values.get("id") == "graphiql":
            self.mount_ids.append(tag)
        self._in_config = tag == "script" and values.get("id") == "graphiql-config"

    def handle_data(self, data: str) -> None:
        if self._in_config:
            self.config += data

    def handle_endtag(self, tag: str) -> None:
        self._in_config = False


def parse(page: str) -> PageLinks:
    links = PageLinks()
    links.feed(page)
    links.close()
    return links


def is_same_origin(url: str) -> bool:
    parts = urlsplit(url)
    return not parts.scheme and not parts.netloc and not url.startswith("//")


async def graphiql_page(client: httpx.AsyncClient) -> PageLinks:
    response = await client.get("/graphql", headers=HTML_ACCEPT)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    return parse(response.text)


async def test_graphql_get_for_a_browser_serves_the_graphiql_page(
    sqlite_client: httpx.AsyncClient,
) -> None:
    links = await graphiql_page(sqlite_client)
    assert links.mount_ids == ["div"]
    assert json.loads(links.config)["endpoint"] == "/graphql"
    assert len(links.stylesheets) == 1
    assert len(links.scripts) == 4
    mount = await sqlite_client.get(links.scripts[-1])
    assert "GraphiQL.createFetcher" in mount.text
    assert "subscriptionUrl" in mount.text


async def test_page_and_css_reference_no_external_origin(sqlite_client: httpx.AsyncClient) -> None:
    links = await graphiql_page(sqlite_client)
    assert links.urls
    assert [url for url in links.urls if not is_same_origin(url)] == []
    for href in links.stylesheets:
        css = (await sqlite_client.get(href)).text
        assert "@import" not in css
        external = [
            url
            for url in CSS_URL.findall(css)
            if not url.startswith("data:") and not is_same_origin(url)
        ]
        assert external == []


async def test_every_referenced_asset_is_served_cacheable(sqlite_client: httpx.AsyncClient) -> None:
    links = await graphiql_page(sqlite_client)
    expected = {url: "text/css" for url in links.stylesheets} | {
        url: "text/javascript" for url in links.scripts
    }
    for url, media_type in expected.items():
        response = await sqlite_client.get(url)
        assert response.status_code == 200, url
        assert response.headers["content-type"].startswith(media_type), url
        assert "immutable" in response.headers["cache-control"], url
        assert len(response.content) > 256, url


async def test_only_allowlisted_assets_are_served(sqlite_client: httpx.AsyncClient) -> None:
    links = await graphiql_page(sqlite_client)
    prefix = links.stylesheets[0].rsplit("/", 1)[0]
    for name in (
        "package.json",
        "index.umd.js.map",
        "react.development.js",
        "%2e%2e/pyproject.toml",
    ):
        response = await sqlite_client.get(f"{prefix}/{name}")
        assert response.status_code == 404, name


async def test_missing_node_modules_answers_503_with_the_fix(tmp_path: Path) -> None:
    app = Starlette(routes=graphiql_asset_routes(tmp_path / "node_modules"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get("/graphiql/assets/graphiql.min.js")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "ASSETS_NOT_INSTALLED"
    assert "npm ci" in response.json()["error"]["message"]


def test_injected_values_cannot_break_out_of_the_page() -> None:
    hostile = "</script><script>alert(1)</script><!--"
    page = graphiql_html(endpoint=hostile, subscription_endpoint="/ws", asset_prefix='/a"b')
    links = parse(page)
    config = json.loads(links.config)
    assert config["endpoint"] == hostile
    assert config["subscriptionEndpoint"] == "/ws"
    assert "mutation SignIn" in config["defaultQuery"]
    assert "<" not in links.config
    assert all(url.startswith('/a"b/') for url in links.urls)
