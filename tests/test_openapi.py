"""GET /openapi.json: the REST facade's contract, made from the route table that runs."""

import httpx
import jsonschema_rs

from gateway.rest import rest_document
from schema.domains import DOMAINS
from tests.conftest import login


async def _document(client: httpx.AsyncClient) -> dict:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    return response.json()


def _schema_of(document: dict, reference: dict) -> dict:
    """The reference as a schema whose `#/components/...` resolve within the document."""
    return {**reference, "components": document["components"]}


async def test_every_route_is_described_with_its_security_and_errors(
    sqlite_demo_client: httpx.AsyncClient,
):
    document = await _document(sqlite_demo_client)
    assert document == rest_document(DOMAINS)  # what the fuzzer reads (test_fuzz_rest.py)
    assert document["openapi"] == "3.1.0"
    routes = {(route.method.lower(), route.path): route for d in DOMAINS for route in d.rest}
    described = {
        (method, path): operation
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    }
    assert described.keys() == routes.keys()
    for key, operation in described.items():
        route = routes[key]
        assert operation["operationId"] == route.handler.__name__
        assert operation["summary"]
        assert {str(status) for status in route.answers} <= operation["responses"].keys()
        errors = {s: r for s, r in operation["responses"].items() if int(s) >= 400}
        assert {"401", "429", "503"} <= errors.keys()
        for response in errors.values():
            schema = response["content"]["application/json"]["schema"]
            assert schema["allOf"] == [{"$ref": "#/components/schemas/Error"}]
            assert schema["properties"]["error"]["properties"]["code"]["enum"]
        if route.signed_in:
            assert operation["security"] == [{"bearer": []}]
        if route.method == "POST":
            assert {"400", "413"} <= errors.keys()  # CSRF_REJECTED, PAYLOAD_TOO_LARGE
    pay = described[("post", "/billing/pay")]
    assert [p["name"] for p in pay["parameters"] if p["required"]] == ["Idempotency-Key"]
    codes = pay["responses"]["422"]["content"]["application/json"]["schema"]
    assert "INSUFFICIENT_FUNDS" in codes["properties"]["error"]["properties"]["code"]["enum"]
    assert pay["responses"]["409"]["description"] == "Conflict: IDEMPOTENCY_KEY_REUSED"
    webhook = described[("post", "/webhooks/payments/{provider}")]
    assert webhook["security"] == [{"webhookSignature": []}]
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    assert schemes["__Host-kabinet_refresh"]["in"] == "cookie"
    status = next(p for p in described[("get", "/billing/invoices")]["parameters"])
    assert (status["name"], status["style"], status["explode"]) == ("status", "form", False)


async def test_answers_match_the_document(sqlite_demo_client: httpx.AsyncClient):
    document = await _document(sqlite_demo_client)
    paths = document["paths"]
    token = await login(sqlite_demo_client, "alice@example.com")
    for path, status, response in (
        (
            paths["/billing/invoices"]["get"],
            "200",
            await sqlite_demo_client.get(
                "/billing/invoices", headers={"Authorization": f"Bearer {token}"}
            ),
        ),
        (
            paths["/auth/login"]["post"],
            "200",
            await sqlite_demo_client.post(
                "/auth/login", json={"email": "bob@example.com", "password": "kabinet-demo"}
            ),
        ),
        (
            paths["/billing/pay"]["post"],
            "400",
            await sqlite_demo_client.post(
                "/billing/pay",
                json={"invoice_id": "x", "method": "cash"},
                headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "k"},
            ),
        ),
    ):
        assert str(response.status_code) == status, response.text
        reference = path["responses"][status]["content"]["application/json"]["schema"]
        jsonschema_rs.validate(_schema_of(document, reference), response.json())


async def test_bodies_are_validated_by_their_models(sqlite_demo_client: httpx.AsyncClient):
    """What the document declares is what the pipeline refuses: a number for a decimal
    string, a method outside the enum, a page size over the limit."""
    token = await login(sqlite_demo_client, "alice@example.com")
    auth = {"Authorization": f"Bearer {token}"}
    for body, message in (
        ({"invoice_id": "SW52b2ljZTox", "method": "balance", "amount": 10}, "'amount'"),
        ({"invoice_id": "SW52b2ljZTox", "method": "BALANCE"}, "'method'"),
        ({"method": "balance"}, "'invoice_id'"),
        ([], "Input should be an object"),
    ):
        response = await sqlite_demo_client.post(
            "/billing/pay", json=body, headers={**auth, "Idempotency-Key": "v"}
        )
        assert response.status_code == 400, body
        error = response.json()["error"]
        assert error["code"] == "BAD_USER_INPUT"
        assert message in error["message"], error
    for query in ("first=101", "first=x", "status=issued,unpaid", "status=", "status=paid,"):
        response = await sqlite_demo_client.get(f"/billing/invoices?{query}", headers=auth)
        assert response.status_code == 400, query
        assert response.json()["error"]["code"] == "BAD_USER_INPUT"
    response = await sqlite_demo_client.get("/billing/invoices?status=paid", headers=auth)
    assert response.status_code == 200
    assert {invoice["status"] for invoice in response.json()["invoices"]} == {"paid"}
