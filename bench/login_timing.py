"""Login failure timing: an unknown email and a wrong password should take the same time.

Runs the real app in process on a temporary SQLite database with the demo data, sends
`--attempts` failing logins of each kind (alternating, limits raised so none is throttled)
and prints the median and spread of each. It asserts nothing.

    .venv/bin/python bench/login_timing.py --attempts 40
"""

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from domains.database import Database
from domains.identity.tokens import generate_signing_key
from gateway.app import create_app
from gateway.demo import load_demo
from gateway.settings import Settings
from migrations import upgrade


async def measure(attempts: int) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite+aiosqlite:///{Path(directory) / 'timing.db'}"
        upgrade(url)
        db = Database(url)
        await load_demo(db)
        await db.dispose()
        settings = Settings(
            database_url=url,
            jwt_private_key=generate_signing_key().decode(),
            login_attempts_per_account_and_ip=10 * attempts,
            login_attempts_per_account=10 * attempts,
            login_attempts_per_ip=10 * attempts,
        )
        app = create_app(settings)
        cases = {
            "wrong password": {"email": "alice@example.com", "password": "not-her-password"},
            "unknown email": {"email": "nobody@example.com", "password": "not-her-password"},
        }
        timings: dict[str, list[float]] = {name: [] for name in cases}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for _ in range(attempts):
                for name, body in cases.items():
                    started = time.perf_counter()
                    response = await client.post("/auth/login", json=body)
                    timings[name].append((time.perf_counter() - started) * 1000)
                    assert response.status_code == 401, response.text
        await app.state.services.aclose()
        return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attempts", type=int, default=40)
    args = parser.parse_args()
    timings = asyncio.run(measure(args.attempts))
    print(f"{'case':<16}{'median ms':>12}{'stdev ms':>12}{'min ms':>10}{'max ms':>10}")
    for name, values in timings.items():
        print(
            f"{name:<16}{statistics.median(values):>12.1f}{statistics.stdev(values):>12.1f}"
            f"{min(values):>10.1f}{max(values):>10.1f}"
        )
    print(f"command: .venv/bin/python bench/login_timing.py --attempts {args.attempts}")


if __name__ == "__main__":
    main()
