"""The committed SDL matches the code; `kabinet schema export` works."""

from pathlib import Path

from gateway.cli import main

COMMITTED = Path(__file__).resolve().parent.parent / "schema" / "sdl"


def test_committed_sdl_is_current(tmp_path: Path, capsys):
    main(["schema", "export", str(tmp_path)])
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.graphql"))
    assert written == sorted(p.relative_to(COMMITTED) for p in COMMITTED.rglob("*.graphql"))
    assert [str(tmp_path / p) for p in written] == sorted(capsys.readouterr().out.split())
    for path in written:
        assert (tmp_path / path).read_text() == (COMMITTED / path).read_text(), (
            f"{path} is stale: run `make schema`"
        )


def test_subgraphs_show_only_their_own_fields():
    billing = (COMMITTED / "subgraphs" / "billing.graphql").read_text()
    customers = (COMMITTED / "subgraphs" / "customers.graphql").read_text()
    assert "balance: Money!" in billing
    assert "contractNum" not in billing
    assert "contractNum: String!" in customers
    # Other subgraphs' entities appear as stubs: their descriptions, and only their keys.
    assert "balance:" not in customers
