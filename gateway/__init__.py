"""The HTTP edge: Starlette app, settings, middleware, REST facade and the `kabinet` CLI."""
