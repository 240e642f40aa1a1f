"""The GraphQL schema: one module per subgraph, and their composition (see schema/federation.py)."""
