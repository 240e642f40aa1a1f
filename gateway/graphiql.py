"""GraphiQL that works offline: the page and its JS/CSS all come from this app, none from a CDN."""

import hashlib
import html
import json
import os
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

JS = "text/javascript"
CSS = "text/css"
IMMUTABLE = "public, max-age=31536000, immutable"

# Served name -> (file under node_modules, content type). Nothing outside this table is served,
# so no request path ever reaches the filesystem. Versions are pinned in package-lock.json.
NODE_ASSETS: dict[str, tuple[str, str]] = {
    "react.production.min.js": ("react/umd/react.production.min.js", JS),
    "react-dom.production.min.js": ("react-dom/umd/react-dom.production.min.js", JS),
    # The UMD build bundles graphql and graphql-ws, so subscriptions need no extra global.
    "graphiql.min.js": ("graphiql/dist/index.umd.js", JS),
    "graphiql.min.css": ("graphiql/dist/style.css", CSS),
}

# Our own mount code is a file, not an inline script, so a `script-src 'self'` policy holds.
MOUNT_JS = """\
(function () {
  "use strict";
  var config = JSON.parse(document.getElementById("graphiql-config").textContent);
  var ws = new URL(config.subscriptionEndpoint, window.location.href);
  ws.protocol = ws.protocol === "https:" ? "wss:" : ws.protocol === "http:" ? "ws:" : ws.protocol;
  var fetcher = GraphiQL.createFetcher({url: config.endpoint, subscriptionUrl: ws.href});
  ReactDOM.createRoot(document.getElementById("graphiql")).render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultQuery: config.defaultQuery,
      defaultEditorToolsVisibility: true
    })
  );
})();
"""
# The content hash in the name keeps the immutable cache header truthful across releases.
MOUNT_NAME = f"kabinet-graphiql.{hashlib.sha256(MOUNT_JS.encode()).hexdigest()[:12]}.js"

SCRIPTS = ("react.production.min.js", "react-dom.production.min.js", "graphiql.min.js", MOUNT_NAME)

CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
    )
)


def _json_for_script(value: object) -> str:
    """JSON that cannot close its <script> element or open a comment inside it."""
    text = json.dumps(value)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


# What a newcomer sees first: how to sign in as a demo customer, and the portal's first query.
WELCOME = """\
# Kabinet GraphiQL. 1) Run SignIn (demo password: kabinet-demo).
# 2) Open "Headers" below and paste: {"Authorization": "Bearer <accessToken>"}
# 3) Run Dashboard. Staff: operator@example.com or admin@example.com.

mutation SignIn {
  login(email: "alice@example.com", password: "kabinet-demo") {
    accessToken
    user { email role }
  }
}

query Dashboard {
  me {
    email
    customer {
      contractNum
      fullName
      balance { amount currency }
      contracts { address tariff { name monthlyPrice { amount currency } } }
      invoices(first: 12) {
        edges {
          node {
            number
            status
            periodStart
            amount { amount currency }
            amountDue { amount currency }
            payments { method status amount { amount currency } }
          }
        }
      }
    }
  }
}
"""


def graphiql_html(*, endpoint: str, subscription_endpoint: str, asset_prefix: str) -> str:
    """The GraphiQL page; endpoints may be relative, the ws:// or wss:// URL is derived in JS."""
    config = _json_for_script(
        {
            "endpoint": endpoint,
            "subscriptionEndpoint": subscription_endpoint,
            "defaultQuery": WELCOME,
        }
    )
    prefix = asset_prefix.rstrip("/")
    css = html.escape(f"{prefix}/graphiql.min.css")
    scripts = "\n".join(
        f'    <script src="{html.escape(f"{prefix}/{name}")}"></script>' for name in SCRIPTS
    )
    return f"""<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta http-equiv="Content-Security-Policy" content="{html.escape(CSP)}">
    <title>Kabinet GraphiQL</title>
    <link rel="stylesheet" href="{css}">
    <style>
      body {{ margin: 0; height: 100vh; overflow: hidden; }}
      #graphiql {{ height: 100vh; }}
    </style>
  </head>
  <body>
    <div id="graphiql">Loading GraphiQL…</div>
    <script id="graphiql-config" type="application/json">{config}</script>
{scripts}
  </body>
</html>
"""


def graphiql_asset_routes(node_modules: Path, prefix: str = "/graphiql/assets") -> list[BaseRoute]:
    """One route per allowlisted asset, cached for a year; a missing file answers 503 JSON."""
    prefix = prefix.rstrip("/")

    def node_asset(name: str, relative: str, media_type: str) -> Route:
        path = node_modules / relative

        def serve(request: Request) -> Response:
            try:
                stat_result = os.stat(path)
            except FileNotFoundError:
                return JSONResponse(
                    {
                        "error": {
                            "code": "ASSETS_NOT_INSTALLED",
                            "message": f"node_modules/{relative} is missing; "
                            "run `make dev` (or `npm ci`) to install the GraphiQL assets",
                        }
                    },
                    status_code=503,
                )
            return FileResponse(
                path,
                media_type=media_type,
                stat_result=stat_result,
                headers={"Cache-Control": IMMUTABLE},
            )

        return Route(f"{prefix}/{name}", serve, methods=["GET"])

    def mount_script(request: Request) -> Response:
        return Response(MOUNT_JS, media_type=JS, headers={"Cache-Control": IMMUTABLE})

    routes: list[BaseRoute] = [node_asset(name, *entry) for name, entry in NODE_ASSETS.items()]
    routes.append(Route(f"{prefix}/{MOUNT_NAME}", mount_script, methods=["GET"]))
    return routes
