"""The GraphQL guards: what an operation may ask for and who may ask, before resolvers run."""
