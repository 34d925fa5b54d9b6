"""The review app (`lamina app`): a local web app over a store where a person filters,
looks and decides. `query` reads the store (paged, read-only, per request); `server` is
the Starlette app and its routes; decisions go through `lamina.tagging.approvals` and
`lamina.tagging.decisions`."""
